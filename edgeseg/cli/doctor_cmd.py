"""`edgeseg doctor`: what this machine can run (GPUs, CUDA, TensorRT flavours, ONNX Runtime, OpenCV, edgeseg._C)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "doctor",
        help="GPUs, CUDA, TensorRT, ONNX Runtime, OpenCV: what runs here",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeseg.doctor import collect, format_text

    report = collect()
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0  # a report, not a check: missing pieces are findings, not failures
