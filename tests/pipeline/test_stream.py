from __future__ import annotations

import json
import logging
import time

import cv2
import numpy as np
import pytest

from edgeseg.errors import ConfigError, SourceError
from edgeseg.pipeline.sources import SyntheticSource
from edgeseg.pipeline.stream import run_stream

from .fakes import FakeSegmenter, count_video_frames, write_video


def read_masks(folder):
    return {p.stem: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))}


def test_video_all_mode_one_output_frame_and_mask_per_input(tmp_path, video_file, fake_segmenter):
    stats = run_stream(fake_segmenter, [video_file], tmp_path / "out.mp4", masks_dir=tmp_path / "masks")
    assert count_video_frames(tmp_path / "out.mp4") == 12
    masks = read_masks(tmp_path / "masks")
    assert list(masks) == [f"{i:06d}" for i in range(12)]
    # masks are class ids at the frame's resolution and match the model on the decoded frame
    cap = cv2.VideoCapture(str(video_file))
    ok, first = cap.read()
    cap.release()
    expected = fake_segmenter.mask_to_frame(fake_segmenter.predict([first])[0], first.shape[:2])
    assert masks["000000"].shape == (64, 80) and masks["000000"].dtype == np.uint8
    np.testing.assert_array_equal(masks["000000"], expected)
    assert set(np.unique(np.concatenate([m.ravel() for m in masks.values()]))) <= {0, 1, 2, 3}
    assert (stats.read, stats.processed, stats.dropped, stats.unreadable) == (12, 12, 0, 0)
    assert stats.sources[0].status == "ended" and stats.balanced and stats.interrupted is None
    assert not list((tmp_path / "masks").glob(".*"))  # no temporary files left


def test_image_folder_all_mode_masks_named_by_stem(tmp_path, image_folder, fake_segmenter):
    stats = run_stream(fake_segmenter, image_folder, tmp_path / "out.mp4", masks_dir=tmp_path / "masks")
    assert count_video_frames(tmp_path / "out.mp4") == 5
    masks = read_masks(tmp_path / "masks")
    assert list(masks) == ["a_park", "b_street", "c_road", "d_lane", "e_yard"]
    assert all(m.shape == (40, 56) for m in masks.values())
    assert stats.processed == stats.read == 5 and stats.balanced


