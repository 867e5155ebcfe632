"""Writing synthetic data to disk: an MP4 of synthetic_frames, and a folder-layout dataset of SyntheticScenes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from edgeseg.config import IGNORE_INDEX
from edgeseg.data.scenes.classes import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE
from edgeseg.data.scenes.dataset import SyntheticScenes
from edgeseg.data.scenes.frames import synthetic_frames
from edgeseg.data.scenes.render import DEFAULT_SIZE, check_size
from edgeseg.errors import ConfigError, EdgeSegError
from edgeseg.files import write_file


def write_synthetic_video(
    path: str | Path, frames: int, size: tuple[int, int] = DEFAULT_SIZE, fps: float = 15, seed: int = 0
) -> Path:
    """Write `synthetic_frames(frames, size, seed)` as an MP4 ('mp4v') at `fps`; return the path."""
    h, w = check_size(size)
    if int(frames) < 1 or fps <= 0:
        raise ConfigError(f"a video needs frames >= 1 and fps > 0, got frames={frames}, fps={fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise EdgeSegError(f"OpenCV cannot write an mp4v video to {path} (is the folder writable, the suffix .mp4?)")
    try:
        for frame in synthetic_frames(frames, (h, w), seed):
            writer.write(frame)
    finally:
        writer.release()
    if not path.is_file() or path.stat().st_size == 0:
        raise EdgeSegError(f"OpenCV reported success but wrote nothing to {path}")
    return path


def write_synthetic_folder(
    directory: str | Path,
    n: int = 16,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    *,
    val_count: int | None = None,
) -> Path:
    """Write a folder-layout dataset: DIR/{train,val}/images/*.png + labels/*.png + DIR/classes.json.

    `n` train samples and `val_count` (default max(2, n // 4)) val samples, the same pixels as
    SyntheticScenes(seed=seed, split=...) gives. Images are PNG so they read back exactly.
    """
    root = Path(directory)
    val_count = max(2, int(n) // 4) if val_count is None else int(val_count)
    for split, count in (("train", int(n)), ("val", val_count)):
        scenes = SyntheticScenes(count, size, seed, split)
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, label = scenes[i]
            name = scenes.name_of(i)
            ok = cv2.imwrite(str(root / split / "images" / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            ok = ok and cv2.imwrite(str(root / split / "labels" / f"{name}.png"), label)
            if not ok:
                raise EdgeSegError(f"could not write sample {name} under {root / split}")
    classes = {
        "classes": list(SYNTHETIC_CLASSES),
        "palette_rgb": [list(c) for c in SYNTHETIC_PALETTE],
        "ignore_index": IGNORE_INDEX,
    }
    write_file(root / "classes.json", json.dumps(classes, indent=1))
    return root
