"""Issue 18, "Outputs that survive crashes and full disks", through the command line: a full disk is named and
leaves no file under the final name, a SIGKILL'd run or export leaves the previous state, two exports into one
folder do not interleave, train does not silently replace another run, and mask names never collide."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.cli import main

from .conftest import fill, sha256_tree

EDGESEG = [sys.executable, "-m", "edgeseg"]


def _wait_for(predicate, timeout_s: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}) before the moment to interrupt it: "
                                 f"{process.stderr.read() if process.stderr else ''}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----- videos ------------------------------------------------------------------------------------------------------
def test_run_on_a_full_disk_says_disk_full_and_leaves_no_video(world, small_tmpfs, capsys):
    fill(small_tmpfs, leave_bytes=96 * 1024)  # room for a few frames, not for 400
    out = small_tmpfs / "out.mp4"
    code = main(["run", str(world["model"]), "--source", "synthetic:400", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"edgeseg run: error: --out {out}: disk full" in err and "Traceback" not in err, err
    assert not out.exists()
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler"]  # no partial file left either


def test_a_sigkilled_run_leaves_the_previous_video(world, tmp_path):
    out = tmp_path / "out.mp4"
    assert main(["run", str(world["model"]), "--source", "synthetic:5", "--out", str(out)]) == 0
    before = _sha(out)
    run = subprocess.Popen([*EDGESEG, "run", str(world["model"]), "--source", "synthetic", "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        partial = lambda: [p for p in tmp_path.glob(".out.*.partial.mp4") if p.stat().st_size > 0]  # noqa: E731
        _wait_for(partial, process=run)
    finally:
        run.kill()
        run.wait()
    assert _sha(out) == before  # the finished video of the first run, not a half-written one
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()


# ----- exports -----------------------------------------------------------------------------------------------------
@pytest.fixture
def real_ckpt(tmp_path):
    """A checkpoint of a registered model, so a separate `edgeseg export` process can load it."""
    torch = pytest.importorskip("torch")
    from edgeseg.config import make_meta
    from edgeseg.models import build_model
    from edgeseg.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model("fcn32s_mobilenetv3", num_classes=3).eval()
    return save_checkpoint(tmp_path / "best.pt", model, make_meta("fcn32s_mobilenetv3", ["a", "b", "c"], (32, 32)))


def _staging(out: Path) -> list[Path]:
    return list(out.parent.glob(f".{out.name}.staging-*"))


@pytest.mark.slow
def test_a_sigkilled_reexport_leaves_the_previous_export(real_ckpt, tmp_path):
    out = tmp_path / "export"
    assert main(["export", str(real_ckpt), "--out", str(out), "--input-size", "64", "64"]) == 0
    before = sha256_tree(out)
    again = subprocess.Popen([*EDGESEG, "export", str(real_ckpt), "--out", str(out), "--input-size", "32", "32",
                              "--precision", "fp32", "fp16"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:  # killed once the new model.onnx is written (in the staging folder), before the swap
        _wait_for(lambda: any((s / "model.onnx").is_file() for s in _staging(out)), process=again)
    finally:
        again.kill()
        again.wait()
    assert sha256_tree(out) == before  # the previous export, whole: no new model.onnx beside the old files
    assert main(["export", str(real_ckpt), "--out", str(out), "--input-size", "32", "32"]) == 0  # and it recovers
    assert not _staging(out) and sorted(p.name for p in out.iterdir()) == ["export_manifest.json", "model.onnx"]


@pytest.mark.slow
def test_two_exports_into_one_folder_one_refuses_naming_the_other(real_ckpt, tmp_path, capsys):
    out = tmp_path / "export"
    first = subprocess.Popen([*EDGESEG, "export", str(real_ckpt), "--out", str(out), "--precision", "fp32", "fp16"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: bool(_staging(out)), process=first)
        os.kill(first.pid, signal.SIGSTOP)  # holds its lock while the second export tries
        code = main(["export", str(real_ckpt), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and f"--out {out} is being written by another export (PID {first.pid})" in err, err
        os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=120) == 0
    finally:
        os.kill(first.pid, signal.SIGCONT) if first.poll() is None else None
        first.kill()
        first.wait()
    assert json.loads((out / "export_manifest.json").read_text())["precisions"] == ["fp32", "fp16"]
    assert sorted(p.name for p in out.iterdir()) == ["export_manifest.json", "model.onnx", "model_fp16.onnx"]


# ----- training ----------------------------------------------------------------------------------------------------
def _train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--model", "fcn32s_mobilenetv3", "--epochs", "1", "--batch-size", "2",
            "--image-size", "24", "32", "--workers", "0", "--out", str(out), *extra]


@pytest.mark.slow
def test_train_into_another_runs_folder_needs_resume_or_force_and_a_full_disk_keeps_the_checkpoint(
        world, small_tmpfs, tmp_path, capsys):
    pytest.importorskip("torch")
    data, out = world["data"], tmp_path / "run"
    assert main(_train_argv(data, out)) == 0
    capsys.readouterr()
    before = sha256_tree(out)
    assert main(_train_argv(data, out)) == 2
    err = capsys.readouterr().err
    assert f"--out {out} holds another run's best.pt and last.pt: pass --resume" in err and "--force" in err, err
    assert sha256_tree(out) == before

    # a full disk while saving: named, and the previous checkpoint stays whole
    tiny = small_tmpfs / "run"
    tiny.mkdir()
    (tiny / "last.pt").write_bytes(b"the previous checkpoint")
    fill(small_tmpfs)
    assert main(_train_argv(data, tiny, "--force")) == 2
    err = capsys.readouterr().err
    assert f"edgeseg train: error: cannot write {tiny / 'last.pt'}: disk full" in err and "Traceback" not in err, err
    assert (tiny / "last.pt").read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tiny.iterdir()) == ["last.pt"]  # no temporary file left


# ----- mask names --------------------------------------------------------------------------------------------------
def test_mask_names_are_unique_when_stems_and_suffixes_collide(world, tmp_path):
    images = tmp_path / "collide"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "a.jpg", "a_jpg.png"):
        cv2.imwrite(str(images / name), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    masks = tmp_path / "masks"
    assert main(["run", str(world["model"]), "--source", str(images), "--masks", str(masks)]) == 0
    written = sorted(p.name for p in masks.iterdir())
    assert len(written) == 3, written  # one mask per image: none overwrote another
    assert "a_jpg.png" in written  # the image whose stem is a_jpg keeps its name
