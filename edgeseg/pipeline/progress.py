"""Live progress of a run: a status line rewritten in place on a terminal, periodic one-line summaries in a log.

A log file (no TTY) must not fill with carriage-return fragments, so there each report is a plain line, and less
often. The same rule serves `edgeseg train` (see `tqdm_options`).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from edgeseg.pipeline.stats import Stats

TTY_INTERVAL_S = 0.5
LOG_INTERVAL_S = 10.0


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class LogLines:
    """A file-like wrapper for tqdm in a log: each in-place redraw ('\\r' + status) becomes one plain line.

    tqdm always starts a redraw with '\\r' and clears a finished bar with '\\r' + spaces, whatever its options; a
    log file would keep every fragment on one ever-growing line. Blank redraws (the clearing) are dropped."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        for piece in text.replace("\x1b[A", "").replace("\r", "\n").split("\n"):
            if piece.strip():
                self.stream.write(piece.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def tqdm_options(stream: TextIO | None = None) -> dict[str, Any]:
    """tqdm settings for a bar on a terminal, or a plain line every LOG_INTERVAL_S (no '\\r') in a log."""
    stream = stream or sys.stderr
    if is_terminal(stream):
        return {"file": stream}
    return {"file": LogLines(stream), "mininterval": LOG_INTERVAL_S, "ascii": True, "ncols": 100,
            "dynamic_ncols": False}


class ProgressReporter:
    """`report(stats)` is called often; it prints at most every interval: frames, FPS, dropped, per source."""

    def __init__(self, stream: TextIO | None = None, interval_s: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = is_terminal(self.stream)
        self.interval_s = interval_s if interval_s is not None else (TTY_INTERVAL_S if self.tty else LOG_INTERVAL_S)
        self._started = time.perf_counter()
        self._next = self._started + self.interval_s
        self._last_width = 0

    def line(self, stats: Stats, now: float | None = None) -> str:
        elapsed = max((now or time.perf_counter()) - self._started, 1e-9)
        parts = [f"{stats.processed} frames", f"{stats.processed / elapsed:.1f} FPS", f"dropped {stats.dropped}"]
        if len(stats.sources) > 1:
            parts += [f"[{s.index}] {s.processed}/{s.dropped}d {s.status}" for s in stats.sources]
        elif stats.sources and stats.sources[0].status != "running":
            parts.append(stats.sources[0].status)
        return f"edgeseg run: {elapsed:.0f} s, " + ", ".join(parts)

    def report(self, stats: Stats) -> None:
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.interval_s
        text = self.line(stats, now)
        if self.tty:  # rewrite the line in place, padding over a longer previous one
            self.stream.write("\r" + text.ljust(self._last_width))
            self._last_width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._last_width:
            self.stream.write("\n")
            self.stream.flush()
