"""Live progress: in-place status on a terminal, plain periodic lines in a log (no carriage returns)."""

from __future__ import annotations

import io

from edgeseg.pipeline.progress import LOG_INTERVAL_S, ProgressReporter, tqdm_options
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
    assert ProgressReporter(io.StringIO()).interval_s == LOG_INTERVAL_S


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


def test_tqdm_in_a_log_has_no_carriage_return_flood():
    assert tqdm_options(io.StringIO())["mininterval"] == LOG_INTERVAL_S
    assert "mininterval" not in tqdm_options(_Terminal())
