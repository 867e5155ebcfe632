"""The threaded pipeline: capture (one thread per source) -> inference (one thread, batched) -> output (one thread).

    capture[i] --(per-source bounded queue)--> inference --(bounded queue)--> output: mp4 / mask PNGs / window

Modes:
    'all'       every frame is processed. A full queue blocks capture (back-pressure), so a file is read only as
                fast as it is segmented; a live source is then read late (the camera driver drops, not us).
    'realtime'  for live sources (cameras, streams, GStreamer, synthetic) the newest frame wins: when a source's
                queue is full its oldest frame is dropped and counted. File sources keep back-pressure.

Several sources are batched: each predict() call takes the next waiting frame of every source that has one (up to
segmenter.max_batch frames; None means any number), so batches grow when inference is the bottleneck.

Faults: a live source whose read fails is reopened with exponential backoff (Reconnect) and, after the last
attempt, marked 'lost' while the others go on; a file source that ends just ends; an undecodable frame or image is
counted as unreadable and skipped with a warning naming it. SIGINT/SIGTERM/SIGHUP (in the main thread) and closing the
window stop the run cleanly: queued frames are counted as dropped, frames already segmented are written, the MP4
is finalised and every mask PNG is complete. A second Ctrl-C interrupts at once (still finalising the MP4). An
exception in any worker thread stops the others and is re-raised in the caller's thread.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import numpy as np

from edgeseg.errors import ConfigError, EdgeSegError
from edgeseg.output_guard import Output, check_outputs, source_inputs
from edgeseg.pipeline.sinks import (
    DEFAULT_FPS,
    DisplaySink,
    ImageSink,
    MaskSink,
    VideoSink,
    h264_encoder_available,
    numbered_path,
    output_sink,
    screen_available,
)
from edgeseg.pipeline.live_feed import LiveFeed
from edgeseg.pipeline.live_http import LiveHttpServer
from edgeseg.pipeline.views import View
from edgeseg.pipeline.sources import DEFAULT_STALL_TIMEOUT_S, Frame, Source, open_source
from edgeseg.pipeline.stats import SourceStats, Stats
from edgeseg.runtime.plan import STAGES as PLAN_STAGES

log = logging.getLogger(__name__)

MODES = ("all", "realtime")
_POLL_S = 0.05  # how often blocked threads look at the stop flag
_JOIN_TIMEOUT_S = 5.0


class SegmenterLike(Protocol):
    """What the pipeline needs from edgeseg.runtime.Segmenter."""

    max_batch: int | None
    stage_ms: dict[str, float]

    def predict(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]: ...  # confidence=True when asked for

    def render(self, frame: np.ndarray, mask: np.ndarray, outputs: Sequence[str], alpha: float = 0.5
               ) -> dict[str, np.ndarray]: ...  # confidence=... when asked for


@dataclass(frozen=True)
class Reconnect:
    """Backoff for live sources whose reads fail: wait delay_s, delay_s*factor, ... (at most max_delay_s) between
    at most `attempts` reopen attempts; a frame read successfully resets it."""

    attempts: int = 5
    delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.delay_s < 0 or self.factor < 1 or self.max_delay_s < 0:
            raise ConfigError(f"invalid reconnect policy {self}: attempts/delays must be >= 0 and factor >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt 1, 2, ..."""
        return min(self.delay_s * self.factor ** (attempt - 1), self.max_delay_s)


@dataclass
class _Item:
    source: int
    frame: Frame
    read_at: float  # perf_counter when the frame was read


