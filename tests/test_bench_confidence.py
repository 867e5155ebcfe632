"""benchmarks/bench_confidence.py runs end to end on a tiny case and records what a result needs (device, versions,
load, both variants side by side, a skipped GPU row that says why)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_confidence_tiny_run(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("bench_confidence", None)
    import bench_confidence

    out = tmp_path / "confidence.json"
    assert bench_confidence.main(["--min-time", "0.02", "--rounds", "2", "--sizes", "16x24", "--classes", "3",
                                  "--gpu", "off", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"]["cpu"] and report["versions"]["numpy"]
    assert set(report["load_average_1_5_15_min"]) == {"before", "after"}
    rows = {(r["op"], r["impl"]): r for r in report["results"] if r["status"] == "ok"}
    assert set(rows) == {("argmax", "cpp"), ("upsample_argmax", "cpp")}
    for row in rows.values():
        base, conf = row["argmax"]["latency_ms_p50"], row["argmax+confidence"]["latency_ms_p50"]
        assert row["argmax"]["rounds"] == 2 and len(row["argmax+confidence"]["round_p50s_ms"]) == 2
        assert row["confidence_over_argmax_p50"] == round(conf / base, 3)
    skipped = [r for r in report["results"] if r["status"] == "skipped"]
    assert skipped and all(r["impl"] == "cuda" and r["reason"] == "--gpu off" for r in skipped)
