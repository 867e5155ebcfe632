"""`edgeseg run --source rtsp://127.0.0.1:PORT/live` against a real RTSP server (gst-rtsp-server, H.264 by x264enc).

The venv's OpenCV (pip's opencv-python-headless) has no GStreamer: `run` reads rtsp:// through OpenCV's FFmpeg
backend (CaptureSource uses cv2.CAP_FFMPEG for network streams), which is what these tests exercise. The server is
stopped in a finally block whatever happens. Skipped only when a Debian package the server needs is missing (named).
"""

from __future__ import annotations

import json
import statistics
import time

import cv2
import numpy as np
import pytest

from .rtsp_helpers import RtspServer, latencies, rtsp_server_missing, start_run

pytestmark = pytest.mark.slow


@pytest.fixture
def server():
    missing = rtsp_server_missing()
    if missing:
        pytest.skip(missing)
    rtsp = RtspServer()
    rtsp.start()
    try:
        yield rtsp
    finally:
        rtsp.kill()


def _finish(process, timeout=60) -> str:
    try:
        return process.communicate(timeout=timeout)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _wait_for_masks(folder, count, process, timeout=30) -> None:
    deadline = time.monotonic() + timeout
    while not (folder.is_dir() and len(list(folder.glob("*.png"))) >= count):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"fewer than {count} masks after {timeout} s"
        time.sleep(0.05)


def test_frames_arrive_and_are_segmented(server, tmp_path):
    masks, stats_json = tmp_path / "masks", tmp_path / "stats.json"
    process = start_run(tmp_path, "--source", server.url, "--max-frames", "30", "--masks", str(masks),
                        "--stats", str(stats_json))
    output = _finish(process)
    assert process.returncode == 0, output
    stats = json.loads(stats_json.read_text())
    source = stats["sources"][0]
    assert source["kind"] == "stream" and source["read"] == 30 and source["processed"] == 30, source
    files = sorted(masks.glob("*.png"))
    assert len(files) == 30
    for path in files:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (240, 320)  # the stream's frame size
        # the server's picture is blue below its barcode: the fake segmenter's class 1 ("blue") everywhere there
        assert np.all(mask[24:] == 1), np.unique(mask[24:], return_counts=True)


def test_server_killed_and_restarted_the_run_reconnects_and_frames_resume(server, tmp_path):
    masks, stats_json = tmp_path / "masks", tmp_path / "stats.json"
    process = start_run(tmp_path, "--source", server.url, "--max-frames", "120", "--masks", str(masks),
                        "--stats", str(stats_json), "--stall-timeout", "2", "--reconnect-attempts", "10",
                        "--reconnect-delay", "0.2")
    try:
        _wait_for_masks(masks, 20, process)
        server.kill()
        time.sleep(1.0)  # the run notices: its reads fail, it backs off and retries
        before = len(list(masks.glob("*.png")))
        server.start()  # same port
    finally:
        output = _finish(process, timeout=90)
    assert process.returncode == 0, output
    assert "reconnecting in" in output
    source = json.loads(stats_json.read_text())["sources"][0]
    assert source["reconnects"] >= 1 and source["status"] == "limit", source
    assert source["read"] == 120 == source["processed"] + source["dropped"] + source["unreadable"]
    assert 20 <= before < len(list(masks.glob("*.png")))  # frames resumed after the restart


def test_a_server_that_stops_sending_trips_the_stall_timeout(server, tmp_path):
    masks, stats_json = tmp_path / "masks", tmp_path / "stats.json"
    process = start_run(tmp_path, "--source", server.url, "--masks", str(masks), "--stats", str(stats_json),
                        "--stall-timeout", "1.5", "--reconnect-attempts", "1", "--reconnect-delay", "0.1")
    try:
        _wait_for_masks(masks, 10, process)
        server.pause()  # connection open, nothing sent: without the stall timeout FFmpeg waits 30 s per read
        paused = time.monotonic()
        output = _finish(process, timeout=60)
        gave_up_after = time.monotonic() - paused
    finally:
        server.kill()
    assert process.returncode == 1, output  # the source was lost
    assert "lost" in output and "read failed" in output
    # one read timeout, one failed reopen (its open timeout) and the backoff: a few seconds, not FFmpeg's 30 s each
    assert gave_up_after < 15, gave_up_after
    source = json.loads(stats_json.read_text())["sources"][0]
    assert source["status"] == "lost"
    assert source["read"] == source["processed"] + source["dropped"] + source["unreadable"]


def test_realtime_accounting_holds_and_capture_to_mask_latency_stays_bounded(server, tmp_path):
    """A model slower than the camera (60 ms a frame against 30 FPS) in --mode realtime: frames are dropped, not
    queued, so the latency from the server making a frame to its mask stays flat instead of growing."""
    stats_json = tmp_path / "stats.json"
    process = start_run(tmp_path, "--source", server.url, "--mode", "realtime", "--max-frames", "150",
                        "--stats", str(stats_json), delay_s=0.06)
    output = _finish(process, timeout=90)
    assert process.returncode == 0, output
    total = json.loads(stats_json.read_text())["total"]
    assert total["read"] == 150 == total["processed"] + total["dropped"] + total["unreadable"], total
    assert total["dropped"] > 0 and total["processed"] < 120, total  # ~16 FPS of 30 processed
    measured = latencies(tmp_path)
    assert len(measured) == total["processed"]
    first, last = measured[5:25], measured[-20:]  # the first few include the stream's start-up
    # with a growing queue the last frames would wait ~45 frames x 60 ms = 2.7 s; here each waits about one frame
    assert max(measured[5:]) < 1000, measured
    assert statistics.median(last) < statistics.median(first) + 150, (first, last)
