"""Bad input to `edgeseg train`: a clear error naming the option or file, exit 2, no traceback, nothing written.

Every case is caught before the first training step: `_train_step` is replaced by a function that fails the test,
so a check that only fired after some training would show up as that failure instead of the expected error.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.training import trainer


def _write_sample(root: Path, split: str, name: str, label: np.ndarray, image_hw: tuple[int, int] | None = None):
    h, w = image_hw or label.shape
    image = np.random.default_rng(len(name)).integers(0, 256, (h, w, 3), dtype=np.uint8)
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    (root / split / "labels").mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(root / split / "images" / f"{name}.png"), image)
    assert cv2.imwrite(str(root / split / "labels" / f"{name}.png"), label)


def make_dataset(root: Path, num_classes: int = 3, classes_json: bool = True, size=(24, 32)) -> Path:
    """A folder-layout dataset: 4 train and 2 val samples whose labels hold every id 0..num_classes-1."""
    h, w = size
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            label = (np.arange(h * w).reshape(h, w) % num_classes).astype(np.uint8)
            label[0, :3] = 255  # void
            _write_sample(root, split, f"{split}{i}", label)
    if classes_json:
        (root / "classes.json").write_text(json.dumps({"classes": [f"c{k}" for k in range(num_classes)]}))
    return root


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any training step runs: every check must come before it."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a training step ran before the bad input was reported")

    monkeypatch.setattr(trainer, "_train_step", refuse)


def _train(tmp_path: Path, data: Path | str, *extra: str, out: Path | None = None) -> list[str]:
    out = out if out is not None else tmp_path / "run"
    return ["train", "--data", str(data), "--model", "fcn8s_mobilenetv3", "--epochs", "1", "--batch-size", "2",
            "--image-size", "32", "32", "--workers", "0", "--out", str(out), *extra]


def _fails_cleanly(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith("edgeseg train: error: ") or "\nedgeseg train: error: " in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _tree(root: Path) -> dict[str, str]:
    """Every file under root with its SHA-256: to show nothing was written or changed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- options ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--lr", "-1"], "--lr must be a number > 0, got -1.0"),
    (["--lr", "0"], "--lr must be a number > 0, got 0.0"),
    (["--workers", "-1"], "--workers must be >= 0"),
    (["--image-size", "0", "0"], "--image-size must be at least 16x16, got (H, W) = (0, 0)"),
    (["--max-minutes", "0"], "--max-minutes must be a number of minutes > 0, got 0.0"),
    (["--max-minutes", "-3"], "--max-minutes must be a number of minutes > 0, got -3.0"),
    (["--weight-decay", "-0.1"], "--weight-decay must be a number >= 0"),
    (["--model", "fcn9s_nothing"], "unknown model 'fcn9s_nothing'"),
    (["--eval-every", "0"], "--eval-every must be >= 1 (validate every N epochs), got 0"),
])
def test_bad_options_fail_before_anything_is_written(tmp_path, capsys, no_training, argv, message):
    data = make_dataset(tmp_path / "data")
    before = _tree(tmp_path)
    # the later option wins in argparse, so each bad value replaces the good one _train gives
    _fails_cleanly(capsys, _train(tmp_path, data) + argv, message)
    assert not (tmp_path / "run").exists()
    assert _tree(tmp_path) == before


# --- --out -----------------------------------------------------------------------------------------------------


def test_out_that_is_an_existing_file_is_refused_and_kept(tmp_path, capsys, no_training):
    data = make_dataset(tmp_path / "data")
    out = tmp_path / "results.txt"
    out.write_text("keep me")
    _fails_cleanly(capsys, _train(tmp_path, data, out=out), f"--out {out} is a file; --out takes a folder")
    assert out.read_text() == "keep me"


def test_out_under_a_regular_file_is_refused(tmp_path, capsys, no_training):
    # chmod would not stop root (tests may run as root): a parent that is a file stops everyone
    data = make_dataset(tmp_path / "data")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker / "deeper" / "run"
    _fails_cleanly(capsys, _train(tmp_path, data, out=out), f"--out {out}: cannot create this folder, {blocker} is a file")
    assert blocker.read_text() == "not a folder"


def test_out_holding_a_folder_where_a_file_goes_is_refused(tmp_path, capsys, no_training):
    data = make_dataset(tmp_path / "data")
    (tmp_path / "run" / "history.csv").mkdir(parents=True)
    _fails_cleanly(capsys, _train(tmp_path, data), "history.csv is a folder, where a file is written")


