"""`edgeseg bench`: per-stage latency (p50/p90/p99) and FPS of a model file on this machine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="latency p50/p90/p99 and FPS per stage; JSON out")
    from edgeseg.runtime.backends import BACKENDS

    parser.add_argument("model", help=".onnx or .engine")
    parser.add_argument("--json", dest="json_out", required=True, help="where to write the results (JSON)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="inference backend (auto: by file type and the best available provider)")
    parser.add_argument("--source", default=None, help="video or image folder to take frames from (default: synthetic)")
    parser.add_argument("--frame-size", type=int, nargs=2, metavar=("H", "W"), default=(360, 480))
    parser.add_argument("--frames", type=int, default=16, help="distinct frames to cycle through")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time at least this long")
    parser.add_argument("--min-iters", type=int, default=30, help="and at least this many calls")
    parser.add_argument("--compare", metavar="CKPT", default=None,
                        help="also run, on --video, the naive loops users write (PyTorch eager FP32 from this "
                             "checkpoint, ONNX Runtime defaults) and EdgeSeg's pipeline; adds end-to-end FPS, "
                             "ratios and a PNG chart next to the JSON")
    parser.add_argument("--video", default=None, help="video for --compare")
    parser.set_defaults(func=run)


def _frames(source: str | None, count: int, size: tuple[int, int]) -> list:
    """`count` BGR frames from a video or image folder, or synthetic street scenes of `size`."""
    if source is None:
        from edgeseg.data import synthetic_frames

        return list(synthetic_frames(count, size))
    from edgeseg.data.frame_files import iter_frames

    return list(iter_frames(source, limit=count))


def _check(args: argparse.Namespace) -> None:
    """Every option, and the output folder, before any model is loaded or timed."""
    from edgeseg.errors import ConfigError, OutputPathError

    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    if args.warmup < 0 or args.min_iters < 0 or args.min_seconds < 0:
        raise ConfigError("--warmup, --min-iters and --min-seconds must be >= 0")
    if args.min_iters < 1 and args.min_seconds <= 0:
        raise ConfigError("--min-iters 0 with --min-seconds 0 times nothing: give at least one of them")
    out = Path(args.json_out)
    if out.is_dir():
        raise OutputPathError(f"--json {out} is a folder; give a file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create the folder of --json {out}: {exc.strerror or exc}") from exc


def run(args: argparse.Namespace) -> int:
    from edgeseg.bench import benchmark_segmenter, device_info
    from edgeseg.files import write_file
    from edgeseg.runtime.segmenter import Segmenter

    _check(args)
    frames = _frames(args.source, args.frames, tuple(args.frame_size))
    with Segmenter(args.model, backend=args.backend) as segmenter:
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
    if args.compare:
        result["end_to_end"] = _compare(args)
    write_file(args.json_out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json_out}")
    return 0


def _compare(args: argparse.Namespace) -> dict:
    """naive PyTorch, naive ONNX Runtime and EdgeSeg's pipeline on the same video, one after the other."""
    import shutil
    import tempfile

    from edgeseg.bench_compare import compare_chart, ort_default_infer, run_edgeseg, run_naive, torch_infer
    from edgeseg.errors import ConfigError

    if not args.video:
        raise ConfigError("--compare needs --video (the clip all contenders segment)")
    work = Path(tempfile.mkdtemp(prefix="edgeseg-compare-"))
    contenders = {}
    try:  # the contenders' videos are scratch: removed whatever happens
        infer, meta = torch_infer(args.compare)
        contenders["naive_torch_fp32"] = run_naive(infer, meta, args.video, work / "naive_torch.mp4")
        if Path(args.model).suffix == ".onnx":
            infer, meta = ort_default_infer(args.model)
            contenders["naive_ort"] = run_naive(infer, meta, args.video, work / "naive_ort.mp4")
        contenders["edgeseg"] = run_edgeseg(args.model, args.video, work / "edgeseg.mp4")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = contenders["naive_torch_fp32"]["fps_end_to_end"]
    for name, result in contenders.items():
        result["ratio_to_naive_torch"] = result["fps_end_to_end"] / base
        print(f"end-to-end {name:<18} {result['fps_end_to_end']:7.2f} FPS  {result['ratio_to_naive_torch']:5.2f}x naive")
    from edgeseg.bench import device_info

    summary = {"model": meta.model_name, "video": args.video, "device": device_info(), "contenders": contenders}
    chart = Path(args.json_out).with_suffix(".png")
    compare_chart(summary, chart)
    print(f"wrote {chart}")
    return summary
