"""One MP4 that cannot be opened (a bad path) must not make every later MP4 in the process fail: only a codec found
missing is remembered, never a failure to open a path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg.errors import EdgeSegError
from edgeseg.pipeline import sinks


def test_a_failed_path_does_not_poison_the_codec_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(sinks, "_UNAVAILABLE_CODECS", set())
    frame = np.zeros((64, 80, 3), np.uint8)
    (tmp_path / "taken.mp4").mkdir()  # a folder where the video should go: it can never land there
    with pytest.raises(EdgeSegError, match="taken.mp4"):
        bad = sinks.VideoSink(tmp_path / "taken.mp4")
        bad.write(frame)
        bad.close()
    good = sinks.VideoSink(tmp_path / "good.mp4")
    for _ in range(3):
        good.write(frame)
    good.close()
    capture = cv2.VideoCapture(str(tmp_path / "good.mp4"))  # an independent reader: the file really holds 3 frames
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()
