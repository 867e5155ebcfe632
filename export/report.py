"""Accuracy of each exported precision on a validation set: `accuracy_report`.

Every model runs exactly as users run it: `Segmenter(path, backend="onnxruntime")` (the runtime's ProcessingPlan
does the pre- and post-processing, including a --lowres model's upsample-argmax), and the loop is the one
evaluation loop, `edgeseg.evaluation.evaluate_many`, with the fp32 model as the reference. Per model: mIoU, pixel
and mean accuracy (fractions in [0, 1], masks scored at the labels' resolution), argmax agreement with the
reference (fraction of pixels at model resolution) and the mIoU drop in points (percentage points). A model whose
drop exceeds `miou_threshold` points fails, loudly.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Mapping

from edgeseg.config import ModelMeta
from edgeseg.errors import ConfigError, DataError
from edgeseg.export.formats import option_default
from edgeseg.files import write_file
from edgeseg.metrics import format_score

log = logging.getLogger(__name__)


def open_report_data(data: Any, meta: ModelMeta, split: str = "val") -> Any:
    """The dataset to measure on (a folder or an opened dataset), checked against the model's classes."""
    if isinstance(data, (str, Path)):
        from edgeseg.data import open_dataset

        data = open_dataset(data, split)
    if len(data) == 0:
        raise DataError(f"the report dataset has no '{split}' samples to measure accuracy on")
    if data.info.num_classes != meta.num_classes:
        raise DataError(f"the report dataset has {data.info.num_classes} classes, the model {meta.num_classes} "
                        f"({', '.join(meta.classes[:5])}...): give --report-data the dataset the model was trained on")
    return data


def accuracy_report(
    models: Mapping[str, str | Path],
    data: Any,
    *,
    reference: str = "fp32",
    miou_threshold: float = option_default("miou_threshold"),
    split: str = "val",
    limit: int | None = None,
    out_path: str | Path | None = None,
    layer_output_types: Mapping[str, Mapping[str, int]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """{'models': {name: {miou, pixel_acc, mean_acc, argmax_agreement, miou_drop_points, pass, ...}}, ...} for
    ONNX files, also written to out_path. `data`: a dataset folder or an opened dataset. `layer_output_types`:
    per model, the engine's counts of layer output types (recorded as is)."""
    from edgeseg.evaluation import evaluate_many
    from edgeseg.runtime.segmenter import Segmenter

    if reference not in models:
        raise ConfigError(f"the reference precision {reference!r} is not among the models {list(models)}")
    with contextlib.ExitStack() as stack:
        segmenters = {name: stack.enter_context(Segmenter(path, backend="onnxruntime")) for name, path in models.items()}
        ref_meta = segmenters[reference].meta
        for name, seg in segmenters.items():
            if seg.meta.classes != ref_meta.classes:
                raise ConfigError(f"{models[name]} has other classes than the reference {models[reference]}")
        dataset = open_report_data(data, ref_meta, split)
        comparison = evaluate_many({name: seg.predict for name, seg in segmenters.items()}, dataset,
                                   ref_meta.classes, reference=reference, limit=limit, progress=progress)
    report = _report(models, comparison, data, split, reference, miou_threshold, layer_output_types or {})
    if out_path is not None:
        write_file(out_path, json.dumps(report, indent=2) + "\n")
    return report


def _report(models: Mapping[str, Any], comparison: Any, data: Any, split: str, reference: str,
            miou_threshold: float, layer_output_types: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    ref_miou = comparison.scores[reference].miou
    report: dict[str, Any] = {"data": str(getattr(data, "root", data)), "split": split, "images": comparison.images,
                              "reference": reference, "miou_threshold_points": miou_threshold, "models": {}}
    for name in models:
        scores = comparison.scores[name]
        drop = 100.0 * (ref_miou - scores.miou)  # percentage points
        passed = bool(name == reference or drop <= miou_threshold)
        row = {"file": str(models[name]), "miou": scores.miou, "pixel_acc": scores.pixel_acc,
               "mean_acc": scores.mean_acc, "argmax_agreement": comparison.agreement[name],
               "miou_drop_points": drop, "pass": passed}
        if name in layer_output_types:
            row["layer_output_types"] = dict(layer_output_types[name])
        report["models"][name] = row
        if not passed:
            log.warning("FAIL: %s loses %.2f mIoU points against %s (threshold %.2f): do not deploy it as is",
                        name, drop, reference, miou_threshold)
    return report


def format_table(report: Mapping[str, Any]) -> str:
    """The report as people read it: scores as percentages (format_score, 2 decimals so small drops show), the
    mIoU drop in percentage points."""
    lines = [f"accuracy on {report['data']} ({report['split']}, {report['images']} images), ONNX Runtime CPU",
             f"{'precision':<10}{'mIoU':>10}{'pixel acc':>11}{'agree':>10}{'drop':>10}  result"]
    for name, row in report["models"].items():
        lines.append(f"{name:<10}{format_score(row['miou'], 2):>10}{format_score(row['pixel_acc'], 2):>11}"
                     f"{format_score(row['argmax_agreement'], 2):>10}{row['miou_drop_points']:>7.2f} pt  "
                     f"{'pass' if row['pass'] else 'FAIL'}")
    return "\n".join(lines)
