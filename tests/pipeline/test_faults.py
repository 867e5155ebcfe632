from __future__ import annotations

import json
import logging

import cv2
import numpy as np

import pytest

from edgeseg.errors import ConfigError, SourceError
from edgeseg.pipeline.stream import Reconnect, run_stream

from .fakes import FakeSegmenter, FlakySource, count_video_frames, write_video

FAST = Reconnect(attempts=3, delay_s=0.01, factor=2.0, max_delay_s=0.05)


def test_reconnect_backoff_is_exponential_and_capped():
    policy = Reconnect(attempts=5, delay_s=0.5, factor=2.0, max_delay_s=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ConfigError, match="reconnect"):
        Reconnect(attempts=-1)


def test_live_source_that_fails_then_recovers_reconnects_and_continues(tmp_path, caplog):
    source = FlakySource(fail_after=5, recover=True, total=100)
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        stats = run_stream(FakeSegmenter(), [source], tmp_path / "out.mp4", masks_dir=tmp_path / "masks",
                           reconnect=FAST, max_frames=15)
    assert "read failed" in caplog.text and "reconnecting in" in caplog.text and "reconnected after 1" in caplog.text
    assert source.opens == 2
    assert stats.sources[0].reconnects == 1 and stats.sources[0].status == "limit"
    assert stats.processed == stats.read == 15 and stats.balanced
    assert len(list((tmp_path / "masks").glob("*.png"))) == 15
    assert count_video_frames(tmp_path / "out.mp4") == 15


def test_live_source_that_never_recovers_is_lost_while_others_go_on(tmp_path, caplog):
    source = FlakySource(fail_after=5, recover=False)
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        stats = run_stream(FakeSegmenter(), [source, "synthetic:20"], tmp_path / "out.mp4", reconnect=FAST,
                           stats_path=tmp_path / "stats.json")
    lost, other = stats.sources
    assert lost.status == "lost" and "lost: no frame after 3 reconnect attempt(s)" in lost.message
    assert lost.message in caplog.text and caplog.text.count("reopening failed") == 3
    assert (lost.read, lost.processed) == (5, 5) and lost.reconnects == 0
    assert other.status == "ended" and other.processed == 20
    assert stats.balanced and stats.lost_sources == [lost]
    assert count_video_frames(tmp_path / "out_0.mp4") == 5 and count_video_frames(tmp_path / "out_1.mp4") == 20


def test_reopen_that_succeeds_but_reads_keep_failing_still_gives_up(tmp_path):
    class DeadAfterReopen(FlakySource):
        def _read(self):
            return None if self.opens > 1 else super()._read()

    source = DeadAfterReopen(fail_after=3, recover=True)
    stats = run_stream(FakeSegmenter(), [source], masks_dir=tmp_path / "m", reconnect=FAST)
    assert stats.sources[0].status == "lost" and source.opens == 4 and stats.processed == 3


def test_live_source_whose_read_raises_is_reconnected(tmp_path, caplog):
    class Raising(FlakySource):
        def _read(self):
            if self._next_index == self.fail_after and not self.failed:
                self.failed = True
                raise RuntimeError("driver hiccup")
            return super()._read()

    source = Raising(fail_after=4, recover=True)
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        stats = run_stream(FakeSegmenter(), [source], masks_dir=tmp_path / "m", reconnect=FAST, max_frames=10)
    assert "read failed (RuntimeError: driver hiccup)" in caplog.text
    assert stats.processed == 10 and stats.sources[0].reconnects == 1 and stats.balanced


def test_file_source_errors_are_not_swallowed(tmp_path, video_file):
    from edgeseg.pipeline.sources import VideoFileSource

    class Broken(VideoFileSource):
        def _read(self):
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run_stream(FakeSegmenter(), [Broken(video_file)], masks_dir=tmp_path / "m")


