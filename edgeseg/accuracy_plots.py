"""Pictures of a model's accuracy: the row-normalised confusion heat map, the per-class IoU / accuracy bars and the
scores per confidence bin.

matplotlib is optional (the `bench` extra) and imported here only when a picture is drawn. Figures are built on
matplotlib's object API with the Agg canvas, never pyplot, so nothing global (backend, open figures) changes.
Percentages on the pictures are the fractions of `edgeseg.metrics` times 100, like `format_score` prints them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from edgeseg._optional import require
from edgeseg.files import write_with
from edgeseg.metrics import SegmentationScores, format_score, row_normalised

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PURPOSE = "edgeseg eval --out (confusion.png, per_class.png, confidence_bins.png)"
# Above this many classes the cells get too small to hold a number.
MAX_CLASSES_WITH_CELL_VALUES = 20
DPI = 120
HEATMAP_CMAP = "Blues"  # sequential: darker = larger share of the true class's pixels
IOU_COLOUR, ACC_COLOUR, MIOU_COLOUR = "#1f77b4", "#ff7f0e", "#d62728"


def require_matplotlib() -> None:
    """BackendUnavailableError naming the extra when matplotlib is missing; call it before long work starts."""
    require("matplotlib", PURPOSE)


def _new_figure(width_in: float, height_in: float) -> Figure:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Heat map of the confusion matrix with each row divided by its sum (% of the true class's pixels), class
    names on both axes, a colour bar, and the percentages in the cells when there are at most 20 classes.
    Cells with no pixels stay blank; rows of classes absent from the labels are grey."""
    import matplotlib

    n = len(class_names)
    percent = 100.0 * row_normalised(confusion)
    side = min(max(5.0, 0.55 * n + 3.0), 24.0)
    figure = _new_figure(side + 1.2, side)
    ax = figure.add_subplot()
    cmap = matplotlib.colormaps[HEATMAP_CMAP].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(percent), cmap=cmap, vmin=0.0, vmax=100.0, interpolation="nearest")
    colour_bar = figure.colorbar(image, ax=ax, shrink=0.8)
    colour_bar.set_label("% of the true class's pixels")
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    # thin white lines between cells so neighbouring cells of similar colour stay apart
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    if n <= MAX_CLASSES_WITH_CELL_VALUES:
        font = 9 if n <= 12 else 7
        for (row, col), value in np.ndenumerate(percent):
            if np.asarray(confusion)[row, col] == 0:
                continue
            text = f"{value:.0f}" if value >= 1.0 else "<1"
            ax.text(col, row, text, ha="center", va="center", fontsize=font,
                    color="white" if value > 55.0 else "black")
    return figure


def per_class_figure(scores: SegmentationScores, title: str) -> Figure:
    """Horizontal bars of each class's IoU and accuracy (%), the value at each bar's end, and the mIoU as a line.
    Classes with no pixels in labels or predictions show 'n/a'."""
    names = scores.class_names
    n = len(names)
    iou = np.array([100.0 * scores.per_class_iou[name] for name in names])
    acc = np.array([100.0 * scores.per_class_acc.get(name, math.nan) for name in names])
    figure = _new_figure(8.0, min(max(3.5, 0.5 * n + 1.8), 30.0))
    ax = figure.add_subplot()
    rows = np.arange(n)
    height = 0.38
    show_values = n <= 40
    series = ((-height / 2, iou, IOU_COLOUR, "IoU"), (height / 2, acc, ACC_COLOUR, "accuracy"))
    for offset, values, colour, label in series:
        bars = ax.barh(rows + offset, np.nan_to_num(values), height=height, color=colour, label=label)
        if show_values:
            texts = ax.bar_label(bars, labels=[format_score(v / 100.0) for v in values], padding=2, fontsize=7)
            for text in texts:  # readable where the mIoU line passes behind a label
                text.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 0.3, "alpha": 0.8})
    ax.axvline(100.0 * scores.miou, color=MIOU_COLOUR, linestyle="--", linewidth=1.2,
               label=f"mIoU {format_score(scores.miou)}")
    ax.set_yticks(rows, labels=names)
    ax.invert_yaxis()  # first class on top, as in the heat map
    ax.set_xlim(0.0, 112.0)  # room for the value labels of bars at 100 %
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("%")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title(title, fontsize=10)
    return figure