class _InputQueues:
    """One bounded deque per source behind one condition, so inference can take a frame from each at once."""

    def __init__(self, count: int, capacity: int, stop: threading.Event) -> None:
        self._cond = threading.Condition()
        self._queues: list[deque[_Item]] = [deque() for _ in range(count)]
        self._open = [True] * count
        self._capacity = capacity
        self._stop = stop
        self._next = 0  # round-robin start, so no source is always last in a batch

    def put(self, item: _Item, drop_oldest: bool) -> int:
        """Queue item; returns how many frames of its source were dropped (the oldest, or item itself at stop)."""
        with self._cond:
            waiting = self._queues[item.source]
            dropped = 0
            while len(waiting) >= self._capacity:
                if drop_oldest:
                    waiting.popleft()
                    dropped += 1
                elif self._stop.is_set():
                    return dropped + 1
                else:
                    self._cond.wait(_POLL_S)
            waiting.append(item)
            self._cond.notify_all()
            return dropped

    def close(self, source: int) -> None:
        with self._cond:
            self._open[source] = False
            self._cond.notify_all()

    def take(self, limit: int | None) -> list[_Item] | None:
        """The next waiting frame of each source (round-robin, at most `limit`); None when done or stopped."""
        with self._cond:
            while True:
                if self._stop.is_set():
                    return None
                ready = [i for i, waiting in enumerate(self._queues) if waiting]
                if ready:
                    break
                if not any(self._open):
                    return None
                self._cond.wait(_POLL_S)
            count = len(self._queues)
            order = [(self._next + k) % count for k in range(count)]
            chosen = [i for i in order if self._queues[i]][: limit or count]
            self._next = (chosen[-1] + 1) % count
            batch = [self._queues[i].popleft() for i in chosen]
            self._cond.notify_all()
            return batch

    def drain(self) -> list[_Item]:
        with self._cond:
            left = [item for waiting in self._queues for item in waiting]
            for waiting in self._queues:
                waiting.clear()
            self._cond.notify_all()
            return left


_DONE = object()  # end-of-stream marker from inference to output


