"""Frame sources: video files, image folders, cameras, RTSP streams, GStreamer pipelines and a synthetic source.

`open_source(spec)` turns a `--source` string into a Source:

    video file            clip.mp4                      (file source: ends at its end)
    image folder          path/to/images/               (file source; masks are named by each image's stem)
    single image          photo.jpg
    V4L2 camera           0, 1, ...                     (live)
    network stream        rtsp://user:pw@host:554/path  (live; also rtmp://, http(s)://)
    GStreamer pipeline    any string containing '!'     (live; opened with cv2.CAP_GSTREAMER)
    synthetic             synthetic[:N][@FPS]           (generated frames, endless or N of them, paced like a
                                                         camera at FPS, 30 by default; @0: as fast as read)

On a Jetson, a CSI camera is a GStreamer pipeline (`jetson_csi_pipeline()` builds it), for example:

    nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1,format=NV12 !
    nvvidconv flip-method=0 ! video/x-raw,width=1280,height=720,format=BGRx ! videoconvert !
    video/x-raw,format=BGR ! appsink drop=true max-buffers=1

(one line, quoted in the shell). It needs an OpenCV built with GStreamer, as JetPack's is; the pip wheels are not.

A Source is opened with open(), yields Frames from read() and returns None when it has no frame: the end for a
file source or a finished synthetic:N, a failure for a live one (ended() tells which; after a failure the pipeline
reconnects: close() and open() again). Frames count from 0
across reconnects, so mask names never repeat. Sources are not thread-safe; the pipeline reads each from one thread.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from edgeseg.errors import SourceError
from edgeseg.files import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
LIVE_DEFAULT_FPS = 30.0  # what the video writer uses for live sources
DEFAULT_STALL_TIMEOUT_S = 10.0  # a network stream silent this long counts as a failed read (then: reconnect)
# `--source synthetic` delivers frames at a camera's pace, so --mode realtime behaves as it would on a camera.
SYNTHETIC_DEFAULT_FPS = 30.0
_SYNTHETIC_SPEC = re.compile(r"^synthetic(?::(\d+))?(?:@(\d+(?:\.\d+)?))?$")


@dataclass
class Frame:
    """One frame from a source. `image` is None when it could not be decoded (counted as unreadable)."""

    image: np.ndarray | None
    name: str  # mask file stem: '000042' or, for image folders, the image's stem
    origin: str  # what to name in messages: the file, or 'source frame 42'


class Source:
    """Base class: subclasses implement _open, _read and _close. `live` sources reconnect when reads fail."""

    kind = "source"
    live = False
    # Frames the container says it holds (video files), so a file that ends early is reported as cut short.
    expected_frames: int | None = None

    def __init__(self, description: str) -> None:
        self.description = description
        self._next_index = 0
        self.is_open = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"

    @property
    def fps(self) -> float | None:
        """Frames per second to write this source's video at, or None when unknown."""
        return None

    def ended(self) -> bool:
        """After read() returned None: True when that was the end of the stream, False when it was a failure."""
        return not self.live

    def open(self) -> None:
        """Open (or reopen) the source; raises SourceError naming it when that is impossible."""
        self._open()
        self.is_open = True

    def read(self) -> Frame | None:
        if not self.is_open:
            raise SourceError(f"source {self.description!r} was read before open()")
        return self._read()

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            self._close()

    def _take_name(self) -> tuple[str, int]:
        index = self._next_index
        self._next_index += 1
        return f"{index:06d}", index

    def _open(self) -> None:
        raise NotImplementedError

    def _read(self) -> Frame | None:
        raise NotImplementedError

    def _close(self) -> None:
        pass


class _OpenCVCapture(Source):
    """Shared by the sources that read through cv2.VideoCapture: read a frame, release on close."""

    _cap: Any = None

    def _frame_label(self, index: int) -> str:
        raise NotImplementedError

    def _read(self) -> Frame | None:
        assert self._cap is not None
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        name, index = self._take_name()
        return Frame(image, name, self._frame_label(index))

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFileSource(_OpenCVCapture):
    """A video file decoded by OpenCV (FFmpeg). Ends when the file does; never reconnects."""

    kind = "video"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self._cap: cv2.VideoCapture | None = None
        self._fps: float | None = None

    @property
    def fps(self) -> float | None:
        return self._fps

    def _open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"video file '{self.path}' does not exist")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"could not open video file '{self.path}': OpenCV cannot decode it")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if 0 < fps < 1000 else None
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.expected_frames = int(count) if count and count > 0 else None
        self._cap = cap

    def _frame_label(self, index: int) -> str:
        return f"'{self.path}' frame {index}"


