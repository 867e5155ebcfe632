"""SIGINT/SIGTERM/SIGHUP (a dropped ssh session) during `edgeseg run` (run_cmd in a subprocess with the fake segmenter) leave complete outputs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import pytest

from .fakes import count_video_frames

HERE = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    f"""
    import argparse, sys
    sys.path.insert(0, {str(HERE)!r})
    import fakes
    from edgeseg.cli import run_cmd

    run_cmd._open_segmenter = lambda model, backend, model_facts=None, tta=None: fakes.FakeSegmenter(delay_s=0.005)
    parser = argparse.ArgumentParser()
    run_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(sys.argv[1:])
    sys.exit(args.func(args))
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_stops_cleanly_with_playable_mp4_and_complete_masks(tmp_path, signum):
    out, masks, stats_json = tmp_path / "out.mp4", tmp_path / "masks", tmp_path / "stats.json"
    script = tmp_path / "run_fake.py"
    script.write_text(SCRIPT)
    command = [sys.executable, str(script), "run", "fake.onnx", "--source", "synthetic", "--out", str(out),
               "--masks", str(masks), "--stats", str(stats_json)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            if masks.is_dir() and len(list(masks.glob("*.png"))) >= 10:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()[0]
        process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, output
    assert f"{signal.Signals(signum).name} received: stopping" in output and "stopped early" in output

    stats = json.loads(stats_json.read_text())
    assert stats["interrupted"] == signal.Signals(signum).name
    total = stats["total"]
    assert total["read"] == total["processed"] + total["dropped"] + total["unreadable"]
    pngs = sorted(masks.glob("*.png"))
    assert len(pngs) == total["processed"] >= 10
    assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None for p in pngs)
    assert [p.name for p in masks.iterdir() if not p.name.endswith(".png") or p.name.startswith(".")] == []
    assert count_video_frames(out) == total["processed"]
