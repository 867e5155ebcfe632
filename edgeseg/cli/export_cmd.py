"""`edgeseg export CKPT --out DIR`: checkpoint -> ONNX (fp32/fp16/int8), optional TensorRT engines and accuracy report.

Shapes: --input-size H W fixes the graph's input size (default: the checkpoint's). --dynamic MIN OPT MAX makes
the graph dynamic; each shape is NxHxW (e.g. 1x240x320 1x360x480 4x720x960: batch x height x width, the 3
channels are implied); OPT is the input size the runtime resizes frames to and the engine is tuned for.

Re-exporting into a used --out: DIR/export_manifest.json lists the files each export wrote; the next export into
DIR removes those it does not write again (logged), so an old model_int8.onnx or engine never sits next to a new
model.onnx. Files EdgeSeg did not write, or that changed since, are never touched.
"""

from __future__ import annotations

import argparse

from edgeseg.cli.numbers import finite_float

# The format table is light (no torch, onnx or TensorRT): the parser is built from it at every `edgeseg` start.
from edgeseg.export.formats import COMMON_OPTIONS, DEFAULT_PRECISIONS, FORMATS, Option, all_options, export_formats


def _formats_table() -> str:
    """The format table for --help: precision, files, its own options and what it requires."""
    lines = ["formats (--precision):"]
    for row in export_formats():
        lines.append(f"  {row['precision']:<6}{row['onnx']:<17}{row['engine']:<19}{row['description']}")
        if row["options"]:
            required = f"; requires {', '.join(row['requires'])}" if row["requires"] else ""
            lines.append(f"{'':8}options: {' '.join(row['options'])}{required}")
    return "\n".join(lines)


def _cli_type(option: Option):
    """The option's parser as argparse wants it: a ValueError becomes a usage error naming the flag."""
    if option.type is float:  # finite, like every float option (edgeseg.cli.numbers)
        return finite_float

    def parse(text: str):
        try:
            return option.type(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    parse.__name__ = getattr(option.type, "__name__", "value")
    return parse


def _add_option(group: argparse._ArgumentGroup, option: Option) -> None:
    # default=None everywhere: the table's default is applied by check_request, which must know what was set.
    if option.is_flag:
        group.add_argument(option.flag, dest=option.name, action="store_true", default=None, help=option.help)
        return
    default = "" if option.default is None else f" (default: {option.default})"
    group.add_argument(option.flag, dest=option.name, type=_cli_type(option), default=None, nargs=option.nargs,
                       choices=option.choices, metavar=option.metavar, help=option.help + default)


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX / TensorRT", description=__doc__,
                       epilog=_formats_table())
    p.add_argument("ckpt", help="checkpoint (.pt) written by `edgeseg train`")
    p.add_argument("--out", required=True, help="output folder (model.onnx, model_fp16.onnx, ...); it may hold an "
                   "earlier export: the files that export wrote and this one does not are removed (listed in "
                   "export_manifest.json), other files are left alone")
    p.add_argument("--precision", nargs="+", default=list(DEFAULT_PRECISIONS), choices=list(FORMATS),
                   help="formats to export; see the table below")
    common = p.add_argument_group("every format")
    for option in COMMON_OPTIONS:
        _add_option(common, option)
    for fmt in FORMATS.values():
        if fmt.options:
            group = p.add_argument_group(f"{fmt.precision} only")
            for option in fmt.options:
                _add_option(group, option)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeseg.export.pipeline import export_model
    from edgeseg.export.report import format_table

    options = {name: getattr(args, name) for name in all_options()}
    if options.get("input_size") is not None:
        options["input_size"] = tuple(options["input_size"])
    result = export_model(args.ckpt, args.out, precisions=args.precision, **options)
    parity = result["parity"]
    print(f"ONNX vs PyTorch: max abs error {parity['max_abs_err']:.3g}, "
          f"argmax agreement {100 * parity['argmax_agreement']:.3f}%")
    for precision, path in result["onnx"].items():
        print(f"{precision:>5}  {path}")
    for precision, path in result["engines"].items():
        print(f"{precision:>5}  {path}  (+ {path}.json)")
    if result["report"] is not None:
        print(format_table(result["report"]))
        failing = [p for p, row in result["report"]["models"].items() if not row["pass"]]
        if failing:
            print(f"FAIL: {failing} lose more than {result['report']['miou_threshold_points']} mIoU points; "
                  f"see {args.out}/report.json")
            return 1
    return 0


__all__ = ["add_parser", "run"]
