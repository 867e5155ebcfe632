"""--tta-scales / --tta-flip for `edgeseg eval` and `run`: one definition, one meaning (edgeseg.runtime.tta)."""

from __future__ import annotations

import argparse

from edgeseg.cli.numbers import finite_float
from edgeseg.runtime.tta import TTA

_DESCRIPTION = """\
Run the model on each frame at several scales and/or mirrored, average the class probabilities
and take the argmax once. Costs about one inference per view; scales other than 1 need a model
exported with dynamic height and width (`edgeseg export --dynamic MIN OPT MAX`)."""


def add_tta_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("test-time augmentation", _DESCRIPTION)
    group.add_argument("--tta-scales", type=finite_float, nargs="+", metavar="S",
                       help="scales of the model's input size to run at, e.g. 0.75 1 1.25 (default: 1)")
    group.add_argument("--tta-flip", action="store_true", help="also run each scale mirrored left-right")


def tta_from_args(args: argparse.Namespace) -> TTA | None:
    """The TTA the options ask for, None for none; ConfigError naming the bad value (before any model loads)."""
    scales = getattr(args, "tta_scales", None)
    flip = bool(getattr(args, "tta_flip", False))
    if scales is None and not flip:
        return None
    return TTA(scales=tuple(scales) if scales is not None else (1.0,), flip=flip)


__all__ = ["add_tta_options", "tta_from_args"]
