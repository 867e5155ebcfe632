"""Probing for an H.264 encoder prints nothing but our one warning (FFmpeg and OpenCV used to print four lines)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import numpy as np
    from edgeseg.pipeline.sinks import VideoSink

    logging.basicConfig(format="%(levelname)s %(message)s")
    for name in ("a.mp4", "b.mp4"):  # two videos: one probe
        sink = VideoSink(sys.argv[1] + "/" + name)
        sink.write(np.zeros((48, 64, 3), np.uint8))
        sink.close()
    print("ok", sink.codec, flush=True)
    """
)


def test_h264_probe_leaves_only_our_warning_on_stderr(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    codec = done.stdout.split()[-1]
    written = cv2.VideoCapture(str(tmp_path / "b.mp4"))
    fourcc = int(written.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    written.release()
    # what the file holds, read back by OpenCV (FFmpeg names MPEG-4 Part 2 'FMP4')
    assert fourcc.lower() in {"avc1": {"avc1", "h264"}, "mp4v": {"mp4v", "fmp4"}}[codec]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if codec == "avc1":
        assert lines == []
    else:  # this OpenCV (pip's wheels) cannot encode H.264: one warning per video, and nothing from FFmpeg/OpenCV
        assert codec == "mp4v" and len(lines) == 2, done.stderr
        assert all(line.startswith("WARNING this OpenCV has no H.264 encoder") for line in lines), done.stderr
