from __future__ import annotations

import cv2
import pytest

from edgeseg.pipeline.sources import SyntheticSource

from .fakes import FakeSegmenter, write_video


@pytest.fixture
def fake_segmenter() -> FakeSegmenter:
    return FakeSegmenter()


@pytest.fixture
def video_file(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 12)
    return path


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    synthetic = SyntheticSource(None, (40, 56))
    for index, stem in enumerate(["b_street", "a_park", "c_road", "d_lane", "e_yard"]):
        cv2.imwrite(str(folder / f"{stem}.png"), synthetic.render(index))
    (folder / "notes.txt").write_text("not an image")
    return folder
