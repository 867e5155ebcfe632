"""Where results go: an MP4 of overlays, a folder of mask PNGs, a display window (the JSON stats: Stats.write_json).

Every sink leaves complete files behind when a run stops early: the MP4 is finalised by close() (VideoWriter
release writes the index), checked and only then renamed into place, and each PNG is written with edgeseg.files.write_file (a temporary name renamed into place).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from edgeseg.errors import ConfigError, EdgeSegError, OutputPathError
from edgeseg.files import IMAGE_SUFFIXES, WRITABLE_VIDEO_SUFFIXES, current_umask, os_error_reason, write_file

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0


def numbered_path(path: Path, index: int, count: int) -> Path:
    """`out.mp4` for a single source; `out_0.mp4`, `out_1.mp4`, ... when there are several."""
    return path if count == 1 else path.with_name(f"{path.stem}_{index}{path.suffix}")


# Preferred first: H.264 plays in browsers and most players; MPEG-4 Part 2 (mp4v) is what every OpenCV build can
# write (the pip wheels have no H.264 encoder), so it is the loud fallback.
VIDEO_CODECS = ("avc1", "mp4v")
_UNAVAILABLE_CODECS: set[str] = set()


@contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Silence OpenCV's logging and whatever FFmpeg writes straight to file descriptor 2, for a probe whose failure
    is expected (we say what matters in one warning). Use it before the pipeline's threads start: fd 2 is the
    process's."""
    opencv_log = getattr(cv2.utils, "logging", None)  # not in older builds (Debian 12's 4.6): fd 2 covers them
    previous = opencv_log.getLogLevel() if opencv_log else None
    if opencv_log:
        opencv_log.setLogLevel(opencv_log.LOG_LEVEL_SILENT)
    saved = None
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
    except OSError as exc:  # no fd 2 (a daemon): nothing to silence there
        log.debug("cannot silence fd 2: %s", exc)
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        if opencv_log:
            opencv_log.setLogLevel(previous)


@lru_cache(maxsize=1)
def h264_encoder_available() -> bool:
    """Whether this OpenCV can write H.264 MP4s (once per process, with FFmpeg's and OpenCV's complaints about the
    encoders it tries, e.g. `h264_v4l2m2m ... Could not find a valid device`, kept off the terminal)."""
    with tempfile.TemporaryDirectory(prefix="edgeseg-h264-") as folder, quiet_native_logs():
        writer = cv2.VideoWriter(str(Path(folder) / "probe.mp4"), cv2.VideoWriter.fourcc(*"avc1"), 30.0, (64, 48))
        try:
            if not writer.isOpened():
                return False
            writer.write(np.zeros((48, 64, 3), np.uint8))
            return True
        finally:
            writer.release()


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
    frame's, later frames of another size are resized to it. `codec` says which codec was used.

    The video is written under a temporary name in the same folder (.NAME.XXXX.partial.mp4) and renamed into place
    by close() only once it is known to be complete: it reopens with OpenCV and holds every frame written. So a
    SIGKILL, a full disk or a file-size limit never leaves an unplayable file under the final name (nor replaces a
    previous one); close() then raises OutputPathError naming the cause ("disk full", "file too large")."""

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in WRITABLE_VIDEO_SUFFIXES:
            raise ConfigError(f"output video '{self.path}' must end in {'/'.join(WRITABLE_VIDEO_SUFFIXES)}")
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FPS  # may be changed until the first frame
        self.frames_written = 0
        self.codec: str | None = None
        self.size_wh: tuple[int, int] | None = None
        self._writer: cv2.VideoWriter | None = None
        self._partial: Path | None = None
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
            if self.frames_written % _SPACE_CHECK_EVERY == 0:
                self._check_space()

    def _target(self) -> Path:
        """The file the video ends up in: the symlink's target for a symlinked --out (the link stays a link)."""
        return Path(os.path.realpath(self.path)) if self.path.is_symlink() else self.path

    def _open(self, frame: np.ndarray) -> None:
        target = self._target()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent)
        os.close(fd)
        self._partial = Path(partial)
        self.size_wh = (int(frame.shape[1]), int(frame.shape[0]))
        if not h264_encoder_available():
            _UNAVAILABLE_CODECS.add("avc1")
        for codec in VIDEO_CODECS:
            if codec in _UNAVAILABLE_CODECS:
                continue
            writer = cv2.VideoWriter(partial, cv2.VideoWriter.fourcc(*codec), self.fps, self.size_wh)
            if writer.isOpened():
                break
            writer.release()
            if _codec_works(codec, self.fps, self.size_wh):  # the codec is fine: this path cannot be written
                self._discard()
                raise EdgeSegError(f"could not open '{self.path}' for writing: check that its folder exists and is "
                                   "writable, and that the name is not a folder")
            # only a codec found missing is remembered (FFmpeg logs each failed attempt), never a failed path, so
            # one bad path does not make every later video in this process skip a working codec
            _UNAVAILABLE_CODECS.add(codec)
        else:
            self._discard()
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

    def _check_space(self) -> None:
        """OpenCV's writer reports no write error: a full disk or a size limit is found by looking."""
        assert self._partial is not None
        problem = _write_problem(self._partial)
        if problem:
            self._closed = True
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.release()
            self._discard()
            raise OutputPathError(f"--out {self.path}: {problem}; no video was written under that name")

    def close(self) -> None:
        """Finalise the file (playable MP4), check it and rename it into place. Safe to call twice."""
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
            if writer is None:
                return
            writer.release()
            assert self._partial is not None
            frames = _count_frames(self._partial)
            if frames != self.frames_written:
                problem = _write_problem(self._partial) or "the file is incomplete"
                self._discard()
                raise OutputPathError(f"--out {self.path}: {problem} ({frames} of {self.frames_written} frames "
                                      "readable back); no video was written under that name")
            try:
                os.chmod(self._partial, 0o666 & ~current_umask())
                os.replace(self._partial, self._target())
            except OSError as exc:
                self._discard()
                raise OutputPathError(f"--out {self.path}: cannot rename the finished video into place "
                                      f"({os_error_reason(exc)})") from exc
            self._partial = None

    def _discard(self) -> None:
        if self._partial is not None and self._partial.exists():
            self._partial.unlink()
        self._partial = None


# Every this many frames the writer's folder is checked for a full disk / the file for a size limit.
_SPACE_CHECK_EVERY = 16
# Below this many free bytes the disk counts as full for a video being written (an encoded frame can be this large).
_MIN_FREE_BYTES = 64 * 1024


def _write_problem(path: Path) -> str | None:
    """'disk full' or 'file too large' when that is why writing `path` stops, else None."""
    import resource

    try:
        size = path.stat().st_size
        free = os.statvfs(path.parent)
    except OSError:
        return None
    if free.f_bavail * free.f_frsize < _MIN_FREE_BYTES:
        return "disk full (no space left on the device)"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size >= limit - _MIN_FREE_BYTES:
        return f"file too large (the file-size limit, `ulimit -f`, is {limit} bytes)"
    return None


def _count_frames(path: Path) -> int:
    """Frames a finished video holds as OpenCV reads it back (0 when it does not open: no index, cut short)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


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
    """A folder of uint8 single-channel PNGs (class ids, or confidences), one per frame, each written atomically
    (edgeseg.files.write_file)."""

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
