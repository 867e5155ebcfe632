"""The picture of `edgeseg bench`'s table: FPS per model, p50 per stage, and mIoU when it was measured (matplotlib Agg).

One horizontal bar per model in each panel, models in the table's order on a shared axis, so a row reads across.
A model that did not run keeps its place with its status written where its bars would be, never a zero-length bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from edgeseg._optional import require
from edgeseg.bench_table import TABLE_STAGES, BenchRow
from edgeseg.files import write_with

STAGE_COLOURS = {"preprocess": "#4c72b0", "infer": "#76b900", "postprocess": "#dd8452"}
_NOT_RUN_COLOUR = "#999999"


def _pyplot() -> Any:
    require("matplotlib", "the bench chart (OUT.png next to --json OUT.json)")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    return plt


def _row_label(row: BenchRow) -> str:
    second = f"{row.precision or '?'}, {row.backend}" if row.ran else (row.precision or "?")
    return f"{row.label or row.path.name}\n{second}"


def _not_run(ax: Any, rows: Sequence[BenchRow]) -> None:
    for y, row in enumerate(rows):
        if not row.ran:
            ax.text(0, y, f" {row.status}", va="center", color=_NOT_RUN_COLOUR, style="italic")


def table_chart(rows: Sequence[BenchRow], path: str | Path, *, title: str = "") -> Path:
    """Write the chart of `rows` to `path` (PNG, through edgeseg.files.write_with); returns the path."""
    plt = _pyplot()
    rows = list(rows)
    with_miou = any(row.miou is not None for row in rows)
    panels = 3 if with_miou else 2
    fig, axes = plt.subplots(1, panels, sharey=True, figsize=(4.4 * panels + 1.6, 1.4 + 0.62 * len(rows)),
                             squeeze=False, layout="constrained")
    axes = axes[0]
    ys = list(range(len(rows)))

    fps_ax = axes[0]
    fps = [row.fps or 0.0 for row in rows]
    bars = fps_ax.barh(ys, fps, color=["#76b900" if row.ran else _NOT_RUN_COLOUR for row in rows], height=0.6)
    for bar, row in zip(bars, rows):
        if row.ran:
            fps_ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {row.fps:.1f}", va="center", fontsize=9)
    _not_run(fps_ax, rows)
    fps_ax.set_xlim(0, max(fps + [1.0]) * 1.25)
    fps_ax.set_xlabel("FPS (1000 / p50 frame ms), higher is better")
    fps_ax.set_yticks(ys, [_row_label(row) for row in rows], fontsize=9)
    fps_ax.invert_yaxis()  # first model on top, as in the table

    stage_ax = axes[1]
    left = [0.0] * len(rows)
    for stage in TABLE_STAGES:
        values = [row.latency_ms(stage, "p50") or 0.0 for row in rows]
        stage_ax.barh(ys, values, left=left, height=0.6, color=STAGE_COLOURS[stage], label=stage)
        left = [a + b for a, b in zip(left, values)]
    for y, (row, total) in enumerate(zip(rows, left)):
        if row.ran:
            stage_ax.text(total, y, f" {total:.1f} ms", va="center", fontsize=9)
    _not_run(stage_ax, rows)
    stage_ax.set_xlim(0, max(left + [1.0]) * 1.3)
    stage_ax.set_xlabel("p50 latency per stage (ms), lower is better")
    stage_ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(TABLE_STAGES), fontsize=8, frameon=False)

    if with_miou:
        miou_ax = axes[2]
        values = [100.0 * row.miou if row.miou is not None and row.miou == row.miou else 0.0 for row in rows]
        miou_ax.barh(ys, values, height=0.6, color="#8172b3")
        for y, (row, value) in enumerate(zip(rows, values)):
            if row.miou is not None:
                miou_ax.text(value, y, f" {value:.1f} %", va="center", fontsize=9)
        _not_run(miou_ax, rows)
        miou_ax.set_xlim(0, 100)
        miou_ax.set_xlabel("mIoU (%), higher is better")

    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    if title:
        fig.suptitle(title, fontsize=10)
    try:
        return write_with(path, lambda handle: fig.savefig(handle, format="png", dpi=120), suffix=".png")
    finally:
        plt.close(fig)
