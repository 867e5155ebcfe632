"""`edgeseg train`: train an FCN on the synthetic scenes or a dataset folder."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import textwrap

from edgeseg.cli.explicit_options import explicit_options, track_explicit
from edgeseg.cli.numbers import finite_float
from edgeseg.training.recipes import get_recipe, list_recipes  # plain data, no torch

log = logging.getLogger(__name__)

# Kept as written by the help formatter: lines under 80 columns.
DESCRIPTION = """\
Train an FCN on the synthetic scenes or a dataset folder.

The options and every train and val sample are checked before the first step.
After each epoch OUT/last.pt, OUT/best.pt (highest val mIoU), OUT/history.csv
and OUT/history.png are updated, so a stopped run keeps them; OUT/metrics.json
is written at the end."""

# Option dests whose TrainConfig field has another name (so a typed option also beats the recipe's field).
_FIELD_OF_DEST = {"no_amp": "amp"}
_LOSSES = ("ce", "ohem")  # edgeseg.training.losses.LOSSES, which needs torch to import


def _recipes_epilog() -> str:
    """Each recipe's name, summary and values, wrapped under 80 columns (the formatter keeps epilogs as written)."""
    lines = ["recipes (--recipe NAME; options you type override the recipe's values):"]
    for name in list_recipes():
        recipe = get_recipe(name)
        summary = recipe.summary + ("" if recipe.tuned else " (placeholder, not tuned yet)")
        values = " ".join(f"{key}={value!r}".replace(" ", "") for key, value in recipe.overrides.items())
        lines += textwrap.wrap(f"{name}: {summary}", 78, initial_indent="  ", subsequent_indent="    ")
        lines += textwrap.wrap(values, 78, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train an FCN; writes checkpoints, metrics and history to OUT",
        description=DESCRIPTION,
        epilog=_recipes_epilog(),
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
    parser.add_argument("--force", action="store_true",
                        help="start afresh in an --out that holds another run's checkpoints, replacing them")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="optimizer (poly LR schedule)")
    parser.add_argument("--lr", type=finite_float, default=None,
                        help="base learning rate, > 0; when not given 0.01 for SGD, 1e-3 for AdamW")
    parser.add_argument("--weight-decay", type=finite_float, default=1e-4, help="L2 weight decay, >= 0")
    parser.add_argument("--class-weights", choices=("none", "auto"), default="none",
                        help="loss weight per class; auto: median frequency balancing from the training labels")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes; 0 loads in the main process")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights' initialisation and augmentation")
    parser.add_argument("--max-minutes", type=finite_float, default=None,
                        help="stop after this much training time, > 0; the last epoch is still evaluated and saved")
    parser.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    parser.add_argument("--amp-dtype", choices=("float16", "bfloat16"), default="float16",
                        help="CUDA mixed precision: float16 (with loss scaling) or bfloat16 (Ampere and later, "
                             "no loss scaling)")
    parser.add_argument("--eval-every", type=int, default=1,
                        help="validate every N epochs and after the last one (history holds n/a in between)")
    parser.add_argument("--pretrained-backbone", default=None, help="local ImageNet weights file for the backbone")
    _add_generalisation_options(parser)
    track_explicit(parser)  # which options were typed, so they win over --recipe even when equal to the default
    parser.set_defaults(func=run)


