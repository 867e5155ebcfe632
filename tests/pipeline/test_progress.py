"""Live progress: in-place status on a terminal, plain periodic lines in a log (no carriage returns)."""

from __future__ import annotations

import io

import pytest

from edgeseg.pipeline import progress
from edgeseg.pipeline.progress import ProgressReporter, tqdm_options
from edgeseg.pipeline.stats import SourceStats, Stats

from .fakes import FakeSegmenter


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _stats(processed=(7, 3), dropped=(1, 0)) -> Stats:
    sources = [SourceStats(index=i, source=f"s{i}", kind="video", live=False) for i in range(len(processed))]
    for source, done, lost in zip(sources, processed, dropped):
        source.add("read", done + lost)
        source.add("processed", done)
        source.add("dropped", lost)
    return Stats(mode="all", sources=sources)


def test_log_output_is_plain_lines_and_counts_every_source():
    log = io.StringIO()
    reporter = ProgressReporter(log, interval_s=0)
    reporter.report(_stats())
    reporter.report(_stats((9, 4)))
    reporter.close()
    text = log.getvalue()
    assert "\r" not in text and text.count("\n") == 2
    first, second = text.splitlines()
    assert "10 frames" in first and "dropped 1" in first and "[0] 7/1d" in first and "[1] 3/0d" in first
    assert "13 frames" in second


class _Clock:
    """A fake time.perf_counter: the test moves time on, not the wall clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines_over_a_minute(stream, monkeypatch) -> list[float]:
    """Seconds at which a default reporter printed, reported to every 0.1 s for 60 s of fake time."""
    clock = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    reporter = ProgressReporter(stream)
    printed_at = []
    for tick in range(1, 601):
        clock.now = 1000.0 + tick / 10
        before = stream.getvalue()
        reporter.report(_stats())
        if stream.getvalue() != before:
            printed_at.append(round(clock.now - 1000.0, 1))
    return printed_at


def test_a_log_gets_a_line_every_10_seconds(monkeypatch):
    """README: "in a log it is a plain line every 10 s" (by default, with no interval given)."""
    assert _lines_over_a_minute(io.StringIO(), monkeypatch) == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]


def test_a_terminal_is_redrawn_twice_a_second(monkeypatch):
    printed_at = _lines_over_a_minute(_Terminal(), monkeypatch)
    assert len(printed_at) == 120 and printed_at[:3] == [0.5, 1.0, 1.5]


def test_terminal_output_rewrites_one_line_and_ends_it():
    term = _Terminal()
    reporter = ProgressReporter(term, interval_s=0)
    reporter.report(_stats((100,), (0,)))
    reporter.report(_stats((5,), (0,)))
    reporter.close()
    text = term.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    # the shorter second line is padded over the longer first one
    assert len(text.split("\r")[2].rstrip("\n")) >= len(text.split("\r")[1])


def test_reports_are_rate_limited():
    log = io.StringIO()
    reporter = ProgressReporter(log, interval_s=3600)
    for _ in range(50):
        reporter.report(_stats())
    assert log.getvalue() == ""


def test_run_stream_reports_while_it_runs():
    from edgeseg.pipeline.stream import StreamPipeline

    seen: list[int] = []
    pipeline = StreamPipeline(FakeSegmenter(delay_s=0.01), ["synthetic:40"],
                              on_progress=lambda stats: seen.append(stats.processed))
    final = pipeline.run()
    assert seen and seen == sorted(seen) and seen[-1] <= final.processed == 40


def _tqdm_over_a_minute(stream, monkeypatch) -> str:
    """What a tqdm bar made with tqdm_options(stream) writes over 60 s of fake time, one step every 0.1 s."""
    tqdm_std = pytest.importorskip("tqdm.std")
    clock = _Clock()
    monkeypatch.setattr(tqdm_std, "time", clock)  # tqdm reads its clock through this name
    bar = tqdm_std.tqdm(total=600, desc="epoch 1", **tqdm_options(stream))
    for _ in range(600):
        clock.now += 0.1
        bar.update(1)
    bar.close()
    return stream.getvalue()


def test_tqdm_in_a_log_writes_a_plain_line_every_10_seconds(monkeypatch):
    text = _tqdm_over_a_minute(io.StringIO(), monkeypatch)
    lines = text.splitlines()
    assert "\r" not in text and all(line.startswith("epoch 1") for line in lines)
    # the start, one line per 10 s of the 60 (tqdm may print the last one again at close)
    assert 7 <= len(lines) <= 8, lines
    assert "600/600" in lines[-1]


def test_tqdm_on_a_terminal_is_a_bar_redrawn_in_place(monkeypatch):
    text = _tqdm_over_a_minute(_Terminal(), monkeypatch)
    assert text.count("\r") > 20  # redrawn in place far more often than a log line
