"""Test doubles for the pipeline: a colour-threshold 'segmenter' and a live source that fails on cue.

Importable without pytest so subprocess scripts can use them (sys.path.insert(0, this folder); import fakes).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence

import cv2
import numpy as np

from edgeseg.config import make_meta
from edgeseg.pipeline.sources import Frame, Source, SyntheticSource


class FakeSegmenter:
    """Class 0 where a pixel is dark, else 1 + its brightest BGR channel. Same methods as runtime.Segmenter."""

    def __init__(self, input_size=(24, 32), delay_s: float = 0.0, max_batch: int | None = None) -> None:
        self.meta = make_meta("fake", ["dark", "blue", "green", "red"], input_size)
        self.max_batch = max_batch
        self.delay_s = delay_s
        self.stage_ms = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
        self.batch_sizes: Counter[int] = Counter()  # bounded: one key per distinct size
        self.calls = 0
        self.palette_bgr = np.ascontiguousarray(np.asarray(self.meta.palette, dtype=np.uint8)[:, ::-1])
        self._lock = threading.Lock()

    def predict(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        frames = list(frames)
        if self.max_batch is not None and len(frames) > self.max_batch:
            raise AssertionError(f"batch of {len(frames)} > max_batch {self.max_batch}")
        with self._lock:
            self.calls += 1
            self.batch_sizes[len(frames)] += 1
        t0 = time.perf_counter()
        height, width = self.meta.input_size
        small = [cv2.resize(f, (width, height), interpolation=cv2.INTER_NEAREST) for f in frames]
        t1 = time.perf_counter()
        if self.delay_s:
            time.sleep(self.delay_s)
        masks = [np.where(s.max(axis=2) < 128, 0, 1 + s.argmax(axis=2)).astype(np.uint8) for s in small]
        t2 = time.perf_counter()
        self.stage_ms = {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "postprocess": 0.01}
        return masks

    def mask_to_frame(self, mask: np.ndarray, size_hw) -> np.ndarray:
        if mask.shape == tuple(size_hw):
            return mask
        return cv2.resize(mask, (int(size_hw[1]), int(size_hw[0])), interpolation=cv2.INTER_NEAREST)

    def overlay(self, frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        full = self.mask_to_frame(mask, frame.shape[:2])
        return cv2.addWeighted(frame, 1 - alpha, self.palette_bgr[full], alpha, 0)

    def render(self, frame: np.ndarray, mask: np.ndarray, outputs, alpha: float = 0.5) -> dict:
        """Like ProcessingPlan.render: only what is asked for."""
        result = {}
        if "overlay" in outputs:
            result["overlay"] = self.overlay(frame, mask, alpha)
        if "mask" in outputs or "color" in outputs:
            result["mask"] = self.mask_to_frame(mask, frame.shape[:2])
            result["color"] = self.palette_bgr[result["mask"]]
        return result


class FlakySource(Source):
    """A live source that fails after `fail_after` frames. `recover` False: every reopen fails too.

    With recover=True the reopen succeeds and frames continue (up to `total`, after which reads fail for good).
    """

    kind = "flaky"
    live = True

    def __init__(self, fail_after: int, recover: bool = True, total: int = 20, size=(48, 64)) -> None:
        super().__init__(f"flaky(fail_after={fail_after}, recover={recover})")
        self.fail_after, self.recover, self.total = fail_after, recover, total
        self.opens = 0
        self.failed = False
        self._synthetic = SyntheticSource(None, size)

    def _open(self) -> None:
        self.opens += 1
        if self.opens > 1 and not self.recover:
            from edgeseg.errors import SourceError

            raise SourceError(f"{self.description} is gone")

    def _read(self) -> Frame | None:
        if self._next_index >= self.total:
            return None
        if self._next_index == self.fail_after and not self.failed:
            self.failed = True
            return None
        if self.failed and not self.recover:
            return None
        name, index = self._take_name()
        return Frame(self._synthetic.render(index), name, f"flaky frame {index}")


def write_video(path, frames: int, size=(64, 80), fps: float = 10.0):
    """A small mp4v test video of SyntheticSource frames; returns the list of frames written."""
    source = SyntheticSource(frames, size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (size[1], size[0]))
    assert writer.isOpened()
    written = [source.render(i) for i in range(frames)]
    for image in written:
        writer.write(image)
    writer.release()
    return written


def count_video_frames(path) -> int:
    """Frames cv2 can actually decode (0 when it cannot open the file)."""
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.isOpened():
        ok, _ = cap.read()
        if not ok:
            break
        count += 1
    cap.release()
    return count