def _add_generalisation_options(parser: argparse.ArgumentParser) -> None:
    """Recipe, group hold-out, augmentation, loss, EMA, warm-up and CPU speed options."""
    parser.add_argument("--recipe", choices=list_recipes(), default=None,
                        help="a named set of training options (listed below); options you type override the recipe")
    parser.add_argument("--val-groups", nargs="+", default=(), metavar="GROUP",
                        help="pool the train and val splits and validate on these groups (drives, sequences, "
                             "cities) only, training on the others; a sample's group comes from its name")
    parser.add_argument("--group-pattern", default=None, metavar="REGEX",
                        help="regular expression with one capture group that finds a sample name's group; when "
                             "not given the prefix before the first '_' (0016E5_07959 -> 0016E5)")
    parser.add_argument("--group-file", default=None, metavar="FILE",
                        help="file of 'NAME GROUP' lines giving each sample's group, instead of --group-pattern")
    parser.add_argument("--scale-range", type=finite_float, nargs=2, metavar=("LOW", "HIGH"), default=(0.5, 2.0),
                        help="random scale of training crops relative to the evaluation view, 0 < LOW <= HIGH")
    parser.add_argument("--photometric", action=argparse.BooleanOptionalAction, default=False,
                        help="random brightness, contrast, saturation, hue and blur of training images")
    parser.add_argument("--loss", choices=_LOSSES, default="ce",
                        help="ce: cross-entropy over every pixel; ohem: only the hard pixels (see --ohem-*)")
    parser.add_argument("--ohem-thresh", type=finite_float, default=0.7,
                        help="--loss ohem: a pixel is hard when its true class gets a probability below this")
    parser.add_argument("--ohem-min-kept", type=int, default=None,
                        help="--loss ohem (needed there): the fewest hardest pixels kept per image")
    parser.add_argument("--label-smoothing", type=finite_float, default=0.0,
                        help="label smoothing of the loss, in [0, 1)")
    parser.add_argument("--aux-weight", type=finite_float, default=0.0,
                        help="deep supervision: add auxiliary score heads on the stride-8 and stride-16 features "
                             "(pool3/pool4) with this loss weight (e.g. 0.4); used in training only, never exported")
    parser.add_argument("--ema-decay", type=finite_float, default=None,
                        help="keep an exponential moving average of the weights with this decay in [0, 1) "
                             "(e.g. 0.998); validation, best.pt and export then use the averaged weights")
    parser.add_argument("--lr-warmup-steps", type=int, default=0,
                        help="raise the learning rate linearly over this many first steps")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False,
                        help="channels-last (NHWC) model and batches (1.16x the steps/s of fp32 on our "
                             "AVX-512 CPU, 1.9x with --cpu-bf16)")
    parser.add_argument("--cpu-bf16", action=argparse.BooleanOptionalAction, default=False,
                        help="bfloat16 autocast when training on the CPU (fast on CPUs with AVX-512 BF16 or AMX); "
                             "on CUDA the mixed precision stays fp16 AMP, which --no-amp turns off")


def run(args: argparse.Namespace) -> int:
    from edgeseg.metrics import format_score
    from edgeseg.training.trainer import train

    result = train(config_from_args(args))
    if result["rank"] != 0:  # under torchrun only rank 0 reports
        return 0
    best = result.get("best", {})
    print(f"trained {result['epochs_run']} epochs; best val mIoU {format_score(best.get('miou', float('nan')))}; "
          f"wrote {args.out}")
    return 0


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of the command line: the defaults, then --recipe's values, then the options typed."""
    from edgeseg.training.recipes import apply_recipe
    from edgeseg.training.trainer import TrainConfig

    # Every option whose dest is a TrainConfig field maps straight onto it; the rest are named here.
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {dest: value for dest, value in vars(args).items() if dest in names}
    values.update(image_size=tuple(args.image_size), val_groups=tuple(args.val_groups),
                  scale_range=tuple(args.scale_range), amp=not args.no_amp)
    config = TrainConfig(**values)
    if args.recipe is None:
        return config
    typed = {_FIELD_OF_DEST.get(dest, dest) for dest in explicit_options(args)}
    config, applied = apply_recipe(config, args.recipe, explicit=typed)
    kept = sorted(typed & set(get_recipe(args.recipe).overrides))
    log.info("--recipe %s sets %s%s", args.recipe, ", ".join(f"{k}={v!r}" for k, v in applied.items()) or "nothing",
             f"; typed options kept: {', '.join(kept)}" if kept else "")
    return config
