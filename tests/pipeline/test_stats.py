from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.pipeline.stats import STAGES, LatencyReservoir, SourceStats, Stats


def test_reservoir_is_bounded_and_estimates_percentiles():
    reservoir = LatencyReservoir(capacity=1024, seed=1)
    values = np.random.default_rng(0).uniform(0, 100, 50_000)
    for value in values:
        reservoir.add(float(value))
    summary = reservoir.summary()
    assert reservoir.sample_size == 1024 and summary["count"] == 50_000
    assert summary["latency_ms_p50"] == pytest.approx(50, abs=5)
    assert summary["latency_ms_p99"] == pytest.approx(99, abs=3)
    assert summary["latency_ms_max"] == pytest.approx(values.max(), abs=1e-3)
    assert summary["latency_ms_mean"] == pytest.approx(values.mean(), abs=1e-3)


def test_reservoir_is_exact_below_capacity_and_says_skipped_when_empty():
    reservoir = LatencyReservoir(capacity=16)
    assert reservoir.summary() == {"count": 0, "skipped": True}
    for value in (1.0, 2.0, 3.0):
        reservoir.add(value)
    assert reservoir.summary()["latency_ms_p50"] == 2.0


def test_stats_totals_and_json(tmp_path):
    stats = Stats(mode="all", sources=[SourceStats(0, "a", "video", False), SourceStats(1, "b", "camera", True)])
    stats.sources[0].add("read", 5)
    stats.sources[0].add("processed", 4)
    stats.sources[0].add("unreadable")
    stats.sources[1].add("read", 3)
    stats.sources[1].add("dropped", 3)
    stats.finish()
    assert stats.balanced and stats.read == 8 and stats.processed == 4
    data = json.loads(stats.write_json(tmp_path / "s" / "stats.json").read_text())
    assert data["total"] == {"read": 8, "processed": 4, "dropped": 3, "unreadable": 1, "reconnects": 0}
    assert set(data["stages"]) == set(STAGES)
    assert [s["source"] for s in data["sources"]] == ["a", "b"]
    stats.sources[1].add("read")
    assert not stats.balanced
