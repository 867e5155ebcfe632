"""`edgeseg run --view-http` seen in a real browser: Debian's headless Chromium loads the page from 127.0.0.1 while
`run` segments a synthetic source (with the fake segmenter: its classes are known colour ranges), then Ctrl-C.

Skipped only when the Debian package `chromium` is not installed (.ci/run installs it)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from .fakes import FakeSegmenter

HERE = Path(__file__).resolve().parent
CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
# The page as its script left it after its first /stats.json (virtual time waits for the fetch; 400 ms is before
# the script's second refresh, whose FPS would be measured in virtual time)
DOM_AFTER_SCRIPT = ("--virtual-time-budget=400", "--dump-dom")

SCRIPT = textwrap.dedent(
    f"""
    import argparse, sys
    sys.path.insert(0, {str(HERE)!r})
    import fakes
    from edgeseg.cli import run_cmd

    run_cmd._open_segmenter = lambda model, backend, model_facts=None, tta=None: fakes.FakeSegmenter(input_size=(60, 80))
    parser = argparse.ArgumentParser()
    run_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(sys.argv[1:])
    sys.exit(args.func(args))
    """
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="the Debian package 'chromium' is not installed "
                       "(apt-get install chromium; .ci/run installs it)"),
]


def _chromium(tmp_path: Path, name: str, url: str, *what: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{name}"
    profile.mkdir()  # a new, empty profile for each start
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=900,700", *what,
                           url], capture_output=True, text=True, timeout=90, cwd=tmp_path)


def _screenshot(tmp_path: Path, name: str, url: str) -> np.ndarray:
    path = tmp_path / f"{name}.png"
    done = _chromium(tmp_path, name, url, f"--screenshot={path}")
    assert path.is_file(), done.stderr[-2000:]
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def _pixels_per_palette_colour(image: np.ndarray, palette_bgr: np.ndarray, tolerance: int = 12) -> list[int]:
    distance = np.abs(image[:, :, None, :].astype(int) - palette_bgr[None, None].astype(int)).max(axis=3)
    return [int((distance[:, :, k] <= tolerance).sum()) for k in range(len(palette_bgr))]


def _figures(dom: str) -> dict[str, str]:
    return dict(re.findall(r'<td id="(fps|latency|dropped|processed)">([^<]*)</td>', dom))


def test_chromium_shows_the_overlay_and_live_figures_then_ctrl_c_frees_the_port(tmp_path):
    script = tmp_path / "run_fake.py"
    script.write_text(SCRIPT)
    command = [sys.executable, str(script), "run", "fake.onnx", "--source", "synthetic@30", "--mode", "realtime",
               "--view-http", "0", "--alpha", "1", "--stats", str(tmp_path / "stats.json")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in process.stdout:  # the address is printed when it starts serving
            match = re.search(r"live view: (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "no 'live view:' line"
        port = int(url.rsplit(":", 1)[1].strip("/"))
        deadline = time.monotonic() + 30
        while json.loads(urllib.request.urlopen(url + "stats.json", timeout=10).read())["total"]["processed"] < 10:
            assert time.monotonic() < deadline, "no frame processed"
            time.sleep(0.1)

        first = _screenshot(tmp_path, "first", url)
        first_dom = _chromium(tmp_path, "first-dom", url, *DOM_AFTER_SCRIPT).stdout
        time.sleep(1.0)
        second = _screenshot(tmp_path, "second", url)
        second_dom = _chromium(tmp_path, "second-dom", url, *DOM_AFTER_SCRIPT).stdout
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            output = process.communicate(timeout=30)[0]
        finally:
            if process.poll() is None:
                process.kill()

    palette = FakeSegmenter().palette_bgr
    for shot in (first, second):
        # --alpha 1: the overlay is the palette's colours. The synthetic frame (240x320) is a dark background
        # (class 0) and blue, green and red 80x80 blocks (classes 1-3) that overlap at times; a legend swatch is
        # only 14x14 pixels
        counts = _pixels_per_palette_colour(shot, palette)
        assert sum(counts) >= 0.97 * 240 * 320 and counts[0] > 240 * 320 // 2, counts
        assert sum(count > 1000 for count in counts[1:]) >= 2, counts
    # the figures: above the picture in the page's layout, drawn from /stats.json by the page's script
    figures_first, figures_second = _figures(first_dom), _figures(second_dom)
    assert set(figures_first) == {"fps", "latency", "dropped", "processed"}, first_dom[-2000:]
    done_first = int(figures_first["processed"].split("/")[0])
    done_second = int(figures_second["processed"].split("/")[0])
    assert 0 < done_first < done_second and float(figures_second["fps"]) > 0
    assert figures_second["latency"].endswith(" ms")
    assert not np.array_equal(first[40:160, :450], second[40:160, :450])  # the figures' rows changed on screen

    assert process.returncode == 130, output  # stopped by Ctrl-C, outputs finalised
    assert "SIGINT received: stopping" in output
    assert json.loads((tmp_path / "stats.json").read_text())["interrupted"] == "SIGINT"
    with pytest.raises(OSError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    again = socket.socket()  # and a new server (SO_REUSEADDR, as every HTTP server sets it) can take the port
    again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        again.bind(("127.0.0.1", port))
        again.listen()
    finally:
        again.close()
