"""What `edgeseg run` shows: --view overlay|mask|side-by-side, --legend, --show-fps, picture out for a picture in,
and the video codec (H.264 where available, a loud mp4v fallback)."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from edgeseg.errors import ConfigError
from edgeseg.pipeline.sinks import VideoSink
from edgeseg.pipeline.stream import run_stream
from edgeseg.pipeline.views import View

from .fakes import FakeSegmenter
from .test_run_cmd import cli  # noqa: F401  (fixture)

PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)


def _rendered(h=60, w=80):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return frame, {"overlay": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                   "color": rng.integers(0, 256, (h, w, 3), dtype=np.uint8)}


def test_views_lay_out_the_plan_outputs():
    frame, rendered = _rendered()
    keep = {k: v.copy() for k, v in rendered.items()}
    np.testing.assert_array_equal(View("overlay").compose(frame, rendered), rendered["overlay"])
    np.testing.assert_array_equal(View("mask").compose(frame, rendered), rendered["color"])
    np.testing.assert_array_equal(View("side-by-side").compose(frame, rendered),
                                  np.hstack([frame, rendered["overlay"]]))
    assert View("mask").renders == ["color"] and View("side-by-side").renders == ["overlay"]
    for key, value in rendered.items():
        np.testing.assert_array_equal(value, keep[key])  # compose never draws on the plan's outputs
    with pytest.raises(ConfigError, match="--view must be one of"):
        View("heatmap")


def test_legend_draws_each_class_swatch_in_its_colour():
    """Seen from outside: on a plain grey overlay, each class colour appears once as a filled square, in class
    order from top to bottom, at the top right; everything drawn lies in one box there."""
    palette = np.array([[10, 200, 30], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)  # none is grey or text
    frame = np.zeros((200, 300, 3), np.uint8)
    grey = np.full((200, 300, 3), 128, np.uint8)
    view = View("overlay", legend=True, classes=("dark", "blue", "green", "red"), palette_bgr=palette)
    image = view.compose(frame, {"overlay": grey, "color": grey})
    centres = []
    for colour in palette:
        ys, xs = np.nonzero((image == colour).all(axis=2))
        assert ys.size, f"no swatch of colour {colour}"
        height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert height == width >= 5 and ys.size == height * width  # one filled square
        centres.append(((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2))
    rows, columns = zip(*centres)
    assert list(rows) == sorted(rows) and len(set(rows)) == 4  # one row per class, in class order
    assert len(set(columns)) == 1 and columns[0] > 150 and rows[0] < 50  # one column, at the top right
    drawn_ys, drawn_xs = np.nonzero((image != grey).any(axis=2))
    assert drawn_xs.min() > 150 and drawn_ys.max() < 100  # the legend box is all that changed
    assert 300 - drawn_xs.max() <= 16  # near the right edge


def test_fps_text_is_drawn_only_when_asked_and_known():
    frame, rendered = _rendered()
    plain = View("overlay").compose(frame, rendered, fps=25.0)
    with_fps = View("overlay", show_fps=True).compose(frame, rendered, fps=25.0)
    unknown = View("overlay", show_fps=True).compose(frame, rendered, fps=None)
    np.testing.assert_array_equal(plain, rendered["overlay"])
    np.testing.assert_array_equal(unknown, rendered["overlay"])
    changed = np.argwhere((with_fps != rendered["overlay"]).any(axis=2))
    assert changed.size and changed[:, 0].max() < 30 and changed[:, 1].min() >= 0  # a label at the top left


def test_a_picture_in_gives_a_picture_out(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), image)
    segmenter = FakeSegmenter()
    run_stream(segmenter, str(tmp_path / "in.png"), tmp_path / "out.png")
    expected = segmenter.overlay(image, segmenter.predict([image])[0], 0.5)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out.png")), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png"]


def test_a_picture_out_for_a_video_in_is_refused(tmp_path, video_file):
    with pytest.raises(ConfigError, match="not a single image"):
        run_stream(FakeSegmenter(), str(video_file), tmp_path / "out.png")


def test_video_codec_is_h264_or_a_loud_mp4v_fallback(tmp_path, caplog):
    sink = VideoSink(tmp_path / "v.mp4")
    with caplog.at_level(logging.WARNING, logger="edgeseg.pipeline.sinks"):
        for _ in range(3):
            sink.write(np.zeros((48, 64, 3), np.uint8))
        sink.close()
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace")
    capture.release()
    assert sink.codec in ("avc1", "mp4v")
    assert fourcc.lower() in (("avc1", "h264") if sink.codec == "avc1" else ("mp4v", "fmp4"))  # fmp4: FFmpeg's name
    assert ("no H.264 encoder" in caplog.text) == (sink.codec == "mp4v")


def test_run_side_by_side_doubles_the_width(cli, tmp_path, video_file):  # noqa: F811
    assert cli("m.onnx", "--source", video_file, "--out", tmp_path / "sbs.mp4", "--view", "side-by-side",
               "--legend", "--show-fps") == 0
    source, out = cv2.VideoCapture(str(video_file)), cv2.VideoCapture(str(tmp_path / "sbs.mp4"))
    try:
        assert out.get(cv2.CAP_PROP_FRAME_WIDTH) == 2 * source.get(cv2.CAP_PROP_FRAME_WIDTH)
        assert out.get(cv2.CAP_PROP_FRAME_HEIGHT) == source.get(cv2.CAP_PROP_FRAME_HEIGHT)
    finally:
        source.release()
        out.release()
