"""Scoring predictions against a labelled dataset (numpy + OpenCV only; works for any predictor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from edgeseg.errors import ConfigError, DataError
from edgeseg.metrics import MetricAccumulator, SegmentationScores

# frames (BGR uint8) -> masks (uint8) at any resolution; they are resized (nearest) to the label's size
PredictFn = Callable[[Sequence[np.ndarray]], list]


def evaluate_predictor(
    predict: PredictFn,
    dataset: Any,
    class_names: Sequence[str],
    *,
    limit: int | None = None,
    progress: bool = True,
) -> SegmentationScores:
    """Run `predict` on each image of `dataset` and score the masks at the labels' own resolution."""
    if len(class_names) != len(dataset.info.classes):
        raise ConfigError(
            f"the model has {len(class_names)} classes but the dataset has {len(dataset.info.classes)}: "
            f"model {list(class_names)[:5]}..., data {list(dataset.info.classes)[:5]}..."
        )
    accumulator = MetricAccumulator(class_names, dataset.info.ignore_index)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in tqdm(range(count), desc="eval", unit="img", disable=not progress, leave=False):
        image_rgb, label = dataset[index]
        mask = predict([np.ascontiguousarray(image_rgb[:, :, ::-1])])[0]
        if mask.shape != label.shape:
            mask = cv2.resize(mask, (label.shape[1], label.shape[0]), interpolation=cv2.INTER_NEAREST)
        accumulator.update(label, mask)
    return accumulator.scores()


def evaluate_pred_dir(pred_dir: str | Path, dataset: Any, *, limit: int | None = None) -> SegmentationScores:
    """Score ready-made mask PNGs (class ids, named like the dataset's images) against the dataset's labels."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} does not exist")
    accumulator = MetricAccumulator(dataset.info.classes, dataset.info.ignore_index)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(count):
        name = dataset.name_of(index)
        path = pred_dir / f"{name}.png"
        if not path.is_file():
            raise DataError(f"no prediction {path} for dataset image '{name}'")
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.ndim != 2:
            raise DataError(f"prediction {path} is not a single-channel class-id PNG")
        label = dataset[index][1]
        if mask.shape != label.shape:
            raise DataError(f"prediction {path} is {mask.shape[1]}x{mask.shape[0]}, its label {label.shape[1]}x{label.shape[0]}")
        accumulator.update(label, mask)
    return accumulator.scores()
