"""`edgeseg train`: train an FCN on the synthetic scenes or a dataset folder."""

from __future__ import annotations

import argparse


# Kept as written by the help formatter: lines under 80 columns.
DESCRIPTION = """\
Train an FCN on the synthetic scenes or a dataset folder.

The options and every train and val sample are checked before the first step.
After each epoch OUT/last.pt, OUT/best.pt (highest val mIoU), OUT/history.csv
and OUT/history.png are updated, so a stopped run keeps them; OUT/metrics.json
is written at the end."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train an FCN; writes checkpoints, metrics and history to OUT",
        description=DESCRIPTION,
    )
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (generated street scenes) or a dataset folder (folder, VOC or Cityscapes "
                             "layout); without classes.json its label ids must be 0..K-1 with none missing")
    parser.add_argument("--model", default="fcn8s_resnet18", help="a name from `edgeseg models`")
    parser.add_argument("--epochs", type=int, default=10,
                        help="total epochs; with --resume they include the epochs already trained")
    parser.add_argument("--batch-size", type=int, default=8, help="images per training step (per process)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=(128, 160),
                        help="training and model input size in pixels, at least 16x16")
    parser.add_argument("--out", default="runs/train", help="folder for the checkpoints, metrics and history")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="optimizer (poly LR schedule)")
    parser.add_argument("--lr", type=float, default=None,
                        help="base learning rate, > 0; when not given 0.01 for SGD, 1e-3 for AdamW")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="L2 weight decay, >= 0")
    parser.add_argument("--class-weights", choices=("none", "auto"), default="none",
                        help="loss weight per class; auto: median frequency balancing from the training labels")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes; 0 loads in the main process")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights' initialisation and augmentation")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after this much training time, > 0; the last epoch is still evaluated and saved")
    parser.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    parser.add_argument("--pretrained-backbone", default=None, help="local ImageNet weights file for the backbone")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeseg.metrics import format_score
    from edgeseg.training.trainer import TrainConfig, train

    config = TrainConfig(
        data=args.data,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=tuple(args.image_size),
        out=args.out,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        class_weights=args.class_weights,
        workers=args.workers,
        seed=args.seed,
        resume=args.resume,
        amp=not args.no_amp,
        max_minutes=args.max_minutes,
        pretrained_backbone=args.pretrained_backbone,
    )
    result = train(config)
    if result["rank"] != 0:  # under torchrun only rank 0 reports
        return 0
    best = result.get("best", {})
    print(f"trained {result['epochs_run']} epochs; best val mIoU {format_score(best.get('miou', float('nan')))}; "
          f"wrote {args.out}")
    return 0
