"""Test-time augmentation table: mIoU gain and latency cost of flip, scales 0.75/1/1.25 and both, on held-out groups.

    .venv/bin/python benchmarks/tta_table.py runs/heldout/model.onnx --data ../shared/data/camvid \
        --val-groups 0006R0 --out benchmarks/results/tta_heldout

MODEL is an `edgeseg train` checkpoint (.pt, run by torch through the same plan) or an exported .onnx/.engine; the
scales need an export with dynamic height and width (`edgeseg export CKPT --dynamic 1xhxw 1xHxW 1xh'xw'`, with
h..h' covering 0.75x to 1.25x the input size). --val-groups pools the folder's train and val splits and keeps the
named groups (drives), as `edgeseg train --val-groups` does, so a model trained with the same option is scored
only on what it never saw; without it the --split is scored.

Every image goes through the four settings in turn (plain, flip, scales, scales + flip), so load on the machine hits
them alike; latency is the median of the per-frame predict() times (preprocess, every view's inference, the
probability averaging and argmax). Writes OUT.json (scores, per-class IoU, latency, device, versions, load) and
OUT.md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable


from edgeseg.bench import device_info, latency_summary
from edgeseg.data import open_dataset
from edgeseg.data.groups import DEFAULT_GROUP_PATTERN, Grouping, holdout_split
from edgeseg.evaluation import evaluate_many
from edgeseg.files import write_file
from edgeseg.metrics import format_score
from edgeseg.runtime.tta import TTA

SCALES = (0.75, 1.0, 1.25)
SETTINGS = {
    "plain": TTA(),
    "flip": TTA(flip=True),
    "scales 0.75/1/1.25": TTA(scales=SCALES),
    "scales 0.75/1/1.25 + flip": TTA(scales=SCALES, flip=True),
}


def open_predictor(model: Path, tta: TTA, backend: str) -> tuple[Callable, Any]:
    """(predict function, ModelMeta) for a checkpoint (torch) or an exported model (Segmenter)."""
    if model.suffix in (".pt", ".pth"):
        from edgeseg.training.checkpoint import load_model
        from edgeseg.training.predictor import TorchPredictor

        net, meta = load_model(model)
        return TorchPredictor(net, meta, tta=tta).predict, meta
    from edgeseg.runtime.segmenter import Segmenter

    segmenter = Segmenter(model, backend=backend, tta=tta)
    return segmenter.predict, segmenter.meta


def scored_split(args: argparse.Namespace, input_size: tuple[int, int]) -> Any:
    """The dataset the table scores: the held-out groups of the pooled splits, or --split as it is."""
    if not args.val_groups:
        return open_dataset(args.data, args.split, synthetic_size=input_size)
    grouping = Grouping.from_file(args.group_file) if args.group_file else Grouping(args.group_pattern)
    pooled = [open_dataset(args.data, split, synthetic_size=input_size) for split in ("train", "val")]
    return holdout_split(pooled, args.val_groups, grouping)[1]


def timed(predict: Callable, samples: list[float]) -> Callable:
    def call(frames):
        start = time.perf_counter()
        masks = predict(frames)
        samples.append((time.perf_counter() - start) * 1e3 / max(len(frames), 1))
        return masks

    return call


def measure(args: argparse.Namespace) -> dict[str, Any]:
    predictors, latencies, meta = {}, {}, None
    for name, tta in SETTINGS.items():
        predict, meta = open_predictor(Path(args.model), tta, args.backend)
        latencies[name] = []
        predictors[name] = timed(predict, latencies[name])
    assert meta is not None
    dataset = scored_split(args, tuple(meta.input_size))
    comparison = evaluate_many(predictors, dataset, meta.classes, reference="plain", limit=args.limit)
    plain = comparison.scores["plain"]
    plain_p50 = latency_summary(latencies["plain"][args.skip_first:])["latency_ms_p50"]
    rows = []
    for name, tta in SETTINGS.items():
        scores = comparison.scores[name]
        latency = latency_summary(latencies[name][args.skip_first:])
        rows.append({
            "setting": name, "scales": list(tta.scales), "flip": tta.flip, "views": len(tta.views),
            "miou": scores.miou, "pixel_acc": scores.pixel_acc, "mean_acc": scores.mean_acc,
            "miou_gain_points": 100 * (scores.miou - plain.miou),
            "agreement_with_plain": comparison.agreement[name],
            "latency_ms_p50": latency["latency_ms_p50"], "latency_ms_p90": latency["latency_ms_p90"],
            "latency_ratio": latency["latency_ms_p50"] / plain_p50,
            "per_class_iou": scores.per_class_iou,
        })
    return {
        "model": str(args.model), "model_name": meta.model_name, "input_size": list(meta.input_size),
        "data": str(args.data), "val_groups": list(args.val_groups or []),
        "split": "held-out groups of train+val" if args.val_groups else args.split,
        "images": comparison.images, "latency_excludes_first_frames": args.skip_first,
        "rows": rows, "device": device_info(), "load_average_1_5_15": list(os.getloadavg()),
        "note": args.note,
    }


def _json_safe(value: Any) -> Any:
    """NaN (a class that never occurs) as null, since NaN is not JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _json_safe(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def table(result: dict[str, Any]) -> str:
    held = " ".join(result["val_groups"]) or result["split"]
    lines = [f"# Test-time augmentation on {held} ({result['images']} images)", "",
             f"Model `{result['model_name']}` ({Path(result['model']).name}), input {result['input_size'][0]}x"
             f"{result['input_size'][1]}; {result['device'].get('cpu', '')}, load average "
             f"{result['load_average_1_5_15'][0]:.1f} at the end.", "",
             "| setting | views | mIoU | gain (points) | pixel acc | latency p50 (ms/frame) | x latency |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['setting']} | {row['views']} | {format_score(row['miou'])} | "
                     f"{row['miou_gain_points']:+.2f} | {format_score(row['pixel_acc'])} | "
                     f"{row['latency_ms_p50']:.1f} | {row['latency_ratio']:.2f} |")
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help=".pt checkpoint or .onnx/.engine exported with dynamic height and width")
    parser.add_argument("--data", required=True, help="dataset folder (or 'synthetic')")
    parser.add_argument("--val-groups", nargs="+", metavar="GROUP", help="score these held-out groups only")
    parser.add_argument("--group-pattern", default=DEFAULT_GROUP_PATTERN, metavar="REGEX")
    parser.add_argument("--group-file", metavar="FILE")
    parser.add_argument("--split", default="val", help="the split to score without --val-groups")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--skip-first", type=int, default=2, metavar="N",
                        help="leave each setting's first N frames out of the latency (warm-up)")
    parser.add_argument("--note", default="", help="a line for the table (what the model is, how it was trained)")
    parser.add_argument("--out", default="benchmarks/results/tta_heldout", help="OUT.json and OUT.md")
    args = parser.parse_args(argv)
    result = measure(args)
    out = Path(args.out)
    write_file(out.with_suffix(".json"), json.dumps(_json_safe(result), indent=2, default=float) + "\n")
    write_file(out.with_suffix(".md"), table(result))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