class StreamPipeline:
    """One run over a set of sources. Use run_stream(); this class holds the threads' shared state."""

    def __init__(
        self,
        segmenter: SegmenterLike,
        sources: Sequence[str | os.PathLike[str] | Source],
        out: str | os.PathLike[str] | None = None,
        *,
        masks_dir: str | os.PathLike[str] | None = None,
        confidence_dir: str | os.PathLike[str] | None = None,
        alpha: float = 0.5,
        mode: str = "all",
        display: bool = False,
        max_frames: int | None = None,
        queue_size: int | None = None,
        reconnect: Reconnect | None = None,
        fps: float | None = None,
        stats_path: str | os.PathLike[str] | None = None,
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
        view: View | None = None,
        on_progress: Callable[[Stats], None] | None = None,
        live_view: LiveHttpServer | None = None,
    ) -> None:
        """`on_progress(stats)` is called from the calling thread about every 0.1 s while the run goes on.
        `stats_path` is only checked here (not an input); run_stream writes it. `view`: what the video, the
        window and the live view show (edgeseg.pipeline.views; default: the overlay). `live_view`: a bound
        LiveHttpServer (`--view-http`), served while the run goes on and closed with it. `confidence_dir`: uint8
        confidence PNGs, laid out like the masks (the segmenter must support predict(confidence=True))."""
        _check_options(mode, sources, alpha, max_frames, queue_size, getattr(segmenter, "max_batch", None))
        self.segmenter = segmenter
        self.sources = [open_source(s, stall_timeout_s=stall_timeout_s) for s in sources]
        self.mode = mode
        self.alpha = alpha
        self.max_frames = max_frames
        # realtime keeps one frame per source (the newest); 'all' buffers a few to smooth out jitter
        self.queue_size = queue_size or (1 if mode == "realtime" else 4)
        self.reconnect = reconnect or Reconnect()
        self.batch_limit = getattr(segmenter, "max_batch", None)
        self.fps = fps
        count = len(self.sources)
        self.out_paths = [numbered_path(Path(out), i, count) for i in range(count)] if out is not None else None
        self.mask_dirs = (
            [Path(masks_dir) if count == 1 else Path(masks_dir) / str(i) for i in range(count)]
            if masks_dir is not None
            else None
        )
        self.confidence_dirs = (
            [Path(confidence_dir) if count == 1 else Path(confidence_dir) / str(i) for i in range(count)]
            if confidence_dir is not None
            else None
        )
        check_outputs(stream_outputs(count, out, masks_dir, stats_path, confidence_dir),
                      source_inputs(p for p in (getattr(s, "path", None) for s in self.sources) if p is not None))
        self.display = _display_possible(display)
        self.stats = self._new_stats()
        self._stop = threading.Event()
        self._inputs = _InputQueues(count, self.queue_size, self._stop)
        self._outputs: queue.Queue[Any] = queue.Queue(maxsize=max(2, self.queue_size))
        self._errors: list[BaseException] = []
        self._errors_lock = threading.Lock()
        # checks the file names now; each file is created at its first frame
        self._video: list[VideoSink | ImageSink | None] = (
            [output_sink(path, _single_image(source)) for path, source in zip(self.out_paths, self.sources)]
            if self.out_paths is not None else [None] * count
        )
        self.view = view or View()
        # the confidence comes from the same kernel pass as the mask, so it is asked for in predict() itself
        self.confidence = self.confidence_dirs is not None or (
            self.view.needs_confidence and (self.out_paths is not None or self.display))
        if self.confidence:
            _check_confidence_possible(segmenter)
        self.on_progress = on_progress
        self.live_view = live_view
        self._live_feed: LiveFeed | None = None
        self._fps_clocks = [_FpsClock() for _ in range(count)]
        self._masks: list[MaskSink | None] = [None] * count
        self._confidences: list[MaskSink | None] = [None] * count
        self._window: DisplaySink | None = None
        self._output_thread: threading.Thread | None = None
        self._captures: list[threading.Thread] = []
        # What the output thread makes of each mask, so the segmenter's plan renders only that (ProcessingPlan.render)
        self._renders = (["mask"] if self.mask_dirs is not None else []) + (
            ["confidence"] if self.confidence_dirs is not None else []) + (
            self.view.renders if self.out_paths is not None or self.display else [])

    def _new_stats(self) -> Stats:
        return Stats(
            mode=self.mode,
            sources=[
                SourceStats(
                    index=i, source=s.description, kind=s.kind, live=s.live,
                    output=str(self.out_paths[i]) if self.out_paths else None,
                    masks_dir=str(self.mask_dirs[i]) if self.mask_dirs else None,
                )
                for i, s in enumerate(self.sources)
            ],
        )

    # ----- control ------------------------------------------------------------------------------
    def stop(self, reason: str | None = None) -> None:
        """Ask every thread to finish (thread-safe). `reason` is recorded as Stats.interrupted."""
        if reason and self.stats.interrupted is None:
            self.stats.interrupted = reason
        self._stop.set()

    def _fail(self, where: str, exc: BaseException) -> None:
        log.debug("%s failed", where, exc_info=exc)
        with self._errors_lock:
            self._errors.append(exc)
        self._stop.set()

    def run(self) -> Stats:
        opened: list[Source] = []
        try:  # fail before any thread starts or any file is written
            for source in self.sources:
                self._first_open(source)
                opened.append(source)
            for index, source in enumerate(self.sources):
                video = self._video[index]
                if video is not None:
                    video.fps = float(self.fps or source.fps or DEFAULT_FPS)
                if self.mask_dirs is not None:
                    self._masks[index] = MaskSink(self.mask_dirs[index])
                if self.confidence_dirs is not None:
                    self._confidences[index] = MaskSink(self.confidence_dirs[index])
        except BaseException:
            for source in opened:
                source.close()
            raise
        if self.display:
            self._window = DisplaySink()
        if any(isinstance(sink, VideoSink) for sink in self._video):
            h264_encoder_available()  # probe now, while silencing fd 2 cannot swallow another thread's output
        self._start_live_view()

        captures = self._captures = [
            threading.Thread(target=self._capture, args=(i,), name=f"edgeseg-capture-{i}", daemon=True)
            for i in range(len(self.sources))
        ]
        inference = threading.Thread(target=self._infer, name="edgeseg-inference", daemon=True)
        output = threading.Thread(target=self._output, name="edgeseg-output", daemon=True)
        self._output_thread = output
        restore = _install_signal_handlers(self)
        try:
            for thread in (*captures, inference, output):
                thread.start()
            while output.is_alive():  # a short join keeps the main thread responsive to signals
                output.join(_POLL_S * 2)
                if self.on_progress is not None:
                    self.on_progress(self.stats)
        finally:
            self._stop.set()
            try:
                deadline = time.monotonic() + _JOIN_TIMEOUT_S
                for thread in (output, inference, *captures):
                    thread.join(max(deadline - time.monotonic(), 0.01))
                    if thread.is_alive():
                        log.warning("%s did not stop within %.0f s; leaving it behind", thread.name, _JOIN_TIMEOUT_S)
            finally:
                restore()
                self._finish()
        if self._errors:
            first = self._errors[0]
            self.stats.error = f"{type(first).__name__}: {first}"
            raise first
        return self.stats

    def _start_live_view(self) -> None:
        if self.live_view is None:
            return
        view, segmenter, alpha = self.view, self.segmenter, self.alpha

        def render(frame: np.ndarray, mask: np.ndarray, fps: float | None) -> np.ndarray:
            return view.compose(frame, segmenter.render(frame, mask, view.renders, alpha), fps=fps)

        self._live_feed = LiveFeed(len(self.sources), render)
        meta = getattr(self.segmenter, "meta", None)
        self.live_view.start(self._live_feed, self.stats.to_dict, [s.description for s in self.sources],
                             tuple(getattr(meta, "classes", ()) or view.classes),
                             getattr(self.segmenter, "palette_bgr", view.palette_bgr), view.kind)

    def _first_open(self, source: Source) -> None:
        """Open a source; a live one (camera, RTSP, GStreamer) that fails is retried with the reconnect backoff,
        as it would be after it had opened once: a camera still booting or a stream not yet published is normal."""
        for attempt in range(self.reconnect.attempts + 1):
            try:
                source.open()
                return
            except EdgeSegError as exc:
                if not source.live or attempt == self.reconnect.attempts:
                    raise
                delay = self.reconnect.delay(attempt + 1)
                log.warning("source %s: %s; retrying in %.2f s (attempt %d/%d)", source.description, exc, delay,
                            attempt + 1, self.reconnect.attempts)
                if self._stop.wait(delay):
                    raise

    def _finish(self) -> None:
        """Close every sink (finalising the MP4s) and the live view (freeing its port), and count frames left in
        queues as dropped. A video that could not be finished (a full disk) is an error of the run, raised once
        everything else is closed."""
        if self.live_view is not None:
            self.live_view.close()
        for sink in self._video:
            if sink is not None:
                try:
                    sink.close()
                except EdgeSegError as exc:
                    self._fail("output", exc)
        if self._window is not None:
            self._window.close()
        for item in self._inputs.drain():
            self.stats.sources[item.source].add("dropped")
        while True:
            try:
                entry = self._outputs.get_nowait()
            except queue.Empty:
                break
            if entry is not _DONE:
                for item in entry[0]:
                    self.stats.sources[item.source].add("dropped")
        for source, thread in zip(self.sources, self._captures, strict=False):  # no threads if start failed
            if not thread.is_alive():  # a capture thread stuck in read() still owns its source
                source.close()
        for source_stats in self.stats.sources:
            if source_stats.status == "running":
                source_stats.status = "stopped"
        self.stats.finish()

    # ----- threads ------------------------------------------------------------------------------
    def _capture(self, index: int) -> None:
        """Capture thread of source `index`: read, reconnect live sources, count, queue; until end, limit or stop."""
        source, stats = self.sources[index], self.stats.sources[index]
        link = _Link(index, source, stats, self.reconnect)
        drop_oldest = self.mode == "realtime" and source.live
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and stats.read >= self.max_frames:
                    stats.status = "limit"
                    break
                if link.failures:
                    reopened = link.reopen(self._stop)
                    if reopened is None:  # lost, or the run is stopping
                        break
                    if not reopened:  # back to the backoff
                        continue
                started = time.perf_counter()
                frame = link.read()
                if frame is None:
                    if link.ended:
                        _mark_ended(stats, source)
                        break
                    continue
                self._queue_frame(index, frame, started, drop_oldest)
            else:
                if stats.status == "running":
                    stats.status = "stopped"
        except BaseException as exc:  # re-raised in the main thread by run()
            stats.status = "stopped"
            self._fail(f"capture of source {index}", exc)
        finally:
            self._inputs.close(index)
            source.close()

    def _queue_frame(self, index: int, frame: Frame, started: float, drop_oldest: bool) -> None:
        """Count a frame just read and queue it for inference (an unreadable one is counted and skipped)."""
        stats, now = self.stats.sources[index], time.perf_counter()
        self.stats.stages["capture_wait"].add((now - started) * 1e3)
        stats.add("read")
        if frame.image is None:
            stats.add("unreadable")
            log.warning("source %d: skipped unreadable frame %s", index, frame.origin)
            return
        dropped = self._inputs.put(_Item(index, frame, now), drop_oldest)
        if dropped:
            stats.add("dropped", dropped)

    def _infer(self) -> None:
        stages = self.stats.stages
        batch: list[_Item] | None = None  # taken from the queues but not yet handed to the output thread
        try:
            while True:
                batch = self._inputs.take(self.batch_limit)
                if batch is None:
                    break
                images = [item.frame.image for item in batch]
                # with confidence: (mask, confidence) pairs, which the output thread unpacks
                masks = (self.segmenter.predict(images, confidence=True) if self.confidence  # type: ignore[call-arg]
                         else self.segmenter.predict(images))
                if len(masks) != len(batch):
                    raise EdgeSegError(f"segmenter.predict returned {len(masks)} masks for {len(batch)} frames")
                self.stats.record_batch(len(batch))
                for stage in PLAN_STAGES:
                    if stage in self.segmenter.stage_ms:
                        stages[stage].add(float(self.segmenter.stage_ms[stage]))
                handed, batch = batch, None
                self._put_output((handed, masks))
        except BaseException as exc:
            for item in batch or ():
                self.stats.sources[item.source].add("dropped")
            self._fail("inference", exc)
        finally:
            self._put_output(_DONE)

    def _put_output(self, entry: Any) -> None:
        """Hand over to the output thread, which drains until _DONE even after stop(); give up if it died."""
        while True:
            try:
                self._outputs.put(entry, timeout=_POLL_S)
                return
            except queue.Full:
                if self._output_thread is not None and not self._output_thread.is_alive():
                    if entry is not _DONE:
                        for item in entry[0]:
                            self.stats.sources[item.source].add("dropped")
                    return

    def _output(self) -> None:
        write_latency, total_latency = self.stats.stages["write"], self.stats.stages["end_to_end"]
        entry: Any = _DONE
        try:
            while True:
                entry = self._outputs.get()
                if entry is _DONE:
                    break
                batch, masks = entry
                while batch:  # pop as we go so a failure leaves only unwritten frames to count as dropped
                    item, mask = batch[0], masks[0]
                    started = time.perf_counter()
                    self._write(item, mask)
                    batch.pop(0)
                    masks.pop(0)
                    now = time.perf_counter()
                    write_latency.add((now - started) * 1e3)
                    total_latency.add((now - item.read_at) * 1e3)
                    self.stats.sources[item.source].add("processed")
        except BaseException as exc:
            if entry is not _DONE:
                for item in entry[0]:
                    self.stats.sources[item.source].add("dropped")
            self._fail("output", exc)

    def _write(self, item: _Item, mask: Any) -> None:
        image = item.frame.image
        assert image is not None
        if self.confidence:
            mask, confidence = mask
            rendered = self.segmenter.render(image, mask, self._renders, self.alpha,  # type: ignore[call-arg]
                                             confidence=confidence)
        else:
            rendered = self.segmenter.render(image, mask, self._renders, self.alpha)
        masks = self._masks[item.source]
        if masks is not None:
            masks.write(item.frame.name, rendered["mask"])
        confidences = self._confidences[item.source]
        if confidences is not None:
            confidences.write(item.frame.name, rendered["confidence"])
        video = self._video[item.source]
        if video is None and self._window is None and self._live_feed is None:
            return
        fps = self._fps_clocks[item.source].tick()
        picture = None
        if video is not None or self._window is not None:
            picture = self.view.compose(image, rendered, fps=fps)
        if video is not None:
            video.write(picture)
        if self._window is not None:
            title = f"edgeseg [{item.source}] {self.sources[item.source].description}"
            if not self._window.show(title, picture):
                self.stop("window closed")
        if self._live_feed is not None:  # a reference swap: the live view's own thread renders and encodes
            self._live_feed.publish(item.source, image, mask, fps, picture)


