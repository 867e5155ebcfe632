"""Frames for calibration, parity checks and accuracy reports, preprocessed exactly like the runtime does it.

Runtime preprocessing (edgeseg.runtime.ops.preprocess): BGR uint8 frame -> bilinear resize to meta.input_size
(cv2 INTER_LINEAR's convention) -> RGB -> /255 -> (x - mean) / std -> NCHW float32, in one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from edgeseg.config import ModelMeta
from edgeseg.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def preprocess(frame: np.ndarray, meta: ModelMeta, size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """One BGR uint8 HxWx3 frame -> (1, 3, H, W) float32, normalised with meta.mean/std.

    It calls the runtime's own kernel, so calibration, parity checks and reports see exactly the runtime's inputs.
    """
    from edgeseg.runtime import ops

    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise DataError(f"a frame must be a BGR uint8 HxWx3 array, got {getattr(frame, 'shape', type(frame))}")
    return ops.preprocess(np.ascontiguousarray(frame), size_hw or meta.input_size, meta.mean, meta.std)


def synthetic_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A real-looking BGR frame (smooth gradients, blobs, edges, a little noise) for parity checks without data."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        frame[..., c] = 128 + 60 * np.sin(xx / (7 + 5 * c) + rng.uniform(0, 6)) * np.cos(yy / (11 + 3 * c))
    for _ in range(6):  # flat regions with sharp edges, like objects
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        h, w = rng.integers(height // 8 + 1, height // 2 + 2), rng.integers(width // 8 + 1, width // 2 + 2)
        frame[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, 3)
    frame += rng.normal(0, 4, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def iter_frames(source: Any, limit: int | None = None) -> Iterator[np.ndarray]:
    """BGR uint8 frames from an iterable of arrays, an image folder (searched recursively, sorted), an image or a video.

    Unreadable image files are skipped; a source that yields no frame at all raises DataError.
    """
    count = 0
    for frame in _frames(source):
        if limit is not None and count >= limit:
            return
        count += 1
        yield frame
    if count == 0:
        raise DataError(f"no readable frames in {source!r}: expected BGR uint8 arrays, a folder of images "
                        f"({', '.join(IMAGE_SUFFIXES)}) or a video ({', '.join(VIDEO_SUFFIXES)})")


def _frames(source: Any) -> Iterator[np.ndarray]:
    if isinstance(source, np.ndarray):
        source = [source] if source.ndim == 3 else list(source)
    if not isinstance(source, (str, Path)):
        for index, frame in enumerate(source):
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise DataError(f"calibration frame {index} must be a BGR uint8 HxWx3 array, got "
                                f"{getattr(frame, 'shape', type(frame).__name__)}")
            yield frame
        return
    path = Path(source)
    if not path.exists():
        raise DataError(f"frame source {path} does not exist")
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield frame
        finally:
            capture.release()
    files: Iterable[Path] = (
        [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    )
    for file in files:
        frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if frame is not None:
            yield frame
