"""Frames from files: `iter_frames` reads BGR uint8 frames from an image folder, one image, a video or arrays.

Used wherever a command takes "some frames" rather than a labelled dataset: INT8 calibration (`edgeseg export
--calib`), `edgeseg bench --source`. The recognised suffixes are edgeseg.files' lists, the same everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from edgeseg.errors import DataError
from edgeseg.files import IMAGE_SUFFIXES, VIDEO_SUFFIXES


def iter_frames(source: Any, limit: int | None = None) -> Iterator[np.ndarray]:
    """BGR uint8 frames from an iterable of arrays, an image folder (searched recursively, sorted), an image or a video.

    Unreadable image files are skipped; a source that yields no frame at all raises DataError (on the first
    `next()`, so a caller can check a source cheaply before slow work).
    """
    if limit is not None and limit < 1:
        raise DataError(f"frame limit must be >= 1, got {limit}")
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
        yield from _arrays(source)
        return
    path = Path(source)
    if not path.exists():
        raise DataError(f"frame source {path} does not exist")
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        yield from _video(path)
        return
    files: Iterable[Path] = (
        [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    )
    for file in files:
        frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if frame is not None:  # an unreadable file among many is skipped, not fatal
            yield frame


def _arrays(frames: Iterable[Any]) -> Iterator[np.ndarray]:
    for index, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise DataError(f"frame {index} must be a BGR uint8 HxWx3 array, got "
                            f"{getattr(frame, 'shape', type(frame).__name__)}")
        yield frame


def _video(path: Path) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()