class _Link:
    """One source's reads and reconnects (exponential backoff for live sources), for its capture thread.

    `failures` counts consecutive failed reads/reopens; `ended` is set when a file source is exhausted."""

    def __init__(self, index: int, source: Source, stats: SourceStats, reconnect: Reconnect) -> None:
        self.index, self.source, self.stats, self.policy = index, source, stats, reconnect
        self.failures = 0
        self.last_error = ""
        self.ended = False

    def reopen(self, stop: threading.Event) -> bool | None:
        """Wait out the backoff and reopen: True when reopened, False when reopening failed (try again), None when
        the source is lost (attempts exhausted) or the run stops."""
        index, source = self.index, self.source
        if self.failures > self.policy.attempts:
            self.stats.status = "lost"
            self.stats.message = (
                f"source {index} ({source.description}) lost: no frame after {self.policy.attempts} reconnect "
                "attempt(s)" + (f" (last error: {self.last_error})" if self.last_error else "")
            )
            log.error("%s", self.stats.message)
            return None
        delay = self.policy.delay(self.failures)
        log.warning("source %d (%s): reconnecting in %.2f s (attempt %d/%d)",
                    index, source.description, delay, self.failures, self.policy.attempts)
        if stop.wait(delay):
            return None
        source.close()
        try:
            source.open()
        except EdgeSegError as exc:
            log.warning("source %d (%s): reopening failed: %s", index, source.description, exc)
            self.last_error = str(exc)
            self.failures += 1
            return False
        return True

    def read(self) -> Frame | None:
        """The next frame, or None after a failed read (counted) or at the end of a file (`ended`)."""
        raised = ""
        try:
            frame = self.source.read()
        except Exception as exc:  # a live source's driver error is a failed read: reconnect
            if not self.source.live:
                raise
            frame, raised = None, f"{type(exc).__name__}: {exc}"
        if frame is None:
            if not raised and self.source.ended():
                self.ended = True
                return None
            if self.failures == 0:
                log.warning("source %d (%s): read failed%s", self.index, self.source.description,
                            f" ({raised})" if raised else "")
            self.last_error = raised or self.last_error
            self.failures += 1
            return None
        if self.failures:
            log.info("source %d (%s): reconnected after %d attempt(s)", self.index, self.source.description,
                     self.failures)
            self.stats.add("reconnects")
            self.failures, self.last_error = 0, ""
        return frame