def save_png(figure: Figure, path: str | Path) -> Path:
    """Write the figure as a PNG through edgeseg.files.write_with (atomic; OutputPathError when it cannot)."""
    return write_with(path, lambda handle: figure.savefig(handle, format="png", dpi=DPI), suffix=".png")


def write_accuracy_plots(out_dir: str | Path, scores: SegmentationScores, title: str) -> dict[str, Path]:
    """out_dir/confusion.png and out_dir/per_class.png for `scores` (which must carry their confusion matrix)."""
    if scores.confusion is None:
        raise ValueError("write_accuracy_plots needs scores that carry their confusion matrix")
    out_dir = Path(out_dir)
    return {
        "confusion": save_png(confusion_figure(scores.confusion, scores.class_names,
                                               f"Confusion matrix (rows: true class, % of its pixels)\n{title}"),
                              out_dir / "confusion.png"),
        "per_class": save_png(per_class_figure(scores, f"Per-class IoU and accuracy\n{title}"),
                              out_dir / "per_class.png"),
    }


def confidence_bins_figure(bins: Sequence[dict], title: str) -> Figure:
    """Per confidence bin (ConfidenceBins.to_list): mIoU and pixel accuracy as bars (top) and the share of the
    labelled pixels in the bin (bottom), so a user sees how much of the image the model is unsure about and how
    wrong it is there. Empty bins show no bars."""
    names = [f"{b['confidence_from']:.1f}-{b['confidence_to']:.1f}" for b in bins]
    x = np.arange(len(bins))
    percent = lambda key: np.array([100.0 * (b[key] if b[key] is not None else math.nan) for b in bins])  # noqa: E731
    figure = _new_figure(8.0, 5.5)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    width = 0.38
    for offset, key, colour, label in ((-width / 2, "miou", MIOU_COLOUR, "mIoU"),
                                       (width / 2, "pixel_acc", ACC_COLOUR, "pixel accuracy")):
        values = percent(key)
        bars = top.bar(x + offset, np.nan_to_num(values), width=width, color=colour, label=label)
        top.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.0f}" for v in values], padding=1, fontsize=7)
    top.set_ylim(0.0, 110.0)
    top.set_ylabel("%")
    top.grid(axis="y", alpha=0.3)
    top.set_axisbelow(True)
    top.legend(loc="upper left", fontsize=8, framealpha=0.9)
    top.set_title(title, fontsize=10)
    share = percent("pixel_share")
    bars = bottom.bar(x, np.nan_to_num(share), width=0.7, color=IOU_COLOUR)
    bottom.bar_label(bars, labels=["" if math.isnan(v) or v == 0 else f"{v:.1f}" for v in share], padding=1,
                     fontsize=7)
    bottom.set_ylim(0.0, max(np.nan_to_num(share).max() * 1.25, 1.0))
    bottom.set_ylabel("% of pixels")
    bottom.set_xticks(x, labels=names, fontsize=8)
    bottom.set_xlabel("confidence: highest softmax probability of the pixel")
    return figure


def write_confidence_plot(out_dir: str | Path, bins: Sequence[dict], title: str) -> Path:
    """out_dir/confidence_bins.png from ConfidenceBins.to_list() (NaN or None for empty bins)."""
    clean = [{key: (None if isinstance(v, float) and math.isnan(v) else v) for key, v in b.items()} for b in bins]
    return save_png(confidence_bins_figure(clean, f"Scores per confidence bin\n{title}"),
                    Path(out_dir) / "confidence_bins.png")
