"""`edgeseg export CKPT --out DIR`: checkpoint -> ONNX (fp32/fp16/int8), optional TensorRT engines and accuracy report.

Shapes: --input-size H W fixes the graph's input size (default: the checkpoint's). --dynamic MIN OPT MAX makes
the graph dynamic; each shape is NxHxW (e.g. 1x240x320 1x360x480 4x720x960: batch x height x width, the 3
channels are implied); OPT is the input size the runtime resizes frames to and the engine is tuned for.
"""

from __future__ import annotations

import argparse
import re

from edgeseg.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")


def _shape(text: str) -> tuple[int, int, int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not NxHxW, e.g. 1x360x480")
    n, h, w = (int(v) for v in match.groups())
    return (n, 3, h, w)


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX / TensorRT", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="checkpoint (.pt) written by `edgeseg train`")
    p.add_argument("--out", required=True, help="output folder (model.onnx, model_fp16.onnx, ...)")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=PRECISIONS, help="default: fp32")
    p.add_argument("--calib", help="int8: folder of images or a video to calibrate on")
    p.add_argument("--calib-frames", type=int, default=None, help="int8: frames to calibrate on (default 64)")
    p.add_argument("--calib-method", choices=("entropy", "percentile", "minmax"), default=None,
                   help="int8: calibration method (default entropy)")
    p.add_argument("--engine", action="store_true", help="also build TensorRT engines (+ .json sidecars)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"))
    shape.add_argument("--dynamic", nargs=3, type=_shape, metavar=("MIN", "OPT", "MAX"), help="NxHxW each")
    p.add_argument("--argmax", action="store_true", help="end the graph in ArgMax: output 'classmap' uint8 N,H,W")
    p.add_argument("--uint8-input", action="store_true", help="graph takes uint8 NHWC BGR frames, normalises inside")
    p.add_argument("--lowres", action="store_true", help="stop before the final upsampling (runtime upsamples)")
    p.add_argument("--fp16-io", action="store_true",
                   help="fp16: inputs and outputs in float16 too (default: they stay float32)")
    p.add_argument("--sensitivity", type=int, default=0, metavar="K",
                   help="int8: quantise one layer at a time and keep the K layers that cost most argmax agreement "
                        "in float")
    p.add_argument("--int8-target", choices=("tensorrt", "cpu"), default="tensorrt",
                   help="int8: 'tensorrt' (default) symmetric signed Q/DQ for TensorRT engines; 'cpu' unsigned "
                        "activations and all ops quantised, ONNX Runtime's fastest CPU recipe (no engine)")
    p.add_argument("--keep-head-float", action="store_true",
                   help="int8: leave the classifier and upsampling (ConvTranspose) layers unquantised")
    p.add_argument("--workspace-mb", type=int, help="TensorRT builder workspace limit")
    p.add_argument("--report-data", help="dataset folder: report mIoU per precision on its val split")
    p.add_argument("--miou-threshold", type=float, default=1.0, help="max mIoU drop in points vs fp32 (default 1)")
    p.add_argument("--flavour", choices=("auto", "tensorrt", "tensorrt_rtx"), default="auto",
                   help="TensorRT flavour for --engine (auto: tensorrt if importable, else tensorrt_rtx)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeseg.export.pipeline import export_model
    from edgeseg.export.report import format_table

    int8 = "int8" in args.precision
    if not int8 and (args.calib_frames is not None or args.calib_method is not None):
        raise ConfigError("--calib-frames and --calib-method apply to --precision int8 only")
    result = export_model(
        args.ckpt, args.out, precisions=args.precision, calib=args.calib, engine=args.engine,
        input_size=tuple(args.input_size) if args.input_size else None, dynamic=args.dynamic,
        argmax=args.argmax, uint8_input=args.uint8_input, lowres=args.lowres,
        calib_frames=args.calib_frames or 64, calib_method=args.calib_method or "entropy",
        workspace_mb=args.workspace_mb, report_data=args.report_data, miou_threshold=args.miou_threshold,
        flavour=args.flavour, fp16_io=args.fp16_io, sensitivity=args.sensitivity,
        keep_head_float=args.keep_head_float, int8_target=args.int8_target,
    )
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
            print(f"FAIL: {failing} lose more than {args.miou_threshold} mIoU points; see {args.out}/report.json")
            return 1
    return 0


__all__ = ["add_parser", "run"]