@pytest.mark.parametrize("inside", [".", "train/images", "runs/today"])
def test_out_inside_the_data_folder_is_refused(tmp_path, capsys, no_training, inside):
    data = make_dataset(tmp_path / "data")
    before = _tree(tmp_path)
    _fails_cleanly(capsys, _train(tmp_path, data, out=data / inside), f"the --data dataset {data}")
    assert _tree(tmp_path) == before and not (data / "runs").exists()


# --- data ------------------------------------------------------------------------------------------------------


def test_val_label_with_an_id_outside_the_classes(tmp_path, capsys, no_training):
    data = make_dataset(tmp_path / "data", num_classes=3)
    label = np.zeros((24, 32), np.uint8)
    label[5, 5] = 7  # classes.json lists 3 classes: 7 is neither a class nor void
    _write_sample(data, "val", "val1", label)
    before = _tree(tmp_path)
    _fails_cleanly(capsys, _train(tmp_path, data), "val sample 1 (val1)", "val/labels/val1.png", "[7]", "classes.json")
    assert not (tmp_path / "run").exists() and _tree(tmp_path) == before


def test_val_label_whose_size_differs_from_its_image(tmp_path, capsys, no_training):
    data = make_dataset(tmp_path / "data", num_classes=3)
    label = (np.arange(20 * 32).reshape(20, 32) % 3).astype(np.uint8)  # 20 rows, its image has 24
    _write_sample(data, "val", "val0", label, image_hw=(24, 32))
    _fails_cleanly(capsys, _train(tmp_path, data), "val sample 0 (val0)", "is 32x20 (WxH)", "is 32x24")
    assert not (tmp_path / "run").exists()


def test_train_label_problem_is_named_with_its_split(tmp_path, capsys, no_training):
    data = make_dataset(tmp_path / "data", num_classes=3)
    (data / "train" / "images" / "train2.png").write_bytes(b"\x89PNG broken")
    _fails_cleanly(capsys, _train(tmp_path, data), "train sample 2 (train2)", "unreadable or corrupt")


def test_stray_id_without_classes_json_is_refused_not_a_201_class_model(tmp_path, capsys, no_training):
    data = make_dataset(tmp_path / "data", num_classes=3, classes_json=False)
    label = np.zeros((24, 32), np.uint8)
    label[3, 4] = 200  # one stray pixel
    _write_sample(data, "val", "val1", label)
    err = _fails_cleanly(capsys, _train(tmp_path, data), "has no classes.json", "0..K-1 with none missing",
                         "ids 0..2, 200, but none of 3..199", "200 in ", "val/labels/val1.png", "add ")
    assert str(data / "classes.json") in err
    assert not (tmp_path / "run").exists()


def test_dense_ids_without_classes_json_are_the_classes(tmp_path):
    """The rule's other side: ids 0..K-1 (every one present somewhere) and 255 as void open as K classes."""
    from edgeseg.data import open_dataset

    data = make_dataset(tmp_path / "data", num_classes=5, classes_json=False)
    ds = open_dataset(data, "val")
    assert ds.info.classes == ("class_0", "class_1", "class_2", "class_3", "class_4")
    assert ds[0][1].max() == 255 and set(np.unique(ds[0][1]).tolist()) == {0, 1, 2, 3, 4, 255}


def test_resume_with_no_more_epochs_to_train(tmp_path, capsys, no_training):
    """--epochs counts all epochs: resuming a 3-epoch last.pt with --epochs 3 would train nothing."""
    from edgeseg.config import make_meta
    from edgeseg.models import build_model
    from edgeseg.training.checkpoint import save_checkpoint

    data = make_dataset(tmp_path / "data")
    meta = make_meta("fcn8s_mobilenetv3", ("c0", "c1", "c2"), (32, 32))
    save_checkpoint(tmp_path / "run" / "last.pt", build_model("fcn8s_mobilenetv3", num_classes=3), meta, epoch=2)
    before = _tree(tmp_path)
    argv = _train(tmp_path, data, "--resume")
    argv[argv.index("--epochs") + 1] = "3"
    _fails_cleanly(capsys, argv, "--resume:", "already trained 3 epochs", "--epochs greater than 3")
    assert _tree(tmp_path) == before


def test_resume_without_last_pt(tmp_path, capsys, no_training):
    data = make_dataset(tmp_path / "data")
    _fails_cleanly(capsys, _train(tmp_path, data, "--resume"), "last.pt does not exist")
    assert not (tmp_path / "run").exists()
