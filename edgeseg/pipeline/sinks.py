"""Where results go: an MP4 of overlays, a folder of mask PNGs, a display window (the JSON stats: Stats.write_json).

Every sink leaves complete files behind when a run stops early: the MP4 is finalised by close() (VideoWriter
release writes the index), and each PNG is written with edgeseg.files.write_file (a temporary name renamed into place).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from edgeseg.errors import ConfigError, EdgeSegError
from edgeseg.files import WRITABLE_VIDEO_SUFFIXES, write_file

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0


def numbered_path(path: Path, index: int, count: int) -> Path:
    """`out.mp4` for a single source; `out_0.mp4`, `out_1.mp4`, ... when there are several."""
    return path if count == 1 else path.with_name(f"{path.stem}_{index}{path.suffix}")


class VideoSink:
    """An MP4 (mp4v) file; its size is the first frame's, later frames of another size are resized to it."""

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in WRITABLE_VIDEO_SUFFIXES:
            raise ConfigError(f"output video '{self.path}' must end in {'/'.join(WRITABLE_VIDEO_SUFFIXES)} (codec mp4v)")
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FPS  # may be changed until the first frame
        self.frames_written = 0
        self.size_wh: tuple[int, int] | None = None
        self._writer: cv2.VideoWriter | None = None
        self._closed = False
        self._lock = threading.Lock()  # close() may come from another thread while a frame is being written

    def write(self, frame: np.ndarray) -> None:
        with self._lock:
            if self._closed:
                raise EdgeSegError(f"output video '{self.path}' was written after it was closed")
            if self._writer is None:
                self._open(frame)
            assert self._writer is not None and self.size_wh is not None
            if (frame.shape[1], frame.shape[0]) != self.size_wh:
                frame = cv2.resize(frame, self.size_wh, interpolation=cv2.INTER_AREA)
            self._writer.write(frame)
            self.frames_written += 1

    def _open(self, frame: np.ndarray) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size_wh = (int(frame.shape[1]), int(frame.shape[0]))
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, self.size_wh)
        if not writer.isOpened():
            writer.release()
            raise EdgeSegError(
                f"could not open '{self.path}' for writing ({self.size_wh[0]}x{self.size_wh[1]} mp4v at "
                f"{self.fps:g} FPS): check the folder is writable and OpenCV has FFmpeg"
            )
        self._writer = writer

    def close(self) -> None:
        """Finalise the file (playable MP4). Safe to call twice."""
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.release()


class MaskSink:
    """A folder of uint8 class-id PNGs, one per frame, each written atomically (edgeseg.files.write_file)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written = 0

    def write(self, name: str, mask: np.ndarray) -> Path:
        ok, data = cv2.imencode(".png", mask)
        if not ok:
            raise EdgeSegError(f"could not encode mask '{name}' as PNG (shape {mask.shape}, dtype {mask.dtype})")
        path = write_file(self.folder / f"{name}.png", data.tobytes())
        self.written += 1
        return path


def screen_available() -> tuple[bool, str]:
    """(True, '') when a window can be shown, else (False, why not)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no screen (DISPLAY is not set)"
    try:
        cv2.namedWindow("edgeseg-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("edgeseg-probe")
    except cv2.error:
        return False, "this OpenCV has no GUI support (opencv-python-headless); install opencv-python for --display"
    return True, ""


class DisplaySink:
    """One window per source, refreshed from the output thread. Pressing q or Esc asks the run to stop."""

    def __init__(self) -> None:
        self._windows: set[str] = set()

    def show(self, title: str, frame: np.ndarray) -> bool:
        """Show the frame; False when the user asked to quit."""
        if title not in self._windows:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
            self._windows.add(title)
        cv2.imshow(title, frame)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        for title in self._windows:
            try:
                cv2.destroyWindow(title)
            except cv2.error as exc:  # the user already closed it
                log.debug("closing window %s: %s", title, exc)
        self._windows.clear()
