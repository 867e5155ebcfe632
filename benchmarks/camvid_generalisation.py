"""Collect CamVid training runs into the table of changes: val as shipped next to held-out sequence, per class.

    .venv/bin/python benchmarks/camvid_generalisation.py --run "baseline" runs/r0 --run "+ recipe" runs/r1 \
        --out benchmarks/results/camvid_generalisation

Each run folder is an `edgeseg train` --out folder with two `edgeseg eval best.pt --out` folders inside it:
`eval_shipped_val` (CamVid's val split, 101 frames of 0016E5) and `eval_heldout` (a sequence the run never trained
on). What changed is read from best.pt's train_config (every field that differs from the row above's), and the time
and epochs from metrics.json, so the table cannot disagree with what was run.

Writes OUT.json (rows, per-class IoU of every run, device and versions), OUT.md (the table), OUT_per_class.png
(per-class held-out IoU, first run vs last) and OUT_curves.png (val mIoU against training minutes of each run).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from edgeseg.bench import device_info
from edgeseg.files import write_file
from edgeseg.metrics import format_score
from edgeseg.training.checkpoint import read_checkpoint

IGNORED_FIELDS = {"out", "data", "resume", "workers", "extra"}


def read_run(label: str, folder: Path) -> dict[str, Any]:
    metrics = json.loads((folder / "metrics.json").read_text())
    scores = {name: json.loads((folder / name / "scores.json").read_text())
              for name in ("eval_shipped_val", "eval_heldout")}
    with (folder / "history.csv").open() as handle:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    return {
        "label": label, "folder": str(folder),
        "config": read_checkpoint(folder / "best.pt")["train_config"],
        "train_minutes": metrics["train_seconds"] / 60, "epochs_run": metrics["epochs_run"],
        "train_samples": metrics["train_samples"],
        "val_as_shipped_miou": scores["eval_shipped_val"]["miou"],
        "heldout_miou": scores["eval_heldout"]["miou"],
        "heldout_pixel_acc": scores["eval_heldout"]["pixel_acc"],
        "heldout_per_class_iou": scores["eval_heldout"]["per_class_iou"],
        "val_as_shipped_per_class_iou": scores["eval_shipped_val"]["per_class_iou"],
        "heldout_images": scores["eval_heldout"]["num_images"],
        "curve": [{"minutes": sum(r["seconds"] for r in history[:i + 1]) / 60, "val_miou": r["val_miou"]}
                  for i, r in enumerate(history)],
    }


def _defaults() -> dict:
    """TrainConfig's defaults as best.pt stores a config (tuples as lists)."""
    from edgeseg.training.trainer import TrainConfig, _jsonable

    return _jsonable(TrainConfig())


def changes(first: dict, config: dict) -> str:
    # a field the earlier run's code did not have yet had its default there
    diff = {k: v for k, v in config.items() if k not in IGNORED_FIELDS and first.get(k, _defaults().get(k)) != v}
    return ", ".join(f"{k}={v}" for k, v in diff.items()) or "(reference)"


def table(rows: list[dict]) -> str:
    first = rows[0]
    lines = ["| run | options changed from the row above | minutes | epochs | val as shipped mIoU | held-out mIoU | "
             "held-out vs first row (points) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for previous, row in zip([first, *rows], rows):
        delta = 100 * (row["heldout_miou"] - first["heldout_miou"])
        lines.append(f"| {row['label']} | {changes(previous['config'], row['config'])} | {row['train_minutes']:.1f} | "
                     f"{row['epochs_run']} | {format_score(row['val_as_shipped_miou'])} | "
                     f"{format_score(row['heldout_miou'])} | {delta:+.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    first, last = rows[0], rows[-1]
    classes = list(first["heldout_per_class_iou"])
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(10, 4))
    for offset, row in ((-0.2, first), (0.2, last)):
        ax.bar(x + offset, [100 * row["heldout_per_class_iou"][c] for c in classes], width=0.4,
               label=f"{row['label']} ({format_score(row['heldout_miou'])})")
    ax.set_xticks(x, classes, rotation=30, ha="right")
    ax.set_ylabel("held-out IoU (%)")
    ax.set_title("CamVid per-class IoU on the held-out sequence")
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{out}_per_class.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    for row in rows:
        ax.plot([p["minutes"] for p in row["curve"]], [100 * p["val_miou"] for p in row["curve"]], label=row["label"])
    ax.set_xlabel("training minutes (incl. validation)")
    ax.set_ylabel("held-out val mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{out}_curves.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs=2, action="append", metavar=("LABEL", "DIR"), required=True,
                        help="a run's label and its edgeseg train --out folder (in table order; the first is the "
                             "reference)")
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .json/.md/.png files written")
    args = parser.parse_args()
    rows = [read_run(label, Path(folder)) for label, folder in args.run]
    markdown = table(rows)
    write_file(f"{args.out}.md", markdown)
    write_file(f"{args.out}.json", json.dumps({"device": device_info(), "rows": rows}, indent=2))
    plot(rows, args.out)
    print(markdown)


if __name__ == "__main__":
    main()
