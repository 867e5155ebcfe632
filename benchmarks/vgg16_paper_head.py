"""The paper's 4096-wide VGG-16 head next to the light one: parameters, ONNX FP32/INT8 file sizes and CPU latency.

    .venv/bin/python benchmarks/vgg16_paper_head.py --calib ../shared/data/camvid/val/images \
        --input-size 240 320 --out benchmarks/results/vgg16_paper_head_cpu

For fcn8s_vgg16 (fc6 3x3 -> 1024) and fcn8s_vgg16_paper (fc6 7x7 -> 4096, fc7 4096: the convolutionalised ImageNet
classifier), each with random weights (the paper model's from a torchvision-layout file, so the conversion path
runs): a checkpoint -> `export_model` FP32 and INT8 (ONNX Runtime CPU target, calibrated on --calib) -> file sizes
and Segmenter latency (ONNX Runtime CPU, --iters frames after a warm-up). The models are interleaved per round, so
load on the machine hits them alike. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from edgeseg.bench import device_info, latency_summary
from edgeseg.config import make_meta
from edgeseg.data import synthetic_frames
from edgeseg.export.pipeline import export_model
from edgeseg.files import write_file
from edgeseg.models import build_model
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.training.checkpoint import save_checkpoint

MODELS = ("fcn8s_vgg16", "fcn8s_vgg16_paper")
CLASSES = [f"class{i}" for i in range(11)]  # CamVid's 11


def _torchvision_vgg16_file(path: Path) -> Path:
    """A random VGG-16 state_dict under torchvision's key names (tests/models/test_torchvision_files.py's layout)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.models.test_torchvision_files import random_state, vgg16_layout

    torch.save(random_state(vgg16_layout(), seed=0), path)
    return path


def export(name: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    pretrained = _torchvision_vgg16_file(work / "vgg16_imagenet_layout.pth") if name.endswith("_paper") else None
    model = build_model(name, num_classes=len(CLASSES), pretrained_backbone=pretrained).eval()
    meta = make_meta(name, CLASSES, tuple(args.input_size))
    ckpt = save_checkpoint(work / f"{name}.pt", model, meta)
    out = work / name
    result = export_model(ckpt, out, precisions=["fp32", "int8"], calib=args.calib, calib_frames=args.calib_frames,
                          int8_target="cpu", max_batch=1, progress=False)
    files = {precision: Path(path) for precision, path in result["onnx"].items()}
    return {"model": name, "parameters": sum(p.numel() for p in model.parameters()),
            "onnx_mb": {p: path.stat().st_size / 2**20 for p, path in files.items()},
            "parity_fp32": result["parity"], "files": {p: str(path) for p, path in files.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calib", required=True, help="folder of images or a video for INT8 calibration")
    parser.add_argument("--calib-frames", type=int, default=16)
    parser.add_argument("--input-size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=5, help="timed frames per model and precision")
    parser.add_argument("--out", default="benchmarks/results/vgg16_paper_head_cpu")
    args = parser.parse_args(argv)
    frames = list(synthetic_frames(3, tuple(args.input_size), seed=1))
    with tempfile.TemporaryDirectory() as tmp:
        rows = [export(name, Path(tmp), args) for name in MODELS]
        segmenters = {(row["model"], p): Segmenter(path, backend="onnxruntime")
                      for row in rows for p, path in row["files"].items()}
        samples: dict[tuple[str, str], list[float]] = {key: [] for key in segmenters}
        for seg in segmenters.values():
            seg.predict(frames[:1])  # warm-up
        for index in range(args.iters):
            for key, seg in segmenters.items():
                seg.predict([frames[index % len(frames)]])
                samples[key].append(sum(seg.stage_ms.values()))
        for seg in segmenters.values():
            seg.close()
    for row in rows:
        row["latency"] = {p: latency_summary(samples[(row["model"], p)]) for p in row["onnx_mb"]}
        del row["files"]
    result = {"input_size": list(args.input_size), "rows": rows, "device": device_info(),
              "load_average_1_5_15": list(os.getloadavg()), "backend": "onnxruntime CPU",
              "weights": "random (latency and size do not depend on them); the paper model's via a torchvision-layout "
                         "file, so classifier.0/3 -> fc6/fc7 conversion is what was exported"}
    lines = [f"# VGG-16 heads: light (fc6 3x3 -> 1024) vs the paper's (fc6 7x7 -> 4096), {args.input_size[0]}x"
             f"{args.input_size[1]}, ONNX Runtime CPU", "",
             f"{result['device'].get('cpu', '')}; load average {result['load_average_1_5_15'][0]:.1f} at the end; "
             f"median of {args.iters} frames, models interleaved.", "",
             "| model | parameters | FP32 ONNX (MiB) | INT8 ONNX (MiB) | FP32 p50 (ms) | INT8 p50 (ms) |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['parameters'] / 1e6:.1f} M | {row['onnx_mb']['fp32']:.0f} | "
                     f"{row['onnx_mb']['int8']:.0f} | {row['latency']['fp32']['latency_ms_p50']:.0f} | "
                     f"{row['latency']['int8']['latency_ms_p50']:.0f} |")
    out = Path(args.out)
    write_file(out.with_suffix(".json"), json.dumps(result, indent=2, default=float) + "\n")
    write_file(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
