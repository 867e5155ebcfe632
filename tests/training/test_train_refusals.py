"""Issue 18's training cases that were silently wrong or ended in a traceback: each is now refused before the first
training step (the `no_training` fixture fails the test if a step runs), exit 2, one line naming what to change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeseg.cli import main

from test_train_bad_input import _fails_cleanly, _train, _tree, _write_sample, make_dataset, no_training  # noqa: F401

torch = pytest.importorskip("torch")


def test_negative_seed_is_refused_by_name(tmp_path, capsys, no_training):
    data = make_dataset(tmp_path / "data")
    _fails_cleanly(capsys, _train(tmp_path, data, "--seed", "-1"), "--seed must be in 0..", "got -1")
    assert not (tmp_path / "run").exists()


def test_batch_of_one_at_the_smallest_size_names_batch_norm(tmp_path, capsys, no_training):
    """16x16 is the documented minimum: with --batch-size 1 the stride-32 features are one pixel, which BatchNorm
    cannot normalise in training (torch: 'Expected more than 1 value per channel')."""
    data = make_dataset(tmp_path / "data", size=(16, 16))
    argv = _train(tmp_path, data, "--image-size", "16", "16", "--batch-size", "1")
    _fails_cleanly(capsys, argv, "--batch-size 1 at --image-size 16 16", "BatchNorm", "--batch-size 2")
    # the same size with two images per step trains (the check is not simply "16x16 is refused")
    from edgeseg.training.trainer import _check_batch_norm_fits
    from edgeseg.models import build_model

    _check_batch_norm_fits(build_model("fcn8s_mobilenetv3", num_classes=3), 2, (16, 16))


@pytest.mark.parametrize("voided, split", [(("val",), "val"), (("train", "val"), "train")])
def test_labels_that_are_all_void_are_refused_naming_the_split(tmp_path, capsys, no_training, voided, split):
    data = make_dataset(tmp_path / "data")
    for name in voided:
        for label in (data / name / "labels").glob("*.png"):
            _write_sample(data, name, label.stem, np.full((24, 32), 255, np.uint8))
    before = _tree(data)
    _fails_cleanly(capsys, _train(tmp_path, data), f"every label of the {split} split is void")
    assert _tree(data) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize("classes, message", [
    ("abcdefgh", "'classes' must be a list of class names, got str 'abcdefgh'"),
    (["road", "car", "road"], "['road'] appear more than once"),
    (["road", "", "sky"], "class names must be non-empty strings"),
    (["road", 7, "sky"], "class names must be non-empty strings, got 7"),
])
def test_classes_json_must_be_a_list_of_distinct_names(tmp_path, capsys, no_training, classes, message):
    data = make_dataset(tmp_path / "data")
    (data / "classes.json").write_text(json.dumps({"classes": classes}))
    err = _fails_cleanly(capsys, _train(tmp_path, data), message)
    assert str(data / "classes.json") in err


def test_classes_json_palette_count_must_match(tmp_path, capsys, no_training):
    data = make_dataset(tmp_path / "data")
    (data / "classes.json").write_text(json.dumps({"classes": ["a", "b", "c"], "palette_rgb": [[0, 0, 0]] * 2}))
    _fails_cleanly(capsys, _train(tmp_path, data), "lists 3 classes but 2 palette_rgb colours")


def _last_pt(out: Path, *, model: str = "fcn8s_mobilenetv3", classes=("c0", "c1", "c2"), size=(32, 32),
             drop: str | None = None) -> Path:
    """A last.pt as training writes it (weights of `model`, meta, epoch 0), optionally without one meta field."""
    from edgeseg.config import make_meta
    from edgeseg.models import build_model
    from edgeseg.training.checkpoint import save_checkpoint

    meta = make_meta(model, classes, size)
    path = save_checkpoint(out / "last.pt", build_model(model, num_classes=len(classes)), meta, epoch=0)
    if drop is not None:
        payload = torch.load(path, weights_only=True)
        del payload["meta"][drop]
        torch.save(payload, path)
    return path


@pytest.mark.parametrize("case, message", [
    ("image_size", "was trained at --image-size 48 48, not 32 32"),
    ("model", "holds fcn16s_mobilenetv3, not --model fcn8s_mobilenetv3"),
    ("classes", "was trained on classes ['c0', 'c1', 'c2', 'c3']"),
    ("no_model_name", "it lacks model_name"),
])
def test_resume_refuses_a_last_pt_that_differs(tmp_path, capsys, no_training, case, message):
    data = make_dataset(tmp_path / "data")
    out = tmp_path / "run"
    out.mkdir()
    kwargs = {"image_size": {"size": (48, 48)}, "model": {"model": "fcn16s_mobilenetv3"},
              "classes": {"classes": ("c0", "c1", "c2", "c3")}, "no_model_name": {"drop": "model_name"}}[case]
    last = _last_pt(out, **kwargs)
    before = last.read_bytes()
    err = _fails_cleanly(capsys, _train(tmp_path, data, "--resume", "--epochs", "3", out=out), "--resume", message)
    assert str(last) in err
    assert last.read_bytes() == before


# ----- checkpoints that are not what eval/export need --------------------------------------------------------------
def test_a_state_dict_that_is_a_tensor_is_a_clear_error(tmp_path, capsys):
    from edgeseg.config import make_meta

    bad = tmp_path / "tensor_state.pt"
    torch.save({"format": "edgeseg-checkpoint", "version": 1, "meta": make_meta("fcn8s_mobilenetv3", ["a", "b"],
               (32, 32)).to_dict(), "state_dict": torch.zeros(3)}, bad)
    for argv in (["export", str(bad), "--out", str(tmp_path / "e")],
                 ["eval", str(bad), "--data", "synthetic", "--limit", "1"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
        assert f"checkpoint {bad}: its 'state_dict' is a Tensor, not a dict of named weights" in err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("kind", ["garbage", "onnx"])
def test_a_corrupt_pt_or_an_onnx_file_is_named_as_not_a_checkpoint(tmp_path, capsys, kind):
    path = tmp_path / ("model.onnx" if kind == "onnx" else "best.pt")
    if kind == "onnx":  # a real ONNX model given where export wants the checkpoint
        onnx = pytest.importorskip("onnx")
        graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                       [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                       [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
        onnx.save(onnx.helper.make_model(graph), str(path))
    else:
        path.write_bytes(b"junk")
    code = main(["export", str(path), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err  # one line, not torch's seven
    assert "not an EdgeSeg checkpoint (corrupt, or an ONNX file: export needs the .pt that train wrote)" in err
    assert "weights_only=False" not in err and "file an issue" not in err