class _FpsClock:
    """Frames per second over the last `window` frames of one source (for the on-picture FPS text)."""

    def __init__(self, window: int = 30) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self) -> float | None:
        self._times.append(time.perf_counter())
        if len(self._times) < 2:
            return None
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)


def _single_image(source: Source) -> bool:
    path = getattr(source, "path", None)
    return path is not None and Path(path).is_file() and source.kind == "images"


def _mark_ended(stats: SourceStats, source: Source) -> None:
    """'ended', or 'ended_early' with a message when the container promised more frames than could be decoded."""
    expected = source.expected_frames
    if expected is not None and stats.read < expected:
        stats.status = "ended_early"
        stats.message = (f"source {stats.index} ({source.description}) ended early: {stats.read} of the {expected} "
                         "frames its container lists could be decoded (file cut short or corrupt?)")
        log.warning("%s", stats.message)
    else:
        stats.status = "ended"


def _check_options(mode: str, sources: Sequence[Any], alpha: float, max_frames: int | None,
                   queue_size: int | None, max_batch: int | None) -> None:
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    if not sources:
        raise ConfigError("no source given")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"max_frames must be >= 1, got {max_frames}")
    if queue_size is not None and queue_size < 1:
        raise ConfigError(f"queue_size must be >= 1, got {queue_size}")
    if max_batch is not None and max_batch < 1:
        raise ConfigError(f"segmenter.max_batch must be None or >= 1, got {max_batch}")


