"""Every float option refuses NaN and infinity by name, and a closed stdout (`edgeseg doctor | head -1`) ends a
command quietly, as Unix tools do, instead of with a BrokenPipeError traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from edgeseg.cli import build_parser, main


def _float_options() -> list[tuple[str, str, int]]:
    """(command, flag, number of values) of every option whose values parse as floats, in every subcommand."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for command, parser in sub.choices.items():
        for action in parser._actions:
            if not action.option_strings or action.type in (None, int, str) or action.choices:
                continue
            try:
                parsed = action.type("0.5")
            except (argparse.ArgumentTypeError, TypeError, ValueError):
                continue
            if isinstance(parsed, float):
                nargs = action.nargs if isinstance(action.nargs, int) else 1
                found.append((command, action.option_strings[-1], nargs))
    return found


FLOAT_OPTIONS = _float_options()


def test_the_float_options_are_found():
    flags = {(command, flag) for command, flag, _ in FLOAT_OPTIONS}
    assert {("bench", "--min-seconds"), ("train", "--lr"), ("run", "--alpha"), ("run", "--mean"),
            ("serve", "--startup-timeout"), ("demo", "--max-minutes"), ("export", "--miou-threshold")} <= flags


@pytest.mark.parametrize("value", ["nan", "inf"])  # "-inf" reads as an option to argparse
@pytest.mark.parametrize("command, flag, nargs", FLOAT_OPTIONS, ids=[f"{c} {f}" for c, f, _ in FLOAT_OPTIONS])
def test_every_float_option_refuses_non_finite_values_by_name(capsys, command, flag, nargs, value):
    with pytest.raises(SystemExit) as exit_info:
        main([command, flag, *[value] * nargs])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"edgeseg {command}: error: argument {flag}: '{value}' is not a finite number" in err


def test_bench_min_seconds_nan_writes_no_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    with pytest.raises(SystemExit):
        main(["bench", str(tmp_path / "m.onnx"), "--json", str(out), "--min-seconds", "nan"])
    assert "--min-seconds: 'nan' is not a finite number" in capsys.readouterr().err and not out.exists()


def _run_into_closed_pipe(*argv: str) -> subprocess.CompletedProcess:
    """`edgeseg ARGV | head -0`, deterministically: stdout is a pipe whose reading end is already closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "edgeseg", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("argv", [["doctor"], ["-v", "models"], ["models"]])
def test_a_closed_pipe_ends_the_command_quietly(argv):
    result = _run_into_closed_pipe(*argv)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert "Exception ignored" not in result.stderr
    assert result.returncode == 141  # 128 + SIGPIPE, what a shell reports for a tool the pipe ended
