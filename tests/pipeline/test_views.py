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
    frame, rendered = _rendered(200, 300)
    view = View("overlay", legend=True, classes=("dark", "blue", "green", "red"), palette_bgr=PALETTE)
    image = view.compose(frame, rendered)
    (_, text_h), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    row = text_h + baseline + 6
    widest = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] for n in view.classes)
    x0 = 300 - (row + widest + 12) - 8
    for index, colour in enumerate(PALETTE):  # the middle of each swatch has the class colour
        y = 8 + index * row + row // 2
        np.testing.assert_array_equal(image[y, x0 + row // 2], colour)
    assert (image[:, : x0 - 1] == rendered["overlay"][:, : x0 - 1]).all()  # nothing drawn left of the legend


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
