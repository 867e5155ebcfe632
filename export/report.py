"""Accuracy of each exported precision on a validation set, with ONNX Runtime CPU: `accuracy_report`.

For every model: mIoU and pixel accuracy (edgeseg.metrics confusion matrices, predictions resized to the label's
size with nearest neighbour, as the runtime does) and argmax agreement with the reference (fp32) at the model's
resolution. A model whose mIoU is more than `miou_threshold` points below the reference fails, loudly.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np

from edgeseg.config import ModelMeta
from edgeseg.errors import ConfigError, DataError
from edgeseg.export.frames import preprocess
from edgeseg.export.onnx_io import ort_session, read_meta
from edgeseg.metrics import MetricAccumulator

log = logging.getLogger(__name__)


def accuracy_report(
    models: Mapping[str, str | Path],
    data_dir: str | Path,
    *,
    reference: str = "fp32",
    miou_threshold: float = 1.0,
    split: str = "val",
    limit: int | None = None,
    out_path: str | Path | None = None,
) -> dict[str, Any]:
    """{precision: {miou, pixel_acc, argmax_agreement, miou_drop, pass, ...}} for ONNX files, also written to out_path."""
    from edgeseg.data import open_dataset

    if reference not in models:
        raise ConfigError(f"the reference precision {reference!r} is not among the models {list(models)}")
    dataset = open_dataset(data_dir, split)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise DataError(f"{data_dir} has no '{split}' samples to measure accuracy on")
    runners = {name: _Runner(path) for name, path in models.items()}
    for runner in runners.values():
        if runner.meta.classes != runners[reference].meta.classes:
            raise ConfigError(f"{runner.path} has other classes than the reference {runners[reference].path}")
        if runner.meta.num_classes != dataset.info.num_classes:
            raise DataError(f"{data_dir} has {dataset.info.num_classes} classes, the model {runner.meta.num_classes}")
    metrics = {name: MetricAccumulator(dataset.info.classes, dataset.info.ignore_index) for name in models}
    agree = {name: [0, 0] for name in models}
    for index in range(count):
        rgb, label = dataset[index]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        masks = {name: runner.predict(bgr) for name, runner in runners.items()}
        for name, mask in masks.items():
            full = cv2.resize(mask, (label.shape[1], label.shape[0]), interpolation=cv2.INTER_NEAREST)
            metrics[name].update(label, full)
            agree[name][0] += int(np.sum(mask == masks[reference]))
            agree[name][1] += mask.size
    report: dict[str, Any] = {"data": str(data_dir), "split": split, "images": count, "reference": reference,
                              "miou_threshold_points": miou_threshold, "models": {}}
    ref_miou = metrics[reference].scores().miou
    for name in models:
        scores = metrics[name].scores()
        drop = 100.0 * (ref_miou - scores.miou)
        passed = bool(name == reference or drop <= miou_threshold)
        report["models"][name] = {
            "file": str(runners[name].path), "miou": scores.miou, "pixel_acc": scores.pixel_acc,
            "mean_acc": scores.mean_acc, "argmax_agreement": agree[name][0] / agree[name][1],
            "miou_drop_points": drop, "pass": passed,
        }
        if not passed:
            log.warning("FAIL: %s loses %.2f mIoU points against %s (threshold %.2f): do not deploy it as is",
                        name, drop, reference, miou_threshold)
    if out_path is not None:
        Path(out_path).write_text(json.dumps(report, indent=2))
    return report


def format_table(report: Mapping[str, Any]) -> str:
    lines = [f"accuracy on {report['data']} ({report['split']}, {report['images']} images), ONNX Runtime CPU",
             f"{'precision':<10}{'mIoU':>8}{'pixel acc':>11}{'agree':>9}{'drop':>8}  result"]
    for name, row in report["models"].items():
        lines.append(f"{name:<10}{100 * row['miou']:>8.2f}{100 * row['pixel_acc']:>11.2f}"
                     f"{100 * row['argmax_agreement']:>8.2f}%{row['miou_drop_points']:>8.2f}  "
                     f"{'pass' if row['pass'] else 'FAIL'}")
    return "\n".join(lines)


class _Runner:
    """One ONNX model fed like the runtime feeds it; `predict` gives the uint8 class map at model resolution."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta: ModelMeta = read_meta(self.path)
        self.session = ort_session(self.path, "measuring accuracy")
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, bgr: np.ndarray) -> np.ndarray:
        meta = self.meta
        height, width = meta.input_size
        if meta.input_format == "uint8_nhwc_bgr":
            batch = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR)[None]
        else:
            batch = preprocess(bgr, meta)
        out = self.session.run(None, {self.input_name: batch})[0][0]
        if meta.output_format == "classmap":
            return out.astype(np.uint8)
        if meta.output_stride > 1:  # lowres logits: bilinear x stride (half-pixel, like PyTorch), crop, argmax
            up = cv2.resize(np.ascontiguousarray(out.transpose(1, 2, 0)), None, fx=meta.output_stride,
                            fy=meta.output_stride, interpolation=cv2.INTER_LINEAR)
            up = up.reshape(up.shape[0], up.shape[1], -1)
            return up[:height, :width].argmax(axis=2).astype(np.uint8)
        return out.argmax(axis=0).astype(np.uint8)
