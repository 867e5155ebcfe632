"""A few thousand frames through the whole pipeline with memory that stays flat."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from edgeseg.pipeline.sources import SyntheticSource
from edgeseg.pipeline.stream import run_stream

from .fakes import FakeSegmenter, count_video_frames

psutil = pytest.importorskip("psutil")

RSS_GROWTH_LIMIT_MB = 30  # after a warm-up run; 3000 frames of 64x80 kept alive would be ~46 MB


@pytest.mark.slow
def test_soak_memory_stays_flat(tmp_path):
    process = psutil.Process()
    segmenter = FakeSegmenter(input_size=(32, 40))
    run_stream(segmenter, SyntheticSource(300, (64, 80)), tmp_path / "warmup.mp4", masks_dir=tmp_path / "warm")
    gc.collect()
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        stats = run_stream(segmenter, SyntheticSource(3000, (64, 80)), tmp_path / "soak.mp4",
                           masks_dir=tmp_path / "masks", mode="all")
    finally:
        done.set()
        sampler.join()
    elapsed = time.perf_counter() - started
    gc.collect()
    growth_mb = (max(peak[0], process.memory_info().rss) - baseline) / 2**20
    assert stats.processed == stats.read == 3000 and stats.balanced
    assert growth_mb < RSS_GROWTH_LIMIT_MB, f"RSS grew {growth_mb:.1f} MB over 3000 frames"
    assert all(reservoir.sample_size <= reservoir.capacity for reservoir in stats.stages.values())
    assert count_video_frames(tmp_path / "soak.mp4") == 3000
    assert elapsed < 30
    print(f"soak: 3000 frames in {elapsed:.1f} s ({stats.fps:.0f} FPS), RSS growth {growth_mb:.1f} MB")
