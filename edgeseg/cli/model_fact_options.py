"""The options that say what a model file does not (`--classes`, `--input-size`, ...), shared by run, bench, eval
and annotate: `add_model_fact_options(parser)` adds them, `model_facts_from_args(args)` turns them into ModelFacts."""

from __future__ import annotations

import argparse

from edgeseg.cli.numbers import finite_float
from edgeseg.config import size_hw
from edgeseg.errors import ConfigError
from edgeseg.model_facts import LAYOUTS, OUTPUT_KINDS, ModelFacts, parse_classes, parse_palette

_TITLE = "model facts (for models without EdgeSeg's metadata, e.g. from mmseg, torchvision or trtexec)"
_DESCRIPTION = """\
Facts the file carries are used; these override them (with a warning where they differ).
What the graph states (input size and layout, uint8 or float input, class count, logits or
class map) is read from it. Write them into the file once with `edgeseg annotate`."""


def add_model_fact_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(_TITLE, _DESCRIPTION)
    group.add_argument("--classes", metavar="FILE|N",
                       help="the class names: a classes.json (a list, or {\"classes\": [...], \"palette_rgb\": "
                       "[...]}), a text file with one name per line, or just their number")
    group.add_argument("--palette", metavar="FILE",
                       help="class colours: a JSON list of [R, G, B] (or {\"palette_rgb\": [...]}) or text lines "
                       "'R G B'; without it the file's palette, else the PASCAL VOC colour map")
    group.add_argument("--mean", type=finite_float, nargs=3, metavar=("R", "G", "B"),
                       help="per-channel mean the float input is normalised by, RGB in 0-1 pixel units "
                       "(ImageNet: 0.485 0.456 0.406; mmseg's 123.675 116.28 103.53 divided by 255)")
    group.add_argument("--std", type=finite_float, nargs=3, metavar=("R", "G", "B"),
                       help="per-channel standard deviation, RGB in 0-1 pixel units (ImageNet: 0.229 0.224 0.225)")
    group.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                       help="the height and width frames are resized to (needed when the graph's are dynamic)")
    group.add_argument("--layout", choices=LAYOUTS,
                       help="where the input's colour channels are, when its shape does not say (float: nchw, RGB; "
                       "uint8: nhwc, BGR, normalised in the graph)")
    group.add_argument("--output", choices=OUTPUT_KINDS,
                       help="what the graph outputs: per-class logits (N, classes, H, W) or a class map (N, H, W); "
                       "read from the graph, this only checks it")


def model_facts_from_args(args: argparse.Namespace) -> ModelFacts:
    """The ModelFacts the options give (all None when none was passed); ConfigError naming the bad option."""
    names = count = file_palette = None
    if args.classes is not None:
        names, count, file_palette = parse_classes(args.classes)
    palette = parse_palette(args.palette) if args.palette is not None else file_palette
    size = size_hw(args.input_size, "--input-size") if args.input_size is not None else None
    if (args.mean is None) != (args.std is None):
        raise ConfigError("--mean and --std go together: pass both (RGB, 0-1 pixel units)")
    return ModelFacts(
        classes=names, num_classes=count, palette=palette,
        mean=tuple(args.mean) if args.mean is not None else None,  # type: ignore[arg-type]
        std=tuple(args.std) if args.std is not None else None,  # type: ignore[arg-type]
        input_size=size, layout=args.layout, output=args.output,
    )