def test_corrupt_images_are_counted_unreadable_and_skipped(tmp_path, image_folder, fake_segmenter, caplog):
    (image_folder / "c_zz_garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    good = (image_folder / "a_park.png").read_bytes()
    (image_folder / "c_zz_truncated.jpg").write_bytes(good[:30])
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        stats = run_stream(fake_segmenter, image_folder, tmp_path / "out.mp4", masks_dir=tmp_path / "masks")
    assert (stats.read, stats.processed, stats.unreadable, stats.dropped) == (7, 5, 2, 0)
    assert stats.balanced
    assert "c_zz_garbage.png" in caplog.text and "c_zz_truncated.jpg" in caplog.text
    assert sorted(read_masks(tmp_path / "masks")) == ["a_park", "b_street", "c_road", "d_lane", "e_yard"]
    assert count_video_frames(tmp_path / "out.mp4") == 5


def test_all_mode_stats_json_add_up_and_have_latency(tmp_path, fake_segmenter):
    stats = run_stream(fake_segmenter, "synthetic:40", tmp_path / "out.mp4", stats_path=tmp_path / "stats.json")
    data = json.loads((tmp_path / "stats.json").read_text())
    total = data["total"]
    assert total["read"] == total["processed"] == 40 and total["dropped"] == total["unreadable"] == 0
    assert data["sources"][0]["read"] == 40 and data["mode"] == "all" and data["fps"] > 0
    for stage in ("capture_wait", "preprocess", "infer", "postprocess", "write", "end_to_end"):
        summary = data["stages"][stage]
        assert summary["count"] > 0 and summary["latency_ms_p50"] <= summary["latency_ms_p90"]
        assert summary["latency_ms_p90"] <= summary["latency_ms_p99"]
    assert data["stages"]["write"]["count"] == 40
    assert stats.fps == pytest.approx(40 / stats.elapsed_s)


def test_realtime_mode_drops_stale_frames_and_stats_add_up(tmp_path):
    slow = FakeSegmenter(delay_s=0.02)
    source = SyntheticSource(150, (48, 64), fps=1000)  # a fast live-like source
    stats = run_stream(slow, [source], tmp_path / "out.mp4", masks_dir=tmp_path / "masks", mode="realtime",
                       stats_path=tmp_path / "stats.json")
    assert stats.read == 150 and stats.dropped > 0 and stats.processed > 0
    assert stats.read == stats.processed + stats.dropped + stats.unreadable
    assert len(list((tmp_path / "masks").glob("*.png"))) == stats.processed
    assert count_video_frames(tmp_path / "out.mp4") == stats.processed
    data = json.loads((tmp_path / "stats.json").read_text())
    assert data["mode"] == "realtime" and data["total"]["dropped"] == stats.dropped


def test_realtime_synthetic_is_read_at_camera_pace_so_a_fast_model_keeps_up(tmp_path):
    """The issue's run: `--source synthetic --mode realtime --max-frames 150` read 150, processed 2, dropped 148,
    because the source made frames as fast as it could. Paced at 30 FPS, a model ten times faster processes them."""
    started = time.perf_counter()
    stats = run_stream(FakeSegmenter(delay_s=0.003), "synthetic@100", mode="realtime",
                       max_frames=60, masks_dir=tmp_path / "masks")
    took = time.perf_counter() - started
    assert stats.read == 60 and stats.read == stats.processed + stats.dropped + stats.unreadable
    assert stats.processed >= 0.8 * stats.read, stats.to_dict()["total"]  # not 2 of 60: a slow machine drops a few
    assert took >= 59 / 100  # read at the camera's 100 FPS, not as fast as possible
    assert len(list((tmp_path / "masks").glob("*.png"))) == stats.processed


def test_realtime_mode_keeps_every_frame_of_a_file(tmp_path, video_file):
    stats = run_stream(FakeSegmenter(delay_s=0.01), video_file, tmp_path / "out.mp4", mode="realtime")
    assert stats.processed == 12 and stats.dropped == 0


def test_max_frames_stops_an_endless_source(tmp_path, fake_segmenter):
    stats = run_stream(fake_segmenter, "synthetic", tmp_path / "out.mp4", max_frames=7)
    assert stats.processed == 7 and stats.sources[0].status == "limit"
    assert count_video_frames(tmp_path / "out.mp4") == 7


def test_multi_source_batches_and_matches_single_source_runs(tmp_path, video_file, image_folder):
    second_video = tmp_path / "second.mp4"
    write_video(second_video, 9, size=(48, 64))
    sources = [video_file, image_folder, second_video]
    for index, source in enumerate(sources):
        run_stream(FakeSegmenter(), source, masks_dir=tmp_path / f"single{index}")
    batched = FakeSegmenter(delay_s=0.01, max_batch=2)
    stats = run_stream(batched, sources, tmp_path / "multi.mp4", masks_dir=tmp_path / "multi")
    assert max(batched.batch_sizes) == 2 and batched.batch_sizes[2] > 0
    assert stats.max_batch_seen == 2 and stats.processed == 12 + 5 + 9 and stats.balanced
    for index in range(3):
        single, multi = read_masks(tmp_path / f"single{index}"), read_masks(tmp_path / "multi" / str(index))
        assert list(single) == list(multi)
        for name in single:
            np.testing.assert_array_equal(single[name], multi[name])
    frame_counts = [count_video_frames(tmp_path / f"multi_{index}.mp4") for index in range(3)]
    assert frame_counts == [12, 5, 9]
    assert not (tmp_path / "multi.mp4").exists()


def test_any_batch_size_takes_one_frame_per_source(tmp_path):
    segmenter = FakeSegmenter(delay_s=0.01)
    stats = run_stream(segmenter, ["synthetic:20@0"] * 3, masks_dir=tmp_path / "m")  # unpaced: frames wait
    assert max(segmenter.batch_sizes) == 3 and stats.processed == 60


def test_source_that_cannot_be_opened_names_it_and_writes_nothing(tmp_path, fake_segmenter):
    bogus = tmp_path / "broken.mp4"
    bogus.write_bytes(b"not a video" * 50)
    with pytest.raises(SourceError, match="broken.mp4"):
        run_stream(fake_segmenter, ["synthetic:3", bogus], tmp_path / "out.mp4")
    with pytest.raises(SourceError, match="nothing-here"):
        run_stream(fake_segmenter, tmp_path / "nothing-here", tmp_path / "out.mp4")
    assert not list(tmp_path.glob("out*.mp4"))


class ExplodingSegmenter(FakeSegmenter):
    def predict(self, frames):
        if self.calls >= 3:
            raise RuntimeError("boom in predict")
        return super().predict(frames)


def test_worker_exception_is_reraised_and_video_finalised(tmp_path):
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="boom in predict"):
        run_stream(ExplodingSegmenter(), "synthetic", tmp_path / "out.mp4", stats_path=tmp_path / "stats.json")
    assert time.perf_counter() - started < 10
    assert count_video_frames(tmp_path / "out.mp4") == 3
    data = json.loads((tmp_path / "stats.json").read_text())
    assert "boom in predict" in data["error"]
    assert data["total"]["read"] == data["total"]["processed"] + data["total"]["dropped"]


class BrokenSink(FakeSegmenter):
    def overlay(self, frame, mask, alpha=0.5):
        raise ValueError("overlay broke")


def test_output_thread_exception_is_reraised(tmp_path):
    with pytest.raises(ValueError, match="overlay broke"):
        run_stream(BrokenSink(), "synthetic", tmp_path / "out.mp4")


@pytest.mark.parametrize("kwargs, match", [({"mode": "fast"}, "mode"), ({"alpha": 1.5}, "alpha"),
                                           ({"max_frames": 0}, "max_frames"), ({"queue_size": 0}, "queue_size")])
def test_bad_options_are_config_errors(tmp_path, fake_segmenter, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        run_stream(fake_segmenter, "synthetic:2", tmp_path / "out.mp4", **kwargs)


def test_output_must_be_an_mp4(tmp_path, fake_segmenter):
    with pytest.raises(ConfigError, match="out.avi"):
        run_stream(fake_segmenter, "synthetic:2", tmp_path / "out.avi")


def test_display_without_screen_warns_and_runs(tmp_path, fake_segmenter, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        stats = run_stream(fake_segmenter, "synthetic:4", tmp_path / "out.mp4", display=True)
    assert "--display ignored: no screen (DISPLAY is not set)" in caplog.text
    assert stats.processed == 4
