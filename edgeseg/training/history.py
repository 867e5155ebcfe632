"""The training history as files people open: OUT/history.csv (one row per epoch) and OUT/history.png.

Both are rewritten after every epoch from the same records the checkpoints hold (`history` in last.pt/best.pt),
so a run that is stopped still has them. Scores are fractions in [0, 1] in the CSV, as in metrics.json; the plot
shows them in percent. `seconds` is an epoch's wall time, training and validation together.

matplotlib is optional (the `train` and `bench` extras bring it): without it the CSV is still written and the
plot is skipped with one warning, since a missing chart must not end a training run.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeseg._optional import install_hint, is_available
from edgeseg.files import write_file, write_with

log = logging.getLogger(__name__)

HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"

# CSV column -> key of an epoch record (edgeseg.training.trainer); val scores are prefixed in the CSV only.
COLUMNS = (
    ("epoch", "epoch"),
    ("train_loss", "train_loss"),
    ("val_pixel_acc", "pixel_acc"),
    ("val_mean_acc", "mean_acc"),
    ("val_miou", "miou"),
    ("val_fwiou", "fwiou"),
    ("lr", "lr"),
    ("seconds", "seconds"),
)

_warned_no_matplotlib = False


def history_csv_text(history: Sequence[dict[str, Any]]) -> str:
    """The CSV text: a header, then one row per epoch; floats with repr() so they read back exactly.

    A record without a key (an older checkpoint resumed, which had no lr/seconds) leaves its cell empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column for column, _ in COLUMNS])
    for record in history:
        writer.writerow(["" if record.get(key) is None else repr(record[key]) for _, key in COLUMNS])
    return buffer.getvalue()


def plot_history(path: str | Path, history: Sequence[dict[str, Any]]) -> Path:
    """A PNG with two panels: training loss and val mIoU (percent) per epoch. Needs matplotlib.

    Uses matplotlib's Figure and Agg canvas directly, not pyplot, so no global backend is switched and no window
    is opened, whatever the process does elsewhere."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [record["epoch"] for record in history]
    figure = Figure(figsize=(9, 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, miou_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [record["train_loss"] for record in history], marker="o")
    loss_axes.set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
    miou_axes.plot(epochs, [100.0 * record["miou"] for record in history], marker="o", color="tab:green")
    miou_axes.set(title="val mIoU", xlabel="epoch", ylabel="mIoU (%)")
    for axes in (loss_axes, miou_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    return write_with(path, lambda handle: figure.savefig(handle, format="png"))


def write_history(out: str | Path, history: Sequence[dict[str, Any]]) -> list[Path]:
    """Write OUT/history.csv and, when matplotlib is installed, OUT/history.png; returns the paths written."""
    global _warned_no_matplotlib
    out = Path(out)
    written = [write_file(out / HISTORY_CSV, history_csv_text(history))]
    if is_available("matplotlib"):
        written.append(plot_history(out / HISTORY_PNG, history))
    elif not _warned_no_matplotlib:
        _warned_no_matplotlib = True
        log.warning("matplotlib is not installed, so %s is not drawn (%s is written); %s", out / HISTORY_PNG,
                    out / HISTORY_CSV, install_hint("matplotlib"))
    return written
