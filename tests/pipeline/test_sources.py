from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

import edgeseg.pipeline.sources as sources
from edgeseg.errors import SourceError
from edgeseg.pipeline.sources import (
    CaptureSource,
    ImageFolderSource,
    SyntheticSource,
    VideoFileSource,
    jetson_csi_pipeline,
    open_source,
)

from .fakes import write_video


def test_open_source_recognises_every_kind(video_file, image_folder):
    assert isinstance(open_source(str(video_file)), VideoFileSource)
    assert isinstance(open_source(image_folder), ImageFolderSource)
    assert isinstance(open_source(image_folder / "a_park.png"), ImageFolderSource)
    camera = open_source("0")
    assert isinstance(camera, CaptureSource) and camera.kind == "camera" and camera.target == 0 and camera.live
    stream = open_source("rtsp://10.0.0.2:554/live")
    assert stream.kind == "stream" and stream.api == cv2.CAP_FFMPEG
    gst = open_source(jetson_csi_pipeline())
    assert gst.kind == "gstreamer" and gst.api == cv2.CAP_GSTREAMER
    assert open_source("synthetic").count is None
    assert open_source("synthetic:7").count == 7


@pytest.mark.parametrize("spec, match", [("synthetic:x", r"synthetic\[:N\]\[@FPS\]"), ("synthetic@fast", "FPS"),
                                         ("synthetic:3@", "FPS"), ("no/such/clip.mp4", "no/such/clip.mp4"),
                                         ("", "empty")])
def test_open_source_rejects_unknown(spec, match):
    with pytest.raises(SourceError, match=match):
        open_source(spec)


@pytest.mark.parametrize("spec, count, fps", [("synthetic", None, 30.0), ("synthetic:7", 7, 30.0),
                                              ("synthetic@12.5", None, 12.5), ("synthetic:4@60", 4, 60.0),
                                              ("synthetic:4@0", 4, None)])
def test_synthetic_is_paced_like_a_camera_unless_told_otherwise(spec, count, fps):
    source = open_source(spec)
    assert source.count == count and source.description == spec
    source.open()
    started = time.perf_counter()
    for _ in range(4):
        assert source.read() is not None
    took = time.perf_counter() - started
    if fps is None:
        assert took < 0.5  # 4 frames of 240x320 as fast as they are made
    else:
        assert took >= 3 / fps * 0.95  # the first frame is due at once, each next one 1/fps later


def test_a_video_whose_name_starts_with_synthetic_is_a_video(tmp_path):
    clip = tmp_path / "synthetic_street.mp4"
    write_video(clip, 2)
    assert isinstance(open_source(clip), VideoFileSource)


def test_jetson_template_is_a_bgr_appsink_pipeline():
    text = jetson_csi_pipeline(sensor_id=1, width=640, height=480, fps=60)
    assert text.startswith("nvarguscamerasrc sensor-id=1 !") and "framerate=60/1" in text
    assert text.endswith("appsink drop=true max-buffers=1") and "format=BGR !" in text
    assert "nvarguscamerasrc" in sources.__doc__


@pytest.mark.skipif(sources.opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_gstreamer_without_support_says_so():
    with pytest.raises(SourceError, match="built without GStreamer"):
        open_source("videotestsrc ! appsink").open()


def test_video_file_reads_all_frames_then_ends(video_file):
    source = open_source(video_file)
    source.open()
    names = []
    while (frame := source.read()) is not None:
        names.append(frame.name)
        assert frame.image.shape == (64, 80, 3)
    source.close()
    assert names == [f"{i:06d}" for i in range(12)]
    assert source.fps == pytest.approx(10.0)


def test_non_video_file_cannot_be_opened(tmp_path):
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"this is not a video" * 10)
    with pytest.raises(SourceError, match="bogus.mp4"):
        open_source(bogus).open()


def test_image_folder_sorted_by_name_with_stems(image_folder, tmp_path):
    source = open_source(image_folder)
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert [f.name for f in frames] == ["a_park", "b_street", "c_road", "d_lane", "e_yard"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="has no images"):
        open_source(empty).open()


def test_image_folder_keeps_suffix_when_stems_collide(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "x.png"), image)
    cv2.imwrite(str(tmp_path / "x.jpg"), image)
    source = ImageFolderSource(tmp_path)
    source.open()
    assert sorted([source.read().name, source.read().name]) == ["x_jpg", "x_png"]


def test_synthetic_is_deterministic_and_counts():
    a, b = SyntheticSource(3, (20, 30)), SyntheticSource(3, (20, 30))
    a.open(), b.open()
    first = [a.read() for _ in range(4)]
    assert first[3] is None and [f.name for f in first[:3]] == ["000000", "000001", "000002"]
    assert np.array_equal(first[1].image, b.render(1)) and not np.array_equal(first[0].image, first[1].image)
