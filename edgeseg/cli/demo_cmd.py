"""`edgeseg demo`: the whole path in one command: train, evaluate, export to ONNX, stream a video, benchmark."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgeseg.cli.numbers import finite_float


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="train, eval, export, run and bench in one go")
    parser.add_argument("--out", default="runs/demo", help="output folder (overlay.mp4, masks/, metrics.json, ...)")
    parser.add_argument("--data", default="synthetic", help="'synthetic' or a dataset folder (e.g. CamVid)")
    parser.add_argument("--model", default="fcn8s_resnet18", help="a name from `edgeseg models`")
    parser.add_argument("--epochs", type=int, default=6, help="training passes (--max-minutes may stop it sooner)")
    parser.add_argument("--batch-size", type=int, default=8, help="training images per step")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="training/export size (unset: 128 160 on synthetic scenes, half the dataset's size)")
    parser.add_argument("--max-minutes", type=finite_float, default=2.0, help="training time budget")
    parser.add_argument("--video", default=None,
                        help="video to segment (unset: a synthetic one, or the dataset's first *.mp4)")
    parser.add_argument("--video-frames", type=int, default=90, help="length of the synthetic demo video")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes")
    parser.set_defaults(func=run)


def _image_size(args: argparse.Namespace) -> tuple[int, int]:
    """--image-size, else half the size of the dataset's first training image (keeps a CPU demo within minutes),
    else the synthetic default. The size is read from the data itself: no dataset file records it."""
    from edgeseg.config import size_hw

    if args.image_size:
        return size_hw(args.image_size, "--image-size", minimum=16)
    if args.data != "synthetic":
        from edgeseg.data import open_dataset

        height, width = open_dataset(args.data, "train")[0][0].shape[:2]
        return size_hw((height // 2, width // 2), f"half the image size of {args.data}", minimum=16)
    return (128, 160)


def _check(args: argparse.Namespace, out: Path, size: tuple[int, int]):
    """Everything the five steps need, checked before the minutes of training: the training options, --out, and
    the video (it must exist and decode) or the synthetic video's length. Returns the TrainConfig."""
    from edgeseg.errors import ConfigError, DataError
    from edgeseg.training.trainer import TrainConfig, _check_config

    config = TrainConfig(
        data=args.data, model=args.model, epochs=args.epochs, batch_size=args.batch_size, image_size=size,
        out=str(out / "train"), max_minutes=args.max_minutes, workers=args.workers, optimizer="adamw",
        force=True,  # the demo's own folder: each run starts afresh
    )
    _check_config(config)  # --out itself was checked by the output guard before this
    if args.video:
        from edgeseg.data.frame_files import iter_frames

        if not Path(args.video).is_file():
            raise ConfigError(f"--video {args.video} is not a file")
        try:
            next(iter_frames(args.video, limit=1))
        except DataError as exc:
            raise DataError(f"--video {args.video} cannot be decoded: {exc}") from exc
    elif args.video_frames < 1:
        raise ConfigError(f"--video-frames must be >= 1 (the synthetic video's length), got {args.video_frames}")
    return config


def _video_source(args: argparse.Namespace, out: Path, size: tuple[int, int]) -> str:
    if args.video:
        return args.video
    if args.data != "synthetic":
        videos = sorted(Path(args.data).glob("*.mp4"))
        if videos:
            return str(videos[0])
        return str(Path(args.data) / "val" / "images")
    from edgeseg.data import write_synthetic_video

    return str(write_synthetic_video(out / "input.mp4", frames=args.video_frames, size=(size[0] * 2, size[1] * 2), seed=7))


def run(args: argparse.Namespace) -> int:
    from edgeseg.bench import benchmark_segmenter, device_info
    from edgeseg.data import open_dataset
    from edgeseg.evaluation import evaluate_predictor
    from edgeseg.export.pipeline import export_model
    from edgeseg.files import write_file
    from edgeseg.pipeline import run_stream
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.training.checkpoint import load_model
    from edgeseg.training.predictor import TorchPredictor
    from edgeseg.training.trainer import train

    from edgeseg.output_guard import Output, check_outputs, dataset_input, source_inputs

    check_outputs([Output("--out", args.out, folder=True)], dataset_input(args.data) + source_inputs([args.video]))
    out = Path(args.out)
    size = _image_size(args)
    config = _check(args, out, size)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    print(f"[1/5] training {args.model} on {args.data} at {size[0]}x{size[1]} (budget {args.max_minutes} min)")
    t0 = time.perf_counter()
    train(config)
    timings["train_s"] = time.perf_counter() - t0

    print("[2/5] evaluating best.pt on the val split")
    t0 = time.perf_counter()
    model, meta = load_model(out / "train" / "best.pt")
    val_set = open_dataset(args.data, "val", synthetic_size=size)
    scores = evaluate_predictor(TorchPredictor(model, meta).predict, val_set, meta.classes)
    write_file(out / "metrics.json", json.dumps(scores.to_dict(), indent=2))
    timings["eval_s"] = time.perf_counter() - t0
    from edgeseg.metrics import format_score

    print(f"      mIoU {format_score(scores.miou)}, pixel acc {format_score(scores.pixel_acc)}, "
          f"mean acc {format_score(scores.mean_acc)}, fwIoU {format_score(scores.fwiou)}")

    print("[3/5] exporting to ONNX (checked against PyTorch)")
    t0 = time.perf_counter()
    exported = export_model(out / "train" / "best.pt", out / "export")
    onnx_path = out / "export" / "model.onnx"
    timings["export_s"] = time.perf_counter() - t0

    print("[4/5] streaming a video through the runtime")
    t0 = time.perf_counter()
    source = _video_source(args, out, size)
    with Segmenter(onnx_path) as segmenter:
        stats = run_stream(segmenter, [source], out / "overlay.mp4", masks_dir=out / "masks")
        timings["run_s"] = time.perf_counter() - t0
        print(f"      {stats.read} frames read, {stats.processed} segmented, {stats.dropped} dropped, "
              f"{stats.unreadable} unreadable; {stats.fps:.1f} FPS end to end -> {out / 'overlay.mp4'}")

        print("[5/5] benchmarking the runtime")
        from edgeseg.cli.bench_cmd import _frames

        frames = _frames(source, 16, (size[0] * 2, size[1] * 2))
        latency = benchmark_segmenter(segmenter, frames, min_seconds=2.0)
    latency["device"] = device_info()
    write_file(out / "latency.json", json.dumps(latency, indent=2))
    timings["total_s"] = time.perf_counter() - started

    summary = {
        "data": args.data, "model": args.model, "image_size": list(size), "metrics": scores.to_dict(),
        "export": exported, "stream": stats.to_dict() if hasattr(stats, "to_dict") else stats,
        "latency_ms_p50": latency["stages"]["frame"]["latency_ms_p50"], "fps": latency["fps"], "timings": timings,
    }
    write_file(out / "summary.json", json.dumps(summary, indent=2, default=str))
    print(f"done in {timings['total_s']:.0f} s: overlay {out / 'overlay.mp4'}, masks {out / 'masks'}, "
          f"metrics {out / 'metrics.json'}, latency {out / 'latency.json'} "
          f"(p50 {summary['latency_ms_p50']:.1f} ms/frame, {summary['fps']:.1f} FPS)")
    return 0
