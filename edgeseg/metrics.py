"""Segmentation metrics of the FCN paper (Long et al., section 5) from a confusion matrix, numpy only.

With n_ij the pixels of class i predicted as j, t_i = sum_j n_ij and n_cl classes that occur:
pixel accuracy sum_i n_ii / sum_i t_i; mean accuracy (1/n_cl) sum_i n_ii / t_i;
mean IoU (1/n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii); frequency-weighted IoU
(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii). Pixels labelled ignore_index count nowhere.
Classes absent from both labels and predictions are left out of the means (NaN per class), as is usual.

Units, everywhere in EdgeSeg: JSON holds scores as fractions in [0, 1]; differences between scores are stored in
percentage points under keys ending in `_points`; people read percentages, printed by `format_score`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edgeseg.errors import DataError


def confusion_matrix(label: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(num_classes, num_classes) int64 matrix, rows = true class, columns = predicted class."""
    if label.shape != pred.shape:
        raise DataError(f"label shape {label.shape} and prediction shape {pred.shape} differ")
    label = label.ravel().astype(np.int64)
    pred = pred.ravel().astype(np.int64)
    keep = label != ignore_index
    label, pred = label[keep], pred[keep]
    bad = (label < 0) | (label >= num_classes)
    if bad.any():
        raise DataError(f"label has class ids {np.unique(label[bad])[:10].tolist()} outside 0..{num_classes - 1}")
    bad = (pred < 0) | (pred >= num_classes)
    if bad.any():
        raise DataError(f"prediction has class ids {np.unique(pred[bad])[:10].tolist()} outside 0..{num_classes - 1}")
    return np.bincount(label * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def format_score(fraction: float, digits: int = 1) -> str:
    """A score held as a fraction, as people read it: 0.5341 -> '53.4 %' (NaN -> 'n/a')."""
    if fraction != fraction:  # NaN: a class that never occurs
        return "n/a"
    return f"{100.0 * fraction:.{digits}f} %"


@dataclass
class SegmentationScores:
    """The four FCN-paper scores, per-class IoU and accuracy (NaN for a class absent from labels and predictions),
    and the confusion matrix they come from, so reports and plots never need a second pass over the data."""

    pixel_acc: float
    mean_acc: float
    miou: float
    fwiou: float
    per_class_iou: dict[str, float]
    num_images: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    per_class_acc: dict[str, float] = field(default_factory=dict)
    # (C, C) int64 pixel counts, rows = true class, columns = predicted class (ignore_index pixels left out)
    confusion: np.ndarray | None = field(default=None, repr=False, compare=False)
    # The scores per confidence bin (ConfidenceBins.to_list), when the predictor gave confidences; not in to_dict
    by_confidence: list[dict] | None = field(default=None, repr=False, compare=False)

    @property
    def class_names(self) -> list[str]:
        return list(self.per_class_iou)

    def to_dict(self) -> dict:
        """The scores as JSON-ready fractions; the confusion matrix goes out separately (`confusion_dict`)."""
        return {
            "pixel_acc": self.pixel_acc,
            "mean_acc": self.mean_acc,
            "miou": self.miou,
            "fwiou": self.fwiou,
            "per_class_iou": self.per_class_iou,
            "per_class_acc": self.per_class_acc,
            "num_images": self.num_images,
            **self.extra,
        }

    def confusion_dict(self) -> dict:
        """{'classes', 'rows', 'columns', 'matrix'}: the raw int pixel counts, rows = true class."""
        if self.confusion is None:
            raise DataError("these scores carry no confusion matrix")
        return {
            "classes": self.class_names,
            "rows": "true class",
            "columns": "predicted class",
            "matrix": self.confusion.astype(np.int64).tolist(),
        }


def row_normalised(conf: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the fraction of a true class's pixels given each prediction); NaN rows for
    classes that never occur in the labels."""
    conf = np.asarray(conf, dtype=np.float64)
    rows = conf.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rows > 0, conf / rows, np.nan)


def scores_from_confusion(conf: np.ndarray, class_names: Sequence[str], num_images: int = 0) -> SegmentationScores:
    """All scores of a (C, C) confusion matrix (rows = true class); the matrix itself travels with them."""
    if np.shape(conf) != (len(class_names),) * 2:
        raise DataError(f"confusion matrix is {np.shape(conf)}, expected {len(class_names)}x{len(class_names)} "
                        f"for the classes {list(class_names)[:5]}...")
    counts = np.asarray(conf).astype(np.int64)
    conf = counts.astype(np.float64)
    true_per_class = conf.sum(axis=1)
    pred_per_class = conf.sum(axis=0)
    hits = np.diag(conf)
    total = true_per_class.sum()
    union = true_per_class + pred_per_class - hits
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(true_per_class > 0, hits / true_per_class, np.nan)
        iou = np.where(union > 0, hits / union, np.nan)
    present = true_per_class > 0
    return SegmentationScores(
        pixel_acc=float(hits.sum() / total) if total else float("nan"),
        mean_acc=float(np.nanmean(acc)) if present.any() else float("nan"),
        miou=float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        fwiou=float(np.nansum(true_per_class * np.nan_to_num(iou)) / total) if total else float("nan"),
        per_class_iou={name: float(v) for name, v in zip(class_names, iou)},
        num_images=num_images,
        per_class_acc={name: float(v) for name, v in zip(class_names, acc)},
        confusion=counts,
    )


class MetricAccumulator:
    """Adds up a confusion matrix over many (label, prediction) pairs."""

    def __init__(self, class_names: Sequence[str], ignore_index: int = 255) -> None:
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.conf = np.zeros((len(self.class_names),) * 2, dtype=np.int64)
        self.num_images = 0

    def update(self, label: np.ndarray, pred: np.ndarray) -> None:
        if label.ndim == 3:  # a batch
            for one_label, one_pred in zip(label, pred):
                self.update(one_label, one_pred)
            return
        self.conf += confusion_matrix(label, pred, len(self.class_names), self.ignore_index)
        self.num_images += 1

    def scores(self) -> SegmentationScores:
        return scores_from_confusion(self.conf, self.class_names, self.num_images)


# Equal-width bins of the highest softmax probability p, for the scores per confidence bin (`edgeseg eval --out`).
CONFIDENCE_BINS = 10


def confidence_bin(confidence: np.ndarray, bins: int = CONFIDENCE_BINS) -> np.ndarray:
    """Bin index of each uint8 confidence q (p = q / 255): bin k holds k / bins <= p < (k + 1) / bins, and the last
    bin also holds p = 1. Exact in integers: k = min(q * bins // 255, bins - 1)."""
    return np.minimum(np.asarray(confidence, np.int64) * bins // 255, bins - 1)


class ConfidenceBins:
    """Adds up one confusion matrix per confidence bin, so the scores can be read where the model is sure and where
    it is not: a model whose confidence means something has high IoU in its high bins and low IoU in its low ones."""

    def __init__(self, class_names: Sequence[str], ignore_index: int = 255, bins: int = CONFIDENCE_BINS) -> None:
        if bins < 1:
            raise DataError(f"bins must be >= 1, got {bins}")
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.bins = bins
        self.conf = np.zeros((bins, len(self.class_names), len(self.class_names)), dtype=np.int64)

    def update(self, label: np.ndarray, pred: np.ndarray, confidence: np.ndarray) -> None:
        """One image: label, prediction and uint8 confidence of the same (H, W)."""
        if confidence.shape != pred.shape:
            raise DataError(f"confidence shape {confidence.shape} and prediction shape {pred.shape} differ")
        which = confidence_bin(confidence, self.bins)
        for k in range(self.bins):
            inside = which == k
            if inside.any():
                self.conf[k] += confusion_matrix(label[inside], pred[inside], len(self.class_names),
                                                 self.ignore_index)

    def to_list(self) -> list[dict]:
        """Per bin: its p range, its labelled pixels (count and share), pixel accuracy, mIoU and per-class IoU
        (fractions; NaN where a bin has no pixels or a class is absent from it)."""
        total = int(self.conf.sum())
        result = []
        for k in range(self.bins):
            scores = scores_from_confusion(self.conf[k], self.class_names)
            pixels = int(self.conf[k].sum())
            result.append({
                "confidence_from": k / self.bins,
                "confidence_to": (k + 1) / self.bins,
                "pixels": pixels,
                "pixel_share": pixels / total if total else float("nan"),
                "pixel_acc": scores.pixel_acc,
                "miou": scores.miou,
                "per_class_iou": scores.per_class_iou,
            })
        return result
