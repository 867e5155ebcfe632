"""Training progress through tqdm_options: a bar on a terminal, plain lines (no '\\r') when stderr is a log."""

from __future__ import annotations

import io

from tqdm import tqdm

from edgeseg.pipeline import progress
from edgeseg.pipeline.progress import LogLines, tqdm_options


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_bar(stream, monkeypatch, steps=5):
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    options = tqdm_options(stream)
    options["mininterval"] = 0.0  # draw every step on the terminal too, so both streams see every update
    for _ in tqdm(range(steps), desc="epoch 1/3", leave=False, unit="batch", **options):
        pass
    return stream.getvalue()


def test_a_log_gets_one_plain_line_per_update(monkeypatch):
    text = _run_bar(io.StringIO(), monkeypatch)
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0].startswith("epoch 1/3:   0%") and lines[-1].startswith("epoch 1/3: 100%")
    assert [line.split("|")[2].split()[0] for line in lines] == [f"{k}/5" for k in range(6)]
    assert text.endswith("\n")  # the cleared bar leaves no blank fragment behind


def test_a_terminal_keeps_the_redrawn_bar(monkeypatch):
    text = _run_bar(_Terminal(), monkeypatch)
    assert text.count("\r") >= 6 and "\n" not in text.rstrip("\n")


def test_log_lines_drop_blank_redraws_and_cursor_moves():
    log = io.StringIO()
    wrapper = LogLines(log)
    wrapper.write("\r  step 1  ")
    wrapper.write("\r" + " " * 40 + "\r")
    wrapper.write("\x1b[A\rstep 2\n")
    wrapper.flush()
    assert log.getvalue() == "  step 1\nstep 2\n"
