"""Run statistics: per-source frame counts that always add up, FPS, and per-stage latency percentiles.

Memory stays flat however long a stream runs: counters are integers and each stage's latencies live in a
fixed-size reservoir sample (Vitter's algorithm R), so p50/p90/p99 are estimates over a uniform sample of every
measurement once more than `capacity` were taken, and exact before that.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.bench import latency_summary
from edgeseg.files import write_file
from edgeseg.runtime.plan import STAGES as PLAN_STAGES

# The stages the pipeline times, in the order a frame goes through them. preprocess/infer/postprocess come from
# Segmenter.stage_ms and are per predict() call (one batch); the others are per frame.
STAGES = ("capture_wait", *PLAN_STAGES, "write", "end_to_end")


class LatencyReservoir:
    """Count, mean, max and a bounded uniform sample of latencies (ms). Thread-safe."""

    def __init__(self, capacity: int = 4096, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._samples = np.empty(capacity, dtype=np.float64)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.count = 0
        self._total = 0.0
        self.max = 0.0

    def add(self, ms: float) -> None:
        with self._lock:
            if self.count < self.capacity:
                self._samples[self.count] = ms
            else:
                slot = self._rng.randrange(self.count + 1)
                if slot < self.capacity:
                    self._samples[slot] = ms
            self.count += 1
            self._total += ms
            self.max = max(self.max, ms)

    @property
    def sample_size(self) -> int:
        return min(self.count, self.capacity)

    def summary(self) -> dict[str, Any]:
        """{'count', 'latency_ms_p50/p90/p99/mean/max'}; a stage never timed says 'skipped' instead of zeros."""
        with self._lock:
            if self.count == 0:
                return {"count": 0, "skipped": True}
            summary = latency_summary(self._samples[: self.sample_size])
            # count, mean and max are exact over every measurement; the percentiles come from the reservoir
            summary.update(count=self.count, latency_ms_mean=self._total / self.count, latency_ms_max=self.max)
            return {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}


@dataclass
class SourceStats:
    """One source's frame accounting. Invariant: read == processed + dropped + unreadable once the run ends.

    read: frames the source delivered (decoded or not); processed: frames segmented and written to every sink;
    dropped: frames discarded unprocessed (realtime mode's newest-frame-wins, or still queued when a run stops);
    unreadable: frames/images that could not be decoded and were skipped.
    status: 'running' while streaming, then 'ended' (file finished), 'ended_early' (the file's container lists more
    frames than could be decoded: cut short or corrupt; see `message`), 'limit' (--max-frames reached),
    'stopped' (signal, window closed or another thread failed) or 'lost' (reconnection gave up; see `message`).
    """

    index: int
    source: str
    kind: str
    live: bool
    read: int = 0
    processed: int = 0
    dropped: int = 0
    unreadable: int = 0
    reconnects: int = 0
    status: str = "running"
    message: str = ""
    output: str | None = None
    masks_dir: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + amount)

    @property
    def balanced(self) -> bool:
        return self.read == self.processed + self.dropped + self.unreadable

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "source": self.source, "kind": self.kind, "live": self.live,
            "read": self.read, "processed": self.processed, "dropped": self.dropped, "unreadable": self.unreadable,
            "reconnects": self.reconnects, "status": self.status, "message": self.message,
            "output": self.output, "masks_dir": self.masks_dir,
        }


@dataclass
class Stats:
    """What run_stream returns: per-source counts, totals, FPS, batching and per-stage latency."""

    mode: str
    sources: list[SourceStats]
    stages: dict[str, LatencyReservoir] = field(default_factory=lambda: {s: LatencyReservoir() for s in STAGES})
    batches: int = 0
    batched_frames: int = 0
    max_batch_seen: int = 0
    elapsed_s: float = 0.0
    interrupted: str | None = None  # 'SIGINT' / 'SIGTERM' / 'window closed' when the run was stopped early
    error: str | None = None  # set when a worker thread failed (the exception is re-raised as well)
    _started: float = field(default_factory=time.perf_counter, repr=False)

    def record_batch(self, size: int) -> None:
        self.batches += 1
        self.batched_frames += size
        self.max_batch_seen = max(self.max_batch_seen, size)

    def finish(self) -> None:
        self.elapsed_s = time.perf_counter() - self._started

    def total(self, counter: str) -> int:
        return sum(getattr(s, counter) for s in self.sources)

    @property
    def read(self) -> int:
        return self.total("read")

    @property
    def processed(self) -> int:
        return self.total("processed")

    @property
    def dropped(self) -> int:
        return self.total("dropped")

    @property
    def unreadable(self) -> int:
        return self.total("unreadable")

    @property
    def balanced(self) -> bool:
        return all(s.balanced for s in self.sources)

    @property
    def elapsed_so_far_s(self) -> float:
        """elapsed_s once the run has finished; while it goes on, the time since it started."""
        return self.elapsed_s if self.elapsed_s > 0 else time.perf_counter() - self._started

    @property
    def fps(self) -> float:
        """Processed frames per second of wall time, over all sources (so far, while the run goes on)."""
        elapsed = self.elapsed_so_far_s
        return self.processed / elapsed if elapsed > 0 else 0.0

    @property
    def lost_sources(self) -> list[SourceStats]:
        return [s for s in self.sources if s.status == "lost"]

    def to_dict(self) -> dict[str, Any]:
        """The --stats JSON; while the run goes on (the live view's /stats.json) the figures so far."""
        return {
            "mode": self.mode,
            "elapsed_s": round(self.elapsed_so_far_s, 3),
            "fps": round(self.fps, 2),
            "total": {k: self.total(k) for k in ("read", "processed", "dropped", "unreadable", "reconnects")},
            "sources": [s.to_dict() for s in self.sources],
            "batches": self.batches,
            "mean_batch_size": round(self.batched_frames / self.batches, 3) if self.batches else 0.0,
            "max_batch_size": self.max_batch_seen,
            "stages": {name: reservoir.summary() for name, reservoir in self.stages.items()},
            "interrupted": self.interrupted,
            "error": self.error,
        }

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write to_dict() as JSON (edgeseg.files.write_file: atomic for files, through symlinks and devices)."""
        return write_file(path, json.dumps(self.to_dict(), indent=2) + "\n")
