"""Fixtures for the output-guard tests: a world of inputs (a real ONNX model, a dataset, a video, an image folder, a
Triton repository, a classes file, a folder of predicted masks), their SHA-256s, and tmpfs mounts (tests run as
root; each mount is unmounted afterwards)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.onnx_graphs import CLASSES, write_pixel_classifier


def sha256_tree(*roots: Path) -> dict[str, str]:
    """{path: sha256} of every file under (or at) the roots: what must be the same after a refused command."""
    digests = {}
    for root in roots:
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _image(seed: int, hw=(24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


@pytest.fixture
def world(tmp_path) -> dict[str, Path]:
    """Every kind of input a command reads, made small and real."""
    model = write_pixel_classifier(tmp_path / "M.onnx", (24, 32))
    data = tmp_path / "D"
    for split in ("train", "val"):
        (data / split / "images").mkdir(parents=True)
        (data / split / "labels").mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(data / split / "images" / f"x{i}.png"), _image(i))
            label = (np.arange(24 * 32).reshape(24, 32) % len(CLASSES)).astype(np.uint8)
            cv2.imwrite(str(data / split / "labels" / f"x{i}.png"), label)
    (data / "classes.json").write_text(json.dumps({"classes": list(CLASSES)}))
    images = tmp_path / "imgs"
    images.mkdir()
    for i, name in enumerate(("a.jpg", "b.png")):
        cv2.imwrite(str(images / name), _image(10 + i))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10, (32, 24))
    for i in range(6):
        writer.write(_image(20 + i))
    writer.release()
    repo = tmp_path / "REPO"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "1" / "model.py").write_text("# the Python backend's model\n")
    (repo / "m" / "config.pbtxt").write_text('name: "m"\n')
    pred = tmp_path / "P"
    pred.mkdir()
    for i in range(2):
        cv2.imwrite(str(pred / f"x{i}.png"), np.zeros((24, 32), np.uint8))
    classes = tmp_path / "cls.json"
    classes.write_text(json.dumps(list(CLASSES)))
    return {"model": model, "data": data, "images": images, "video": video, "repo": repo, "pred": pred,
            "classes": classes, "root": tmp_path}


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        # CI runs as root, where this works: a failure to mount is a broken test machine, never a skip
        pytest.fail(f"cannot mount a tmpfs for the full-disk/read-only cases (run the tests as root): "
                    f"{result.stderr.strip()}")


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only tmpfs: creating a file fails with EROFS, for root too (os.access would say yes)."""
    where = tmp_path / "ro"
    _mount_tmpfs(where, "ro,size=1m")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs, for filling up."""
    where = tmp_path / "small"
    _mount_tmpfs(where, "size=1m")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def fill(folder: Path, leave_bytes: int = 0) -> None:
    """Fill the file system of `folder` until at most `leave_bytes` are free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with open(folder / "filler", "wb") as handle:
        try:
            handle.write(b"\0" * max(free - leave_bytes, 0))
            handle.flush()
        except OSError:
            pass