def stream_outputs(count: int, out: str | os.PathLike[str] | None, masks_dir: str | os.PathLike[str] | None,
                   stats_path: str | os.PathLike[str] | None,
                   confidence_dir: str | os.PathLike[str] | None = None) -> list[Output]:
    """What a run over `count` sources writes, for the output guard: each source's video (numbered when several),
    each source's mask folder and confidence folder, and the stats."""
    outputs = [Output("--out", out if count == 1 else numbered_path(Path(out), i, count))  # as typed: 'x/' is a folder
               for i in range(count)] if out is not None else []
    for flag, folder in (("--masks", masks_dir), ("--confidence", confidence_dir)):
        if folder is not None:
            outputs += ([Output(flag, folder, folder=True)] if count == 1 else
                        [Output(flag, Path(folder) / str(i), folder=True) for i in range(count)])
    if stats_path is not None:
        outputs.append(Output("--stats", stats_path))
    return outputs


def _check_confidence_possible(segmenter: SegmenterLike) -> None:
    """ConfigError now, before any frame is read, when the model has no confidence (its graph ends in argmax)."""
    plan = getattr(segmenter, "plan", None)
    check = getattr(plan, "check_confidence", None)
    if check is not None:
        check()


def _display_possible(asked: bool) -> bool:
    if not asked:
        return False
    ok, why = screen_available()
    if not ok:
        log.warning("--display ignored: %s; results still go to the other outputs", why)
    return ok


