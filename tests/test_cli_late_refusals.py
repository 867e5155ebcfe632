"""Issue 18 cases checked too late or named too little: a Triton --url port out of range, a prediction PNG with an
id beyond the classes (which file?), and `demo` checking its --out and --video only after minutes of training."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from edgeseg.cli import main


@pytest.mark.parametrize("command", [["run", "m", "--source", "synthetic:1", "--masks", "unused"],
                                     ["bench", "m", "--json", "unused.json"], ["eval", "m", "--data", "synthetic"]])
def test_a_url_port_beyond_65535_is_refused(command, capsys):
    code = main([*command, "--backend", "triton", "--url", "127.0.0.1:99999"])
    err = capsys.readouterr().err
    assert code == 2 and "with PORT in 1..65535" in err and "'127.0.0.1:99999'" in err, err


def test_a_prediction_png_with_an_id_beyond_the_classes_is_named(tmp_path, capsys):
    data, pred = tmp_path / "data", tmp_path / "pred"
    for split in ("images", "labels"):
        (data / "val" / split).mkdir(parents=True)
    pred.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(data / "val" / "images" / f"{name}.png"), np.zeros((8, 8, 3), np.uint8))
        cv2.imwrite(str(data / "val" / "labels" / f"{name}.png"), np.ones((8, 8), np.uint8))
        cv2.imwrite(str(pred / f"{name}.png"), np.full((8, 8), 9 if name == "b" else 1, np.uint8))
    (data / "classes.json").write_text(json.dumps({"classes": ["x", "y", "z"]}))
    assert main(["eval", "--pred", str(pred), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"prediction {pred / 'b.png'}" in err and "[9] outside 0..2" in err, err


def _demo(tmp_path, *extra: str) -> list[str]:
    return ["demo", "--epochs", "1", "--image-size", "32", "32", "--workers", "0", *extra]


@pytest.fixture
def no_training(monkeypatch):
    from edgeseg.training import trainer

    def refuse(*_args, **_kwargs):
        raise AssertionError("training started before the bad option was reported")

    monkeypatch.setattr(trainer, "train", refuse)
    monkeypatch.setattr(trainer, "_train_step", refuse)


@pytest.mark.parametrize("case", ["out_is_a_file", "out_under_proc", "missing_video", "undecodable_video",
                                  "zero_video_frames", "zero_epochs"])
def test_demo_checks_everything_before_training(tmp_path, capsys, no_training, case):
    pytest.importorskip("torch")
    a_file = tmp_path / "a_file"
    a_file.write_bytes(b"keep me")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    argv, message = {
        "out_is_a_file": (["--out", str(a_file)], f"--out {a_file} is a file"),
        "out_under_proc": (["--out", "/proc/edgeseg-demo"], "--out /proc/edgeseg-demo: cannot write in /proc"),
        "missing_video": (["--out", str(tmp_path / "d"), "--video", str(tmp_path / "nope.mp4")], "is not a file"),
        "undecodable_video": (["--out", str(tmp_path / "d"), "--video", str(broken)], "cannot be decoded"),
        "zero_video_frames": (["--out", str(tmp_path / "d"), "--video-frames", "0"], "--video-frames must be >= 1"),
        "zero_epochs": (["--out", str(tmp_path / "d"), "--epochs", "0"], "--epochs must be >= 1"),
    }[case]
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir() if p.is_file()}
    code = main([*_demo(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "d").exists()
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir() if p.is_file()} == before
