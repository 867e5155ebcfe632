"""`edgeseg run --confidence DIR` and `--view confidence` with a real (tiny, hand-built ONNX) model, checked against
float64 softmax of the model's logits computed in numpy, and the refusal for models that end in argmax."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg.cli import main

from tests.runtime.onnx_graphs import random_scene, reference_logits, write_pixel_classifier
from tests.runtime.ops_cases import softmax_confidence_f64

pytest.importorskip("onnxruntime")

SIZE = (24, 32)  # the model's input size; the images are that size, so the resize is the identity


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(11)
    frames = {}
    for name in ("a", "b", "c"):
        frames[name] = random_scene(rng, *SIZE)
        cv2.imwrite(str(folder / f"{name}.png"), frames[name])
    return folder, frames


def test_confidence_pngs_match_float64_softmax_and_are_named_like_the_masks(tmp_path, images, capsys):
    folder, frames = images
    model = write_pixel_classifier(tmp_path / "m.onnx", input_size=SIZE)
    code = main(["run", str(model), "--source", str(folder), "--masks", str(tmp_path / "masks"),
                 "--confidence", str(tmp_path / "conf")])
    assert code == 0, capsys.readouterr().err
    assert f"confidence: {tmp_path / 'conf'}" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "conf").iterdir()) == sorted(p.name for p in (tmp_path / "masks").iterdir())
    for name, frame in frames.items():
        conf = cv2.imread(str(tmp_path / "conf" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(tmp_path / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        logits = reference_logits(frame, SIZE)
        assert conf.dtype == np.uint8 and conf.shape == frame.shape[:2]
        assert np.abs(conf.astype(float) - softmax_confidence_f64(logits)).max() <= 1
        assert np.array_equal(mask, logits.argmax(0))


def test_confidence_pngs_are_at_the_frame_size(tmp_path, capsys):
    model = write_pixel_classifier(tmp_path / "m.onnx", input_size=SIZE)
    code = main(["run", str(model), "--source", "synthetic:3", "--confidence", str(tmp_path / "conf")])
    assert code == 0, capsys.readouterr().err
    written = sorted((tmp_path / "conf").glob("*.png"))
    assert len(written) == 3
    first = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    assert first.ndim == 2 and first.shape != SIZE and first.max() > first.min()  # the synthetic frames' size


def test_view_confidence_is_the_heat_map_of_the_confidence(tmp_path, images, capsys):
    folder, frames = images
    model = write_pixel_classifier(tmp_path / "m.onnx", input_size=SIZE)
    code = main(["run", str(model), "--source", str(folder / "a.png"), "--view", "confidence",
                 "--out", str(tmp_path / "v.png"),
                 "--confidence", str(tmp_path / "conf")])
    assert code == 0, capsys.readouterr().err
    picture = cv2.imread(str(tmp_path / "v.png"))
    conf = cv2.imread(str(tmp_path / "conf" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(picture, cv2.applyColorMap(conf, cv2.COLORMAP_INFERNO))


def test_models_ending_in_argmax_are_refused_before_anything_is_written(tmp_path, images, capsys):
    folder, _ = images
    model = write_pixel_classifier(tmp_path / "m.onnx", input_size=SIZE, argmax=True)
    for extra in (["--confidence", str(tmp_path / "conf")], ["--view", "confidence", "--out", str(tmp_path / "o.mp4")]):
        code = main(["run", str(model), "--source", str(folder), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("edgeseg run: error:") and "without --argmax" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "conf").exists() and not (tmp_path / "o.mp4").exists()


def test_confidence_onto_the_masks_folder_is_refused(tmp_path, images, capsys):
    folder, _ = images
    model = write_pixel_classifier(tmp_path / "m.onnx", input_size=SIZE)
    code = main(["run", str(model), "--source", str(folder), "--masks", str(tmp_path / "same"),
                 "--confidence", str(tmp_path / "same")])
    err = capsys.readouterr().err
    assert code == 2 and "--confidence" in err and "are the same path" in err
    code = main(["run", str(model), "--source", str(folder), "--confidence", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and f"--confidence {folder}" in err and "input" in err
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png", "c.png"]  # nothing written


def test_confidence_view_legend_is_the_colour_scale():
    from edgeseg.pipeline.views import View
    from edgeseg.runtime.plan import ProcessingPlan

    heat = ProcessingPlan.heatmap(np.full((200, 300), 128, np.uint8))
    picture = View("confidence", legend=True).compose(np.zeros((200, 300, 3), np.uint8), {"confidence_heatmap": heat})
    assert View("confidence").renders == ["confidence_heatmap"] and View("confidence").needs_confidence
    changed = np.argwhere((picture != heat).any(axis=2))
    assert changed[:, 1].min() > 200  # drawn at the top right only
    top_colour, bottom_colour = ProcessingPlan.heatmap(np.array([[255, 0]], np.uint8))[0]
    column = picture[8:128, changed[:, 1].min()]  # the bar's first column: 100 % at the top, 0 % at the bottom
    assert np.array_equal(column[0], top_colour) and np.array_equal(column[-1], bottom_colour)
