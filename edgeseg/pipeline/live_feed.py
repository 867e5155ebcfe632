"""The pictures behind `edgeseg run --view-http`: the newest segmented frame of each source, JPEG-encoded on one
thread of its own, at a capped rate, and only while someone watches.

The pipeline's output thread calls `publish()`, which only swaps a reference under a lock: it never renders, encodes
or waits for a viewer. The encoder thread wakes when a source that has viewers (streams or a pending snapshot) has a
newer frame than its last JPEG, renders the view if the output thread did not already, encodes it, and wakes the
viewers; each viewer takes the newest JPEG, so a slow one skips pictures and never holds anyone else up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MAX_FPS = 15.0  # pictures per second per source at most: a browser needs no more, and each costs a render
DEFAULT_JPEG_QUALITY = 80

# (frame, mask, fps) -> the BGR picture to show; runs on the encoder thread.
Renderer = Callable[[np.ndarray, np.ndarray, "float | None"], np.ndarray]


@dataclass
class _Published:
    version: int
    frame: np.ndarray
    mask: np.ndarray
    fps: float | None
    picture: np.ndarray | None  # already composed by the output thread (it writes a video too), else None


@dataclass(frozen=True)
class Jpeg:
    version: int  # the publish() count of its source when its frame came in
    data: bytes


class LiveFeed:
    """Newest frame and newest JPEG of each source. Thread-safe; `start()` starts the encoder, `close()` stops it."""

    def __init__(self, sources: int, render: Renderer, *, max_fps: float = DEFAULT_MAX_FPS,
                 quality: int = DEFAULT_JPEG_QUALITY) -> None:
        if sources < 1 or not max_fps > 0 or not 1 <= quality <= 100:
            raise ValueError(f"LiveFeed needs sources >= 1, max_fps > 0, quality 1-100 (got {sources}, "
                             f"{max_fps}, {quality})")
        self._render = render
        self._interval_s = 1.0 / max_fps
        self._quality = quality
        self._cond = threading.Condition()
        self._published: list[_Published | None] = [None] * sources
        self._jpegs: list[Jpeg | None] = [None] * sources
        self._viewers = [0] * sources  # open MJPEG streams and waiting snapshot requests
        self._closed = False
        self._thread: threading.Thread | None = None
        self.encoded = 0  # JPEGs made so far (tests and the benchmark read it)

    @property
    def sources(self) -> int:
        return len(self._published)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._encode_loop, name="edgeseg-live-encoder", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)

    @property
    def closed(self) -> bool:
        return self._closed

    # ----- the pipeline's side -------------------------------------------------------------------------------------
    def publish(self, source: int, frame: np.ndarray, mask: np.ndarray, fps: float | None = None,
                picture: np.ndarray | None = None) -> None:
        """The newest segmented frame of `source` (arrays the caller no longer changes). Never blocks for long."""
        with self._cond:
            previous = self._published[source]
            version = previous.version + 1 if previous is not None else 1
            self._published[source] = _Published(version, frame, mask, fps, picture)
            if self._viewers[source]:
                self._cond.notify_all()

    # ----- the viewers' side ---------------------------------------------------------------------------------------
    def watch(self, source: int) -> None:
        """Count a viewer of `source` (pictures are encoded only while it has one); pair with unwatch()."""
        with self._cond:
            self._viewers[source] += 1
            self._cond.notify_all()

    def unwatch(self, source: int) -> None:
        with self._cond:
            self._viewers[source] -= 1

    def viewers(self, source: int) -> int:
        with self._cond:
            return self._viewers[source]

    def next_jpeg(self, source: int, after: int, timeout_s: float) -> Jpeg | None:
        """The newest JPEG of `source` with a version above `after`, waiting up to timeout_s; None on timeout or
        close. The caller must be watching (watch()), or nothing new is encoded."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._closed:
                jpeg = self._jpegs[source]
                if jpeg is not None and jpeg.version > after:
                    return jpeg
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return None

    def latest_version(self, source: int) -> int:
        """How many frames of `source` were published so far (0: none yet)."""
        with self._cond:
            published = self._published[source]
            return published.version if published is not None else 0

    # ----- the encoder thread --------------------------------------------------------------------------------------
    def _due(self) -> list[tuple[int, _Published]]:
        """Sources with viewers whose newest frame has no JPEG yet (caller holds the lock)."""
        due = []
        for source, published in enumerate(self._published):
            if published is None or not self._viewers[source]:
                continue
            jpeg = self._jpegs[source]
            if jpeg is None or jpeg.version < published.version:
                due.append((source, published))
        return due

    def _encode_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not (due := self._due()):
                    self._cond.wait(0.5)
                if self._closed:
                    return
            started = time.monotonic()
            for source, published in due:
                try:
                    jpeg = self._encode(published)
                except Exception:  # a failed picture must not end the run: the viewers just wait for the next one
                    log.exception("live view: could not encode a picture of source %d", source)
                    continue
                with self._cond:
                    self._jpegs[source] = jpeg
                    self.encoded += 1
                    self._cond.notify_all()
            # the rate cap: whatever the pipeline's FPS, at most one picture per source per interval
            with self._cond:
                self._cond.wait_for(lambda: self._closed, max(self._interval_s - (time.monotonic() - started), 0))

    def _encode(self, published: _Published) -> Jpeg:
        picture = published.picture
        if picture is None:
            picture = self._render(published.frame, published.mask, published.fps)
        ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            raise RuntimeError(f"cv2.imencode('.jpg') failed for a {picture.shape} {picture.dtype} picture")
        return Jpeg(published.version, data.tobytes())
