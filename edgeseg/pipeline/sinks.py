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
from edgeseg.files import IMAGE_SUFFIXES, WRITABLE_VIDEO_SUFFIXES, write_file

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0


def numbered_path(path: Path, index: int, count: int) -> Path:
    """`out.mp4` for a single source; `out_0.mp4`, `out_1.mp4`, ... when there are several."""
    return path if count == 1 else path.with_name(f"{path.stem}_{index}{path.suffix}")


# Preferred first: H.264 plays in browsers and most players; MPEG-4 Part 2 (mp4v) is what every OpenCV build can
# write (the pip wheels have no H.264 encoder), so it is the loud fallback.
VIDEO_CODECS = ("avc1", "mp4v")
_UNAVAILABLE_CODECS: set[str] = set()


def _codec_works(codec: str, fps: float, size_wh: tuple[int, int]) -> bool:
    """Can this OpenCV encode `codec` at all? Tried on a scratch file, so the answer is about the codec alone."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgeseg-codec-") as scratch:
        writer = cv2.VideoWriter(os.path.join(scratch, "probe.mp4"), cv2.VideoWriter.fourcc(*codec), fps, size_wh)
        works = writer.isOpened()
        writer.release()
    return works


class VideoSink:
    """An MP4 file, H.264 where this OpenCV can encode it, else mp4v (with a warning); its size is the first
    frame's, later frames of another size are resized to it. `codec` says which codec was used."""

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in WRITABLE_VIDEO_SUFFIXES:
            raise ConfigError(f"output video '{self.path}' must end in {'/'.join(WRITABLE_VIDEO_SUFFIXES)}")
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FPS  # may be changed until the first frame
        self.frames_written = 0
        self.codec: str | None = None
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
        for codec in VIDEO_CODECS:
            if codec in _UNAVAILABLE_CODECS:
                continue
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*codec), self.fps, self.size_wh)
            if writer.isOpened():
                break
            writer.release()
            if _codec_works(codec, self.fps, self.size_wh):  # the codec is fine: this path cannot be written
                raise EdgeSegError(f"could not open '{self.path}' for writing: check that its folder exists and is "
                                   "writable, and that the name is not a folder")
            # only a codec found missing is remembered (FFmpeg logs each failed attempt), never a failed path, so
            # one bad path does not make every later video in this process skip a working codec
            _UNAVAILABLE_CODECS.add(codec)
        else:
            raise EdgeSegError(
                f"could not open '{self.path}' for writing ({self.size_wh[0]}x{self.size_wh[1]} at {self.fps:g} FPS, "
                f"codecs tried: {', '.join(VIDEO_CODECS)}): check the folder is writable and OpenCV has FFmpeg"
            )
        if codec != VIDEO_CODECS[0]:
            log.warning("this OpenCV has no H.264 encoder: '%s' is MPEG-4 Part 2 (mp4v), which browsers do not play; "
                        "convert it with `ffmpeg -i %s -c:v libx264 out_h264.mp4`, or use an OpenCV with H.264 "
                        "(JetPack's, or a build with FFmpeg + libx264/openh264)", self.path, self.path)
        self.codec = codec
        self._writer = writer

    def close(self) -> None:
        """Finalise the file (playable MP4). Safe to call twice."""
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.release()


class ImageSink:
    """`--out picture.png` for a single image in: the one output picture, written like any EdgeSeg file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ConfigError(f"output image '{self.path}' must end in one of {', '.join(IMAGE_SUFFIXES)}")
        self.fps = DEFAULT_FPS  # unused; VideoSink's interface
        self.frames_written = 0
        self.codec: str | None = self.path.suffix.lower().lstrip(".")

    def write(self, frame: np.ndarray) -> None:
        if self.frames_written:
            raise EdgeSegError(f"output image '{self.path}' takes one frame; use an .mp4 for a video or a folder")
        ok, data = cv2.imencode(self.path.suffix.lower(), frame)
        if not ok:
            raise EdgeSegError(f"could not encode the output picture '{self.path}'")
        write_file(self.path, data.tobytes())
        self.frames_written += 1

    def close(self) -> None:
        pass


def output_sink(path: Path, single_image_in: bool) -> "VideoSink | ImageSink":
    """The sink for `--out`: a picture for a picture (one image in, .png/.jpg out), else an MP4."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if not single_image_in:
            raise ConfigError(f"--out {path} is a picture, but the source is not a single image: use an .mp4")
        return ImageSink(path)
    return VideoSink(path)


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
