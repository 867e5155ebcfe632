"""`edgeseg bench`: per-stage latency (p50/p90/p99) and FPS of a model file on this machine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="latency p50/p90/p99 and FPS per stage; JSON out")
    parser.add_argument("model", help=".onnx or .engine")
    parser.add_argument("--json", dest="json_out", required=True)
    parser.add_argument("--source", default=None, help="video or image folder to take frames from (default: synthetic)")
    parser.add_argument("--frame-size", type=int, nargs=2, metavar=("H", "W"), default=(360, 480))
    parser.add_argument("--frames", type=int, default=16, help="distinct frames to cycle through")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--min-iters", type=int, default=30)
    parser.set_defaults(func=run)


def _frames(source: str | None, count: int, size: tuple[int, int]) -> list:
    if source is None:
        from edgeseg.data import synthetic_frames

        return list(synthetic_frames(count, size))
    import cv2

    from edgeseg.errors import DataError

    capture = cv2.VideoCapture(source)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise DataError(f"no readable frames in {source}")
    return frames


def run(args: argparse.Namespace) -> int:
    from edgeseg.bench import benchmark_segmenter, device_info
    from edgeseg.runtime.segmenter import Segmenter

    frames = _frames(args.source, args.frames, tuple(args.frame_size))
    with Segmenter(args.model) as segmenter:
        result = benchmark_segmenter(
            segmenter, frames, warmup=args.warmup, min_seconds=args.min_seconds, min_iters=args.min_iters
        )
    result["device"] = device_info()
    for stage, summary in result["stages"].items():
        print(
            f"{stage:<12} p50 {summary['latency_ms_p50']:8.2f} ms  p90 {summary['latency_ms_p90']:8.2f} ms  "
            f"p99 {summary['latency_ms_p99']:8.2f} ms"
        )
    print(f"FPS {result['fps']:.1f} ({result['backend']}, {result['precision']})")
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json_out}")
    return 0
