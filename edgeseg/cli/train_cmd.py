"""`edgeseg train`: train an FCN on the synthetic scenes or a dataset folder."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model; writes OUT/best.pt, OUT/last.pt, OUT/metrics.json")
    parser.add_argument("--data", default="synthetic", help="'synthetic' (default) or a dataset folder")
    parser.add_argument("--model", default="fcn8s_resnet18", help="a name from `edgeseg models`")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=(128, 160))
    parser.add_argument("--out", default="runs/train")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--lr", type=float, default=None, help="base learning rate (default 0.01 SGD, 1e-3 AdamW)")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--class-weights", choices=("none", "auto"), default="none", help="auto: median frequency")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    parser.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    parser.add_argument("--pretrained-backbone", default=None, help="local ImageNet weights file for the backbone")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    print(f"trained {result['epochs_run']} epochs; best val mIoU {best.get('miou', float('nan')):.4f}; wrote {args.out}")
    return 0
