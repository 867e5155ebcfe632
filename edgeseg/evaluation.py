"""Scoring predictions against a labelled dataset (numpy + OpenCV only; works for any predictor)."""

from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from edgeseg.errors import ConfigError, DataError
from edgeseg.metrics import ConfidenceBins, MetricAccumulator, SegmentationScores

# frames (BGR uint8) -> masks (uint8) at any resolution; they are resized (nearest) to the label's size. With
# `by_confidence`, the loop calls predict(frames, confidence=True) -> (mask, uint8 confidence) pairs instead.
PredictFn = Callable[..., list]


@dataclass
class Comparison:
    """Scores of several predictors on the same images, and how often each agrees with a reference predictor."""

    scores: dict[str, SegmentationScores]
    agreement: dict[str, float]  # fraction of pixels (at model resolution) equal to the reference's
    images: int


def evaluate_many(
    predictors: Mapping[str, PredictFn],
    dataset: Any,
    class_names: Sequence[str],
    *,
    reference: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    by_confidence: bool = False,
) -> Comparison:
    """The one evaluation loop: each image of `dataset` through every predictor, masks scored at the labels' own
    resolution (nearest resize, ProcessingPlan.mask_to_frame) and compared with `reference`'s at model resolution.
    Each predictor's SegmentationScores carry the confusion matrix they were computed from (rows = true class), so
    per-class accuracy, reports and plots need no second pass. With `by_confidence`, the predictors also give each
    pixel's confidence and the scores carry the scores per confidence bin (`by_confidence`, ConfidenceBins)."""
    from edgeseg.runtime.plan import ProcessingPlan

    if len(class_names) != len(dataset.info.classes):
        raise ConfigError(
            f"the model has {len(class_names)} classes but the dataset has {len(dataset.info.classes)}: "
            f"model {list(class_names)[:5]}..., data {list(dataset.info.classes)[:5]}..."
        )
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1 image, got {limit}")
    if reference is not None and reference not in predictors:
        raise ConfigError(f"the reference {reference!r} is not among the predictors {list(predictors)}")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise DataError("the dataset has no images to evaluate on")
    accumulators = {name: MetricAccumulator(class_names, dataset.info.ignore_index) for name in predictors}
    binned = ({name: ConfidenceBins(class_names, dataset.info.ignore_index) for name in predictors}
              if by_confidence else {})
    agree = dict.fromkeys(predictors, 0)
    pixels = 0
    for index in tqdm(range(count), desc="eval", unit="img", disable=not progress, leave=False):
        image_rgb, label = dataset[index]
        frame = np.ascontiguousarray(image_rgb[:, :, ::-1])
        if by_confidence:
            pairs = {name: predict([frame], confidence=True)[0] for name, predict in predictors.items()}
            masks = {name: mask for name, (mask, _) in pairs.items()}
            for name, (mask, confidence) in pairs.items():
                binned[name].update(label, ProcessingPlan.mask_to_frame(mask, label.shape),
                                    ProcessingPlan.confidence_to_frame(confidence, label.shape))
        else:
            masks = {name: predict([frame])[0] for name, predict in predictors.items()}
        for name, mask in masks.items():
            accumulators[name].update(label, ProcessingPlan.mask_to_frame(mask, label.shape))
        if reference is not None:
            ref = masks[reference]
            pixels += ref.size
            for name, mask in masks.items():
                agree[name] += int(np.count_nonzero(mask == ref)) if mask.shape == ref.shape else 0
    scores = {name: acc.scores() for name, acc in accumulators.items()}
    for name, bins in binned.items():
        scores[name].by_confidence = bins.to_list()
    return Comparison(
        scores=scores,
        agreement={name: agree[name] / pixels for name in predictors} if pixels else {},
        images=count,
    )


def evaluate_predictor(
    predict: PredictFn,
    dataset: Any,
    class_names: Sequence[str],
    *,
    limit: int | None = None,
    progress: bool = True,
    by_confidence: bool = False,
) -> SegmentationScores:
    """Run `predict` on each image of `dataset` and score the masks at the labels' own resolution (and per
    confidence bin with `by_confidence`: see evaluate_many)."""
    return evaluate_many({"model": predict}, dataset, class_names, limit=limit, progress=progress,
                         by_confidence=by_confidence).scores["model"]


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
        try:
            accumulator.update(label, mask)
        except DataError as exc:  # an id beyond the classes: say which file holds it
            raise DataError(f"prediction {path}: {exc}") from exc
    return accumulator.scores()
