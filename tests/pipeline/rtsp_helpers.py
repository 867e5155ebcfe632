"""Starting and always stopping the real RTSP server (rtsp_server.py under Debian's /usr/bin/python3), and running
`edgeseg run` in a subprocess with the fake segmenter, which logs each frame's capture-to-mask latency."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"

# The packages the server needs, and how to tell each is there (in the order a skip names them).
_PROBE = textwrap.dedent(
    """
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import Gst, GstRtspServer
    Gst.init(None)
    for element, package in (("rtph264pay", "gstreamer1.0-plugins-good"), ("x264enc", "gstreamer1.0-plugins-ugly"),
                             ("videoconvert", "gstreamer1.0-plugins-base"), ("appsrc", "gstreamer1.0-plugins-base")):
        if Gst.ElementFactory.find(element) is None:
            raise SystemExit("GStreamer element " + element + " missing: Debian package " + package)
    """
)


@lru_cache(maxsize=1)
def rtsp_server_missing() -> str | None:
    """None when the server can run, else why not (naming the Debian package to install)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (Debian's python3)"
    done = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    if done.returncode == 0:
        return None
    error = (done.stderr.strip().splitlines() or ["?"])[-1]
    if "No module named 'gi'" in error:
        return "python3-gi is not installed (Debian package python3-gi)"
    if "GstRtspServer" in error:
        return f"gst-rtsp-server is not installed (Debian package gir1.2-gst-rtsp-server-1.0): {error}"
    return error


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RtspServer:
    """rtsp://127.0.0.1:PORT/live while running; start() again after kill() serves on the same port."""

    def __init__(self, port: int | None = None, fps: int = 30) -> None:
        self.port = port or free_port()
        self.fps = fps
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            process = subprocess.Popen([SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), str(self.port), "--fps",
                                        str(self.fps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = process.stdout.readline()
            if line.strip() == "READY":
                self.process = process
                return
            process.kill()
            error = process.communicate()[1]
            if time.monotonic() > deadline:  # the old server's port may take a moment to come free
                raise RuntimeError(f"RTSP server did not start: {error}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGCONT)  # in case a test paused it
                self.process.kill()
            self.process.communicate()
            self.process = None

    def pause(self) -> None:
        """The server stops sending, its connections stay open (SIGSTOP)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)


RUN_SCRIPT = textwrap.dedent(
    f"""
    import argparse, os, sys, time
    sys.path.insert(0, {str(HERE)!r})
    import fakes
    from edgeseg.cli import run_cmd

    latencies = open(os.environ["EDGESEG_TEST_LATENCY_LOG"], "a")


    def stamp_ms(frame):  # rtsp_server.py's barcode: 32 cells of 10x16 pixels along the top edge
        return sum(1 << bit for bit in range(32) if frame[8, bit * 10 + 5].mean() > 128)


    class StampedSegmenter(fakes.FakeSegmenter):
        def predict(self, frames):
            masks = super().predict(frames)
            now = int(time.time() * 1000) % 2**32
            stamped = [f for f in frames if f.shape[:2] == (240, 320)]  # rtsp_server.py's frames only
            latencies.write("".join(f"{{(now - stamp_ms(f)) % 2**32}}\\n" for f in stamped))
            latencies.flush()
            return masks


    delay = float(os.environ.get("EDGESEG_TEST_DELAY_S", "0"))
    run_cmd._open_segmenter = lambda model, backend, model_facts=None, tta=None: StampedSegmenter((60, 80), delay_s=delay)
    parser = argparse.ArgumentParser()
    run_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(sys.argv[1:])
    sys.exit(args.func(args))
    """
)


def start_run(tmp_path: Path, *argv: str, delay_s: float = 0.0, python: str | None = None) -> subprocess.Popen:
    """`edgeseg run fake.onnx ARGV...` with the fake segmenter; latencies (ms, one a line) go to tmp_path/latency."""
    script = tmp_path / "run_fake.py"
    script.write_text(RUN_SCRIPT)
    env = dict(os.environ, EDGESEG_TEST_LATENCY_LOG=str(tmp_path / "latency"), EDGESEG_TEST_DELAY_S=str(delay_s))
    return subprocess.Popen([python or sys.executable, str(script), "run", "fake.onnx", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def latencies(tmp_path: Path) -> list[int]:
    path = tmp_path / "latency"
    return [int(line) for line in path.read_text().split()] if path.exists() else []