def test_outputs_that_are_inputs_are_refused_before_anything_is_written(tmp_path, fake_segmenter):
    from edgeseg.errors import OutputPathError

    video = tmp_path / "in.mp4"
    write_video(video, frames=5)
    original = video.read_bytes()
    with pytest.raises(OutputPathError, match="--out .* is the --source .*: writing it would destroy an input"):
        run_stream(fake_segmenter, str(video), video)
    with pytest.raises(OutputPathError, match="--stats .* is the --source .*: writing it would destroy an input"):
        run_stream(fake_segmenter, str(video), tmp_path / "out.mp4", stats_path=video)
    assert video.read_bytes() == original and not (tmp_path / "out.mp4").exists()

    folder = tmp_path / "images"
    folder.mkdir()
    frame = np.full((16, 16, 3), 200, np.uint8)
    cv2.imwrite(str(folder / "a.png"), frame)
    before = (folder / "a.png").read_bytes()
    with pytest.raises(OutputPathError, match="--masks .* is the --source"):
        run_stream(fake_segmenter, str(folder), masks_dir=folder)
    assert (folder / "a.png").read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["a.png"]


def test_stats_written_through_a_symlink_keep_the_link(tmp_path, fake_segmenter):
    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    run_stream(fake_segmenter, "synthetic", tmp_path / "out.mp4", stats_path=link, max_frames=3)
    assert link.is_symlink() and json.loads(target.read_text())["total"]["processed"] == 3


def test_a_video_cut_short_is_reported_as_ended_early(tmp_path, fake_segmenter):
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(40):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the AVI header still lists 40 frames
    complete = run_stream(fake_segmenter, str(whole), masks_dir=tmp_path / "m1").sources[0]
    assert complete.status == "ended" and complete.read == 40
    short = run_stream(fake_segmenter, str(cut), masks_dir=tmp_path / "m2").sources[0]
    assert short.status == "ended_early" and 0 < short.read < 40
    assert f"{short.read} of the 40 frames" in short.message


class _LateSource(FlakySource):
    """A live source whose first `late` opens fail (a camera still booting, a stream not yet published)."""

    def __init__(self, late: int) -> None:
        super().__init__(fail_after=10_000, total=5)
        self.late = late
        self.refused = 0

    def _open(self) -> None:
        self.opens += 1
        if self.opens <= self.late:
            self.refused += 1
            raise SourceError(f"{self.description} not up yet")


def test_a_live_source_that_fails_its_first_open_is_retried_with_backoff(tmp_path, fake_segmenter):
    source = _LateSource(late=2)
    stats = run_stream(fake_segmenter, source, masks_dir=tmp_path / "m",
                       reconnect=Reconnect(attempts=3, delay_s=0.01))
    assert source.refused == 2 and stats.sources[0].processed == 5
    with pytest.raises(SourceError, match="not up yet"):
        run_stream(fake_segmenter, _LateSource(late=5), masks_dir=tmp_path / "m2",
                   reconnect=Reconnect(attempts=2, delay_s=0.01))


def test_stall_timeout_bounds_network_open_and_read(monkeypatch):
    from edgeseg.pipeline import sources

    calls = []

    class _Capture:
        def __init__(self, *args):
            calls.append(args)

        def isOpened(self):
            return True

        def get(self, prop):
            return 0.0

        def release(self):
            pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", _Capture)
    source = sources.open_source("rtsp://127.0.0.1:8554/cam", stall_timeout_s=2.5)
    source.open()
    target, api, params = calls[0]
    assert target == "rtsp://127.0.0.1:8554/cam" and api == cv2.CAP_FFMPEG
    assert dict(zip(params[::2], params[1::2])) == {cv2.CAP_PROP_OPEN_TIMEOUT_MSEC: 2500,
                                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC: 2500}
    with pytest.raises(SourceError, match="stall timeout must be > 0"):
        sources.open_source("rtsp://127.0.0.1:8554/cam", stall_timeout_s=0)