def _install_signal_handlers(pipeline: StreamPipeline) -> Callable[[], None]:
    """SIGINT/SIGTERM/SIGHUP -> pipeline.stop(); a second SIGINT raises KeyboardInterrupt. Main thread only.

    SIGHUP is what a dropped ssh session sends: without a handler it kills the process like SIGKILL and the MP4
    (whose index is written at the end) and the stats are lost."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    stopping = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {sig: signal.getsignal(sig) for sig in stopping}

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if pipeline._stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("%s received: stopping (finishing the outputs; Ctrl-C again to abort)", name)
        pipeline.stop(name)

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    return restore


def run_stream(
    segmenter: SegmenterLike,
    sources: Sequence[str | os.PathLike[str] | Source] | str | os.PathLike[str] | Source,
    out: str | os.PathLike[str] | None = None,
    *,
    masks_dir: str | os.PathLike[str] | None = None,
    confidence_dir: str | os.PathLike[str] | None = None,
    alpha: float = 0.5,
    mode: str = "all",
    display: bool = False,
    stats_path: str | os.PathLike[str] | None = None,
    max_frames: int | None = None,
    queue_size: int | None = None,
    reconnect: Reconnect | None = None,
    fps: float | None = None,
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
    view: View | None = None,
    on_progress: Callable[[Stats], None] | None = None,
    live_view: LiveHttpServer | None = None,
) -> Stats:
    """Segment one or more sources concurrently and write overlays, masks and stats. Returns the Stats.

    sources: --source strings (see edgeseg.pipeline.sources) or Source objects; one or a list.
    out: the overlay MP4; with several sources each gets its own, `out_0.mp4`, `out_1.mp4`, ...
    masks_dir: mask PNGs (class ids at the frame's resolution) named 000000.png... or by image stem for folders;
        with several sources they go to masks_dir/0/, masks_dir/1/, ...
    confidence_dir: the same for the confidence, uint8 round(255 * highest softmax probability) per pixel, named like
        the masks (a model whose graph ends in argmax has none: ConfigError before anything is read).
    mode: 'all' (every frame, back-pressure) or 'realtime' (live sources: newest frame wins, drops counted).
    max_frames: stop each source after this many frames read. queue_size: frames buffered per source
        (default 4 in 'all', 1 in 'realtime'). fps: the output video's rate (default: the source's, 30 for live).
    stats_path: also write Stats.to_dict() there as JSON (even when the run fails).
    stall_timeout_s: a network stream that sends nothing for this long fails its open/read (then reconnects).
    live_view: a LiveHttpServer (edgeseg.pipeline.live_http) to serve the pictures and stats from while it runs.
    Raises SourceError when a source cannot be opened, and re-raises any worker thread's exception.
    """
    if isinstance(sources, (str, os.PathLike, Source)):
        sources = [sources]
    pipeline = StreamPipeline(
        segmenter, sources, out, masks_dir=masks_dir, confidence_dir=confidence_dir, alpha=alpha, mode=mode,
        display=display,
        max_frames=max_frames, queue_size=queue_size, reconnect=reconnect, fps=fps, stats_path=stats_path,
        stall_timeout_s=stall_timeout_s, view=view, on_progress=on_progress, live_view=live_view,
    )
    try:
        return pipeline.run()
    finally:
        if stats_path is not None and pipeline.stats.elapsed_s > 0:
            pipeline.stats.write_json(stats_path)
