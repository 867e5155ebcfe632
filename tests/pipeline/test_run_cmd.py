"""`edgeseg run` with the fake segmenter in place of the Segmenter (a real model: the lead's integration test)."""

from __future__ import annotations

import argparse
import json
import logging

import pytest

from edgeseg.cli import CommandParser, run_cmd
from edgeseg.errors import ConfigError, SourceError
from edgeseg.pipeline.sources import jetson_csi_pipeline

from .fakes import FakeSegmenter, count_video_frames


@pytest.fixture
def cli(monkeypatch):
    opened = []

    def fake_open(model, backend, model_facts=None, tta=None):
        opened.append((model, backend))
        return FakeSegmenter()

    monkeypatch.setattr(run_cmd, "_open_segmenter", fake_open)
    parser = argparse.ArgumentParser(prog="edgeseg")
    run_cmd.add_parser(parser.add_subparsers(parser_class=CommandParser))  # as edgeseg.cli builds it

    def invoke(*argv):
        args = parser.parse_args(["run", *map(str, argv)])
        return args.func(args)

    invoke.opened = opened
    invoke.parser = parser
    return invoke


def test_run_video_writes_outputs_and_prints_summary(cli, tmp_path, video_file, capsys):
    code = cli("model.onnx", "--source", video_file, "--out", tmp_path / "out.mp4", "--masks", tmp_path / "masks",
               "--stats", tmp_path / "stats.json", "--alpha", "0.3")
    printed = capsys.readouterr().out
    assert code == 0 and cli.opened == [("model.onnx", "auto")]
    assert "12 frame(s) processed from 1 source(s)" in printed and str(tmp_path / "out.mp4") in printed
    assert f"masks in {tmp_path / 'masks'}" in printed and f"stats: {tmp_path / 'stats.json'}" in printed
    assert count_video_frames(tmp_path / "out.mp4") == 12 and len(list((tmp_path / "masks").glob("*.png"))) == 12
    assert json.loads((tmp_path / "stats.json").read_text())["total"]["processed"] == 12


def test_run_several_sources_realtime_with_limits(cli, tmp_path, capsys):
    code = cli("m.onnx", "--source", "synthetic", "--source", "synthetic:5", "--out", tmp_path / "o.mp4",
               "--mode", "realtime", "--max-frames", "8", "--queue-size", "2")
    assert code == 0  # synthetic sources are live-like: realtime mode may drop their frames
    assert 1 <= count_video_frames(tmp_path / "o_0.mp4") <= 8 and 1 <= count_video_frames(tmp_path / "o_1.mp4") <= 5
    printed = capsys.readouterr().out
    assert "read 13," in printed and "[0] synthetic:" in printed and "(limit)" in printed


def test_display_without_screen_warns(cli, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        assert cli("m.onnx", "--source", "synthetic:3", "--display", "--out", tmp_path / "o.mp4") == 0
    assert "--display ignored: no screen" in caplog.text


@pytest.mark.parametrize("argv, match", [
    (["--source", "synthetic:3"], "nothing to write"),
    (["--source", "synthetic:3", "--out", "o.mp4", "--alpha", "2"], "--alpha"),
    (["--source", "synthetic:3", "--out", "o.mp4", "--max-frames", "0"], "--max-frames"),
    (["--source", "synthetic:3", "--out", "o.mp4", "--reconnect-attempts", "-1"], "--reconnect"),
])
def test_bad_flags_are_config_errors(cli, argv, match):
    with pytest.raises(ConfigError, match=match):
        cli("m.onnx", *argv)


def test_missing_source_is_a_source_error_naming_it(cli, tmp_path):
    with pytest.raises(SourceError, match="missing.mp4"):
        cli("m.onnx", "--source", tmp_path / "missing.mp4", "--out", tmp_path / "o.mp4")


def test_help_documents_sources_and_the_jetson_csi_template(cli, capsys):
    with pytest.raises(SystemExit):
        cli("--help")
    text = capsys.readouterr().out
    assert jetson_csi_pipeline() in text
    for flag in ("--mode", "--display", "--stats", "--max-frames", "--queue-size", "--masks", "--alpha",
                 "--view-http"):
        assert flag in text
    assert "out_0.mp4" in text and "rtsp://" in text and "synthetic[:N][@FPS]" in text
    assert "(default 30; @0: as fast" in " ".join(text.split())  # synthetic's pace
    assert "after N frames READ (processed + dropped + unreadable)" in " ".join(text.split())


def test_lost_source_exits_1(cli, tmp_path, monkeypatch, capsys):
    from edgeseg.pipeline import stream

    from .fakes import FlakySource

    real_open_source = stream.open_source
    monkeypatch.setattr(stream, "open_source", lambda spec, **kw: FlakySource(2, recover=False) if spec == "flaky"
                        else real_open_source(spec, **kw))
    code = cli("m.onnx", "--source", "flaky", "--out", tmp_path / "o.mp4", "--reconnect-attempts", "1",
               "--reconnect-delay", "0.01")
    assert code == 1 and "warning: source 0" in capsys.readouterr().out


def test_pipeline_and_run_command_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, edgeseg.pipeline.stream, edgeseg.cli.run_cmd; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
