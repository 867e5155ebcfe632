"""`edgeseg run` with output paths it cannot use: refused before the model loads or a frame is read, exit status 2,
one "edgeseg run: error: ..." line naming the option, no traceback, and nothing that was there is lost."""

from __future__ import annotations

import json

import pytest

from edgeseg.cli import main, run_cmd

from .fakes import FakeSegmenter


@pytest.fixture
def opened(monkeypatch):
    """The models `edgeseg run` opened (a fake segmenter stands in for them)."""
    models = []

    def fake_open(model, backend, model_facts=None, tta=None):
        models.append(model)
        return FakeSegmenter()

    monkeypatch.setattr(run_cmd, "_open_segmenter", fake_open)
    return models


@pytest.fixture
def place(tmp_path):
    """A regular file and a folder with a file in it, both to be left as they are."""
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "inside.txt").write_text("keep me too")
    return tmp_path


def _unchanged(place) -> bool:
    return ((place / "notes.txt").read_text() == "keep me"
            and sorted(p.name for p in (place / "folder").iterdir()) == ["inside.txt"])


@pytest.mark.parametrize("flag, where, message", [
    ("--masks", "notes.txt", "--masks {p} is a file; --masks takes a folder"),
    ("--masks", "notes.txt/masks", "--masks {p}: cannot create this folder, {place}/notes.txt is a file, not a folder"),
    ("--stats", "folder", "--stats {p} is a folder; --stats takes a file name"),
    ("--stats", "notes.txt/stats.json", "--stats {p}: cannot create this file, {place}/notes.txt is a file"),
    ("--out", "folder", "--out {p} is a folder; --out takes a file name"),
    ("--out", "notes.txt/deeper/out.mp4", "--out {p}: cannot create this file, {place}/notes.txt is a file"),
])
def test_unusable_output_is_refused_before_anything_runs(opened, place, video_file, capsys, flag, where, message):
    path = place / where
    code = main(["run", "model.onnx", "--source", str(video_file), flag, str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("edgeseg run: error: " + message.format(p=path, place=place))
    assert "Traceback" not in err and opened == [] and _unchanged(place)


@pytest.mark.parametrize("flag, name", [("--masks", "masks"), ("--stats", "stats.json")])
def test_unwritable_location_is_refused(opened, video_file, capsys, flag, name):
    """/proc takes no new files, for root either (a chmod'ed folder would not stop root)."""
    code = main(["run", "model.onnx", "--source", str(video_file), flag, f"/proc/{name}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"edgeseg run: error: {flag} /proc/{name}: cannot write in /proc")
    assert opened == []


def test_writable_outputs_still_run(opened, place, video_file, capsys):
    """The checks leave no probe files behind and refuse nothing that works: a new nested folder, a file replaced."""
    stats = place / "notes.txt"  # an existing regular file is replaced (atomically), as before
    masks = place / "new" / "deeper" / "masks"
    assert main(["run", "model.onnx", "--source", str(video_file), "--masks", str(masks), "--stats", str(stats)]) == 0
    assert opened == ["model.onnx"] and len(list(masks.glob("*.png"))) == 12
    assert json.loads(stats.read_text())["total"]["processed"] == 12
    assert not list(place.glob(".edgeseg-probe-*")) and not list((place / "new").glob(".edgeseg-probe-*"))


def test_the_model_is_not_loaded_when_the_output_is_bad(tmp_path, capsys):
    """The output check comes first: a model file that would fail to load is never opened."""
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not an onnx model")
    (tmp_path / "masks").write_text("a file")
    code = main(["run", str(model), "--source", "synthetic:3", "--masks", str(tmp_path / "masks")])
    err = capsys.readouterr().err
    assert code == 2 and "--masks" in err and "not a loadable ONNX model" not in err
    assert (tmp_path / "masks").read_text() == "a file"