class ImageFolderSource(Source):
    """The images of a folder in sorted name order (or one image file). Masks take each image's stem."""

    kind = "images"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self._files: list[Path] = []
        self._names: list[str] = []
        self._position = 0

    def _open(self) -> None:
        if self.path.is_file():
            files = [self.path]
        elif self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise SourceError(f"image folder '{self.path}' does not exist")
        if not files:
            raise SourceError(
                f"image folder '{self.path}' has no images (looked for {', '.join(IMAGE_SUFFIXES)})"
            )
        self._names = mask_names(files)
        self._files = files
        self._position = 0

    def _read(self) -> Frame | None:
        if self._position >= len(self._files):
            return None
        path, name = self._files[self._position], self._names[self._position]
        self._position += 1
        try:
            image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
        except (OSError, cv2.error) as exc:
            log.debug("decoding %s failed: %s", path, exc)
            image = None
        return Frame(image, name, f"'{path}'")


@lru_cache(maxsize=1)
def opencv_has_gstreamer() -> bool:
    match = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return bool(match) and match.group(1).upper() == "YES"


class CaptureSource(_OpenCVCapture):
    """A live cv2.VideoCapture: a V4L2 camera index, a network stream URL or a GStreamer pipeline."""

    live = True

    def __init__(self, target: int | str, api: int, kind: str, description: str | None = None,
                 stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> None:
        super().__init__(description or str(target))
        self.target = target
        self.api = api
        self.kind = kind
        # A network stream that stops sending blocks read() for FFmpeg's default of 30 s; this bounds open and read.
        self.stall_timeout_s = stall_timeout_s
        self._cap: cv2.VideoCapture | None = None

    @property
    def fps(self) -> float | None:
        return LIVE_DEFAULT_FPS

    def _open(self) -> None:
        if self.kind == "gstreamer" and not opencv_has_gstreamer():
            raise SourceError(
                f"cannot open GStreamer pipeline {self.description!r}: this OpenCV ({cv2.__version__}) was built "
                "without GStreamer (the pip wheels are). Use an OpenCV with GStreamer support, e.g. JetPack's "
                "system python3-opencv on a Jetson"
            )
        params: list[int] = []
        if self.api == cv2.CAP_FFMPEG and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
            timeout_ms = max(int(self.stall_timeout_s * 1000), 1)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        cap = cv2.VideoCapture(self.target, self.api, params) if params else cv2.VideoCapture(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"could not open {self.kind} source {self.description!r}")
        self._cap = cap

    def _frame_label(self, index: int) -> str:
        return f"{self.kind} {self.description!r} frame {index}"


class SyntheticSource(Source):
    """Generated BGR frames (moving colour blocks over a gradient), `count` of them or endless (count=None).

    It behaves like a live camera: realtime mode may drop its frames. `fps` paces it (None: as fast as read).
    Frame i is the same on every run, so masks can be compared between runs.
    """

    kind = "synthetic"
    live = True

    def __init__(self, count: int | None = None, size: tuple[int, int] = (240, 320), fps: float | None = None) -> None:
        desc = "synthetic" if count is None else f"synthetic:{count}"
        super().__init__(desc)
        if count is not None and count < 0:
            raise SourceError(f"synthetic source needs a frame count >= 0, got {count}")
        self.count = count
        self.size = (int(size[0]), int(size[1]))
        self._fps = fps
        self._next_due = 0.0
        height, width = self.size
        yy, xx = np.mgrid[0:height, 0:width]
        self._base = np.stack(
            [(xx * 90 // max(width, 1)), (yy * 90 // max(height, 1)), np.full_like(xx, 40)], axis=-1
        ).astype(np.uint8)

    @property
    def fps(self) -> float | None:
        return self._fps or LIVE_DEFAULT_FPS

    def _open(self) -> None:
        self._next_due = time.perf_counter()

    def render(self, index: int) -> np.ndarray:
        height, width = self.size
        image = self._base.copy()
        bh, bw = max(height // 3, 1), max(width // 4, 1)
        for channel, speed in ((0, 1), (1, 2), (2, 3)):  # a blue, a green and a red block moving at their speeds
            x = (index * speed * 3 + channel * width // 3) % max(width - bw, 1)
            y = (channel * height // 3) % max(height - bh, 1)
            image[y : y + bh, x : x + bw, channel] = 230
        return image

    def ended(self) -> bool:
        return self.count is not None and self._next_index >= self.count

    def _read(self) -> Frame | None:
        if self.count is not None and self._next_index >= self.count:
            return None
        if self._fps:
            delay = self._next_due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self._next_due = max(self._next_due + 1.0 / self._fps, time.perf_counter() - 1.0 / self._fps)
        name, index = self._take_name()
        return Frame(self.render(index), name, f"synthetic frame {index}")


def jetson_csi_pipeline(
    sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip_method: int = 0
) -> str:
    """The GStreamer pipeline string for a Jetson CSI camera (nvarguscamerasrc), ending in a BGR appsink."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12 ! "
        f"nvvidconv flip-method={flip_method} ! video/x-raw,width={width},height={height},format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )


def open_source(spec: str | os.PathLike[str] | Source, *, stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> Source:
    """A Source for a --source value (see the module docstring). Not opened yet; raises SourceError if unknown.
    `stall_timeout_s` bounds how long a network stream may block an open or a read."""
    if isinstance(spec, Source):
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    text = str(spec).strip()
    if not text:
        raise SourceError("empty --source")
    if text == "synthetic" or text.startswith(("synthetic:", "synthetic@")):
        match = _SYNTHETIC_SPEC.match(text)
        if match is None:
            raise SourceError(f"source {text!r}: expected synthetic[:N][@FPS], N a frame count and FPS the pace "
                              f"(default {SYNTHETIC_DEFAULT_FPS:g}; 0: as fast as frames are read)")
        count, fps = match.group(1), match.group(2)
        if count is not None and int(count) < 1:  # zero frames would end at once and write no --out at all
            raise SourceError(f"source {text!r}: N counts the frames to generate and must be >= 1 "
                              "('synthetic' alone never ends)")
        pace = SYNTHETIC_DEFAULT_FPS if fps is None else float(fps)
        source = SyntheticSource(int(count) if count else None, fps=pace or None)
        source.description = text
        return source
    if "!" in text:
        return CaptureSource(text, cv2.CAP_GSTREAMER, "gstreamer")
    if text.isdigit():
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        return CaptureSource(int(text), api, "camera", f"camera {text}")
    if text.lower().startswith(NETWORK_SCHEMES):
        if stall_timeout_s <= 0:
            raise SourceError(f"the stall timeout must be > 0 seconds, got {stall_timeout_s}")
        return CaptureSource(text, cv2.CAP_FFMPEG, "stream", stall_timeout_s=stall_timeout_s)
    path = Path(text)
    if path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
        return ImageFolderSource(path)
    if path.is_file():
        return VideoFileSource(path)
    raise SourceError(
        f"source {text!r} not found: not a file, folder, camera index, rtsp:// URL, "
        "GStreamer pipeline (contains '!') or 'synthetic[:N][@FPS]'"
    )


def mask_names(files: Sequence[Path]) -> list[str]:
    """A distinct mask name (file stem) per image: its stem; a.png and a.jpg keep their suffix (a_png, a_jpg); a
    name still taken (a_jpg.png is there too) gets a counter (a_jpg_2). Images with a unique stem keep it first."""
    from collections import Counter

    counts = Counter(p.stem for p in files)
    taken = {p.stem for p in files if counts[p.stem] == 1}
    names = []
    for path in files:
        if counts[path.stem] == 1:
            names.append(path.stem)
            continue
        base = f"{path.stem}_{path.suffix.lstrip('.')}"
        name, number = base, 2
        while name in taken:
            name, number = f"{base}_{number}", number + 1
        taken.add(name)
        names.append(name)
    return names
