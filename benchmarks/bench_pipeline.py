"""End-to-end FPS on a real video: naive PyTorch / naive ONNX Runtime loops vs EdgeSeg's runtime, in one run.

    .venv/bin/python benchmarks/bench_pipeline.py --ckpt runs/camvid/train/best.pt \
        --video ../shared/data/camvid/val_0016E5.mp4 --calib ../shared/data/camvid/train/images \
        --val ../shared/data/camvid --out benchmarks/results/pipeline_cpu.json

Writes the JSON (device, versions, per-contender FPS, per-stage p50/p90/p99, ratio to naive, INT8 vs FP32 mIoU)
and a PNG chart beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

from edgeseg.bench import device_info
from edgeseg.bench_compare import compare_chart, ort_default_infer, run_edgeseg, run_naive, torch_infer
from edgeseg.metrics import format_score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--out", required=True, help="result JSON; the chart goes next to it as .png")
    parser.add_argument("--calib", required=True, help="images or video for INT8 calibration")
    parser.add_argument("--calib-frames", type=int, default=32)
    parser.add_argument("--val", default=None, help="dataset folder for the FP32 vs INT8 mIoU check")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--work", default=None, help="where exported models go (default: a temp dir)")
    args = parser.parse_args(argv)

    from edgeseg.export.pipeline import export_model
    from edgeseg.export.report import accuracy_report

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeseg-bench-"))
    full = export_model(args.ckpt, work / "full", precisions=("fp32",), progress=False)["onnx"]
    low = export_model(
        args.ckpt, work / "lowres", precisions=("fp32", "int8"), calib=args.calib, calib_frames=args.calib_frames,
        lowres=True, progress=False,
    )["onnx"]
    cpu_int8 = export_model(
        args.ckpt, work / "lowres_cpu", precisions=("int8",), calib=args.calib, calib_frames=args.calib_frames,
        lowres=True, int8_target="cpu", progress=False,
    )["onnx"]["int8"]
    video_out = work / "videos"
    video_out.mkdir(parents=True, exist_ok=True)

    contenders: dict[str, dict] = {}
    infer, meta = torch_infer(args.ckpt)
    contenders["naive_torch_fp32"] = run_naive(infer, meta, args.video, video_out / "naive_torch.mp4", max_frames=args.max_frames)
    infer, meta = ort_default_infer(full["fp32"])
    contenders["naive_ort_fp32"] = run_naive(infer, meta, args.video, video_out / "naive_ort.mp4", max_frames=args.max_frames)
    for name, path in (("edgeseg_ort_fp32", full["fp32"]), ("edgeseg_ort_fp32_lowres", low["fp32"]),
                       ("edgeseg_ort_int8_tensorrt_recipe_lowres", low["int8"]),
                       ("edgeseg_ort_int8_cpu_lowres", cpu_int8)):
        contenders[name] = run_edgeseg(path, args.video, video_out / f"{name}.mp4", max_frames=args.max_frames)
    base = contenders["naive_torch_fp32"]["fps_end_to_end"]
    for result in contenders.values():
        result["ratio_to_naive_torch"] = result["fps_end_to_end"] / base

    import onnxruntime
    import torch

    result = {
        "model": meta.model_name,
        "input_size": list(meta.input_size),
        "video": str(args.video),
        "device": device_info(),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
        "torch_threads": torch.get_num_threads(),
        "contenders": contenders,
    }
    if args.val:
        report = accuracy_report({"fp32": low["fp32"], "int8_tensorrt_recipe": low["int8"], "int8_cpu": cpu_int8},
                                 args.val, out_path=work / "report.json")
        result["accuracy"] = report
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    compare_chart(result, out.with_suffix(".png"))
    print(f"{'contender':<26} {'FPS':>7} {'x naive':>8}  frame p50/p90/p99 ms")
    for name, r in contenders.items():
        frame = r["stages"].get("frame") or r["stages"].get("end_to_end") or {}
        print(f"{name:<26} {r['fps_end_to_end']:7.2f} {r['ratio_to_naive_torch']:8.2f}  "
              f"{frame.get('latency_ms_p50', float('nan')):.1f}/{frame.get('latency_ms_p90', float('nan')):.1f}/"
              f"{frame.get('latency_ms_p99', float('nan')):.1f}")
    if args.val:
        for name, r in result["accuracy"].get("models", result["accuracy"]).items():
            if isinstance(r, dict) and "miou" in r:
                print(f"{name}: mIoU {format_score(r['miou'], 2)}, "
                      f"argmax agreement {format_score(r.get('argmax_agreement', float('nan')), 2)}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
