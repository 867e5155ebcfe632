"""OUT/history.csv and OUT/history.png: one row per epoch, equal to the checkpoint's history, written every epoch."""

from __future__ import annotations

import csv
import json
import logging
import math

import cv2
import pytest

from edgeseg._optional import install_hint
from edgeseg.cli import main
from edgeseg.metrics import format_score
from edgeseg.pipeline import progress
from edgeseg.training import history as history_module
from edgeseg.training import trainer
from edgeseg.training.checkpoint import read_checkpoint
from edgeseg.training.history import history_csv_text, plot_history, write_history

CSV_COLUMNS = ["epoch", "train_loss", "val_pixel_acc", "val_mean_acc", "val_miou", "val_fwiou", "lr", "seconds"]
RECORD_KEYS = ["epoch", "train_loss", "pixel_acc", "mean_acc", "miou", "fwiou", "lr", "seconds"]


def _csv_rows(path):
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def _train_argv(data, out, epochs=2):
    return ["train", "--data", str(data), "--model", "fcn8s_mobilenetv3", "--epochs", str(epochs),
            "--batch-size", "4", "--image-size", "64", "80", "--workers", "0", "--optimizer", "adamw",
            "--lr", "2e-3", "--out", str(out)]


@pytest.fixture
def tiny_data(tmp_path):
    from edgeseg.data import write_synthetic_folder

    return write_synthetic_folder(tmp_path / "data", n=8, size=(64, 80), seed=3, val_count=4)


@pytest.mark.slow
def test_train_writes_history_equal_to_the_checkpoint_and_log_lines(tmp_path, tiny_data, capsys, caplog,
                                                                   monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)  # a progress line per step, so lines surely appear
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="edgeseg.training.trainer"):
        assert main(_train_argv(tiny_data, out)) == 0
    captured = capsys.readouterr()

    # stderr is not a terminal here: plain progress lines, no carriage returns
    assert "\r" not in captured.err
    bar_lines = [line for line in captured.err.splitlines() if line.startswith("epoch 1/2:")]
    assert len(bar_lines) >= 2 and any("2/2" in line for line in bar_lines)

    # the CSV holds exactly the checkpoint's history (floats written with repr read back bit for bit)
    saved = read_checkpoint(out / "last.pt")["history"]
    header, rows = _csv_rows(out / "history.csv")
    assert header == CSV_COLUMNS and len(rows) == len(saved) == 2
    for row, record in zip(rows, saved):
        assert int(row[0]) == record["epoch"]
        for cell, key in zip(row[1:], RECORD_KEYS[1:]):
            assert float(cell) == record[key], key
        assert 0 <= float(row[4]) <= 1 and float(row[6]) > 0 and float(row[7]) > 0
    assert json.loads((out / "metrics.json").read_text())["history"] == saved

    image = cv2.imread(str(out / "history.png"))
    assert image is not None and image.ndim == 3
    assert 200 <= image.shape[0] <= 2000 and 300 <= image.shape[1] <= 3000

    # scores for people as percentages; metrics.json keeps fractions
    best = json.loads((out / "metrics.json").read_text())["best"]
    assert 0 <= best["miou"] <= 1
    assert f"best val mIoU {format_score(best['miou'])}; wrote {out}" in captured.out
    epoch_logs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(epoch_logs) == 2 and f"val mIoU {format_score(saved[1]['miou'])}" in epoch_logs[1]


@pytest.mark.slow
def test_a_stopped_run_keeps_the_history_of_its_finished_epochs(tmp_path, tiny_data, capsys, monkeypatch):
    real_evaluate = trainer._evaluate_epoch
    calls = []

    def evaluate_then_stop(run):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second epoch's validation
        return real_evaluate(run)

    monkeypatch.setattr(trainer, "_evaluate_epoch", evaluate_then_stop)
    out = tmp_path / "run"
    assert main(_train_argv(tiny_data, out, epochs=3)) == 130
    assert "interrupted" in capsys.readouterr().err
    header, rows = _csv_rows(out / "history.csv")
    assert [int(row[0]) for row in rows] == [1]
    assert float(rows[0][4]) == read_checkpoint(out / "last.pt")["history"][0]["miou"]
    assert cv2.imread(str(out / "history.png")) is not None
    assert not (out / "metrics.json").exists()  # written once the run finishes


def test_csv_text_by_hand():
    records = [
        {"epoch": 1, "train_loss": 1.5, "pixel_acc": 0.5, "mean_acc": 0.25, "miou": 0.125, "fwiou": 0.375,
         "lr": 0.01, "seconds": 2.0, "steps": 3, "images_per_s": 9.0},
        {"epoch": 2, "train_loss": 0.1 + 0.2, "pixel_acc": 0.75, "mean_acc": 0.5, "miou": 0.25, "fwiou": 0.5},
    ]  # the second as an older checkpoint stored it: no lr, no seconds
    assert history_csv_text(records) == (
        "epoch,train_loss,val_pixel_acc,val_mean_acc,val_miou,val_fwiou,lr,seconds\n"
        "1,1.5,0.5,0.25,0.125,0.375,0.01,2.0\n"
        "2,0.30000000000000004,0.75,0.5,0.25,0.5,,\n"
    )
    assert history_csv_text([]) == ",".join(CSV_COLUMNS) + "\n"


def test_plot_is_a_png_and_nan_scores_do_not_break_it(tmp_path):
    records = [{"epoch": e, "train_loss": 2.0 / e, "miou": m} for e, m in ((1, math.nan), (2, 0.3), (3, 0.4))]
    path = plot_history(tmp_path / "h.png", records)
    image = cv2.imread(str(path))
    assert image is not None and image.shape[2] == 3 and image.shape[0] < image.shape[1]
    assert len(set(image.reshape(-1, 3)[:, 0].tolist())) > 10  # something is drawn, not a blank canvas


def test_without_matplotlib_the_csv_is_still_written(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(history_module, "is_available", lambda module: module != "matplotlib")
    monkeypatch.setattr(history_module, "_warned_no_matplotlib", False)
    records = [{"epoch": 1, "train_loss": 1.0, "pixel_acc": 0.5, "mean_acc": 0.5, "miou": 0.5, "fwiou": 0.5,
                "lr": 0.1, "seconds": 1.0}]
    with caplog.at_level(logging.WARNING):
        written = write_history(tmp_path, records)
        write_history(tmp_path, records)
    assert written == [tmp_path / "history.csv"] and not (tmp_path / "history.png").exists()
    warnings = [r.getMessage() for r in caplog.records if "matplotlib" in r.getMessage()]
    assert len(warnings) == 1 and install_hint("matplotlib") in warnings[0]  # once per process, naming the extra
