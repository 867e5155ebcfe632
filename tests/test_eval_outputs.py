"""`edgeseg eval --out DIR` / `--json`: the scores, confusion matrix and pictures against hand-built references.

The model is a hand-built 1x1-conv ONNX pixel classifier (no torch); images are made at the model's input size out
of pure colours, so its masks are the argmax of a float64 numpy computation. The expected confusion matrix is built
from those masks and the labels with np.add.at, independently of edgeseg.metrics.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.config import META_KEY, make_meta
from edgeseg.metrics import format_score

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")

CLASSES = ("red", "green", "blue", "dark")
RED, GREEN, BLUE, DARK = range(4)
SIZE_HW = (32, 48)
BLOCK = 8
# BGR pure colours the classifier sends to each class
COLOURS_BGR = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0], [0, 0, 0]], np.uint8)
WEIGHT = np.array([[2, -1, -1], [-1, 2, -1], [-1, -1, 2], [-1, -1, -1]], np.float32)  # classes x RGB
BIAS = np.array([0.0, 0.0, 0.0, -0.5], np.float32)


def _write_classifier(path):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "W", "B"], ["logits"])], "pixel_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, *SIZE_HW])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4, *SIZE_HW])],
        [numpy_helper.from_array(WEIGHT.reshape(4, 3, 1, 1), "W"), numpy_helper.from_array(BIAS, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {META_KEY: make_meta("pixel_classifier", CLASSES, SIZE_HW).to_json()})
    onnx.save(model, str(path))
    return path


def _reference_mask(frame_bgr):
    """float64: RGB in [0, 1], ImageNet normalisation, 1x1 conv, argmax (the frame is already the input size)."""
    meta = make_meta("x", CLASSES, SIZE_HW)
    x = (frame_bgr[:, :, ::-1] / 255.0 - np.array(meta.mean)) / np.array(meta.std)
    logits = np.einsum("kc,hwc->khw", WEIGHT.astype(np.float64), x) + BIAS[:, None, None]
    return logits.argmax(0).astype(np.uint8)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A folder dataset (val, 5 images), the model, its masks and the hand-built confusion matrix.

    Labels follow the masks except: 30 % of non-red pixels get another non-red class, 20 % of red pixels become
    green, 10 % of pixels are void (255), and 'blue' never occurs in the labels. So 'red' is predicted perfectly
    (its row is all on the diagonal), 'blue' has an empty row (accuracy n/a) but a non-empty column."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("eval_outputs")
    for sub in ("images", "labels"):
        (root / "data" / "val" / sub).mkdir(parents=True)
    (root / "data" / "classes.json").write_text(json.dumps({"classes": list(CLASSES)}))
    model = _write_classifier(root / "model.onnx")
    expected = np.zeros((4, 4), np.int64)
    masks = {}
    for i in range(5):
        blocks = rng.integers(0, 4, (SIZE_HW[0] // BLOCK, SIZE_HW[1] // BLOCK))
        frame = COLOURS_BGR[np.kron(blocks, np.ones((BLOCK, BLOCK), int))]
        mask = _reference_mask(frame)
        label = mask.copy()
        flip = (mask != RED) & (rng.random(mask.shape) < 0.3)
        label[flip] = rng.choice([GREEN, DARK], size=int(flip.sum()))
        label[(mask == RED) & (rng.random(mask.shape) < 0.2)] = GREEN
        label[label == BLUE] = DARK
        label[rng.random(mask.shape) < 0.1] = 255
        cv2.imwrite(str(root / "data" / "val" / "images" / f"img{i}.png"), frame)
        cv2.imwrite(str(root / "data" / "val" / "labels" / f"img{i}.png"), label)
        keep = label != 255
        np.add.at(expected, (label[keep].astype(int), mask[keep].astype(int)), 1)
        masks[f"img{i}"] = mask
    return root, model, masks, expected


def test_reference_masks_are_what_the_model_produces(case):
    from edgeseg.runtime.segmenter import Segmenter

    root, model, masks, expected = case
    with Segmenter(model, backend="onnxruntime") as seg:
        for name, mask in masks.items():
            frame = cv2.imread(str(root / "data" / "val" / "images" / f"{name}.png"))
            np.testing.assert_array_equal(seg.segment(frame), mask)
    assert len(np.unique(np.concatenate([m.ravel() for m in masks.values()]))) == 4  # every class is predicted
    assert expected[RED, RED] > 0 and expected[RED].sum() == expected[RED, RED] and expected[BLUE].sum() == 0


@pytest.fixture(scope="module")
def model_out(case):
    root, model, _, _ = case
    out, json_path = root / "out_model", root / "scores_flag.json"
    assert main(["eval", str(model), "--data", str(root / "data"), "--out", str(out), "--json", str(json_path)]) == 0
    return out, json_path


def test_confusion_json_is_the_hand_built_confusion(case, model_out):
    _, _, _, expected = case
    confusion = json.loads((model_out[0] / "confusion.json").read_text())
    assert confusion["classes"] == list(CLASSES)
    assert np.asarray(confusion["matrix"]).dtype.kind == "i"  # raw pixel counts, not fractions
    np.testing.assert_array_equal(np.asarray(confusion["matrix"]), expected)


def test_scores_json_per_class_by_hand(case, model_out):
    root, model, _, expected = case
    scores = json.loads((model_out[0] / "scores.json").read_text())
    n = expected.astype(np.float64)
    rows, cols, hits = n.sum(1), n.sum(0), np.diag(n)
    for i, name in enumerate(CLASSES):
        if rows[i] == 0:  # 'blue' never occurs in the labels: accuracy undefined, written as null
            assert scores["per_class_acc"][name] is None
        else:
            assert scores["per_class_acc"][name] == pytest.approx(hits[i] / rows[i], abs=1e-12)
        assert scores["per_class_iou"][name] == pytest.approx(hits[i] / (rows[i] + cols[i] - hits[i]), abs=1e-12)
    assert scores["per_class_acc"]["red"] == 1.0
    assert scores["per_class_iou"]["blue"] == 0.0  # predicted, never true
    assert scores["pixel_acc"] == pytest.approx(hits.sum() / n.sum(), abs=1e-12)
    assert scores["mean_acc"] == pytest.approx(np.mean([hits[i] / rows[i] for i in range(4) if rows[i]]), abs=1e-12)
    assert scores["miou"] == pytest.approx(np.mean(hits / (rows + cols - hits)), abs=1e-12)
    assert scores["classes"] == list(CLASSES)
    assert scores["num_images"] == 5 and scores["split"] == "val"
    assert scores["model"] == str(model) and scores["model_name"] == "pixel_classifier"
    assert scores["data"] == str(root / "data")
    # --json holds the same scores
    assert json.loads(model_out[1].read_text()) == scores


def test_pred_folder_gives_the_same_confusion(case, tmp_path, capsys):
    root, _, masks, expected = case
    pred = tmp_path / "pred"
    pred.mkdir()
    for name, mask in masks.items():
        cv2.imwrite(str(pred / f"{name}.png"), mask)
    out = tmp_path / "out"
    assert main(["eval", "--pred", str(pred), "--data", str(root / "data"), "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.asarray(json.loads((out / "confusion.json").read_text())["matrix"]), expected)
    scores = json.loads((out / "scores.json").read_text())
    assert scores["model"] is None and scores["pred"] == str(pred)
    printed = capsys.readouterr().out
    # people read percentages: the printed mIoU is format_score of the fraction in the JSON
    assert f"mIoU {format_score(scores['miou'])}" in printed
    assert f"{format_score(scores['per_class_acc']['green']):>9}" in printed


def test_pngs_decode_with_plausible_sizes(model_out):
    for name in ("confusion.png", "per_class.png"):
        image = cv2.imread(str(model_out[0] / name), cv2.IMREAD_COLOR)
        assert image is not None, name
        height, width, _ = image.shape
        assert 300 <= width <= 4000 and 300 <= height <= 4000, (name, image.shape)
        assert image.std() > 10  # not a blank canvas


def test_heat_map_cell_colours_follow_the_row_normalised_values(tmp_path):
    """Sample each cell of the saved PNG (off-centre, away from the printed value) at the cell position matplotlib
    drew it: the colour is the colour map's colour for the row-normalised value, so larger values are darker."""
    import matplotlib

    from edgeseg.accuracy_plots import HEATMAP_CMAP, confusion_figure, save_png

    conf = np.array([[50, 0, 0], [10, 30, 0], [0, 25, 75]])  # rows: 1 0 0 / .25 .75 0 / 0 .25 .75
    normalised = conf / conf.sum(1, keepdims=True)
    figure = confusion_figure(conf, ["a", "b", "c"], "test")
    path = save_png(figure, tmp_path / "confusion.png")
    ax = figure.axes[0]
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (round(figure.bbox.height), round(figure.bbox.width))
    cmap = matplotlib.colormaps[HEATMAP_CMAP]
    brightness = {}
    for (row, col), value in np.ndenumerate(normalised):
        x, y = ax.transData.transform((col - 0.3, row - 0.3))
        bgr = image[int(round(image.shape[0] - y)), int(round(x))].astype(int)
        expected_rgb = np.round(255 * np.array(cmap(value)[:3])).astype(int)
        np.testing.assert_allclose(bgr[::-1], expected_rgb, atol=3, err_msg=f"cell {row},{col} = {value}")
        brightness[(row, col)] = bgr.sum()
    # the perfectly predicted class's diagonal cell is darker than a 0.75 cell, which is darker than 0.25 and 0
    assert brightness[(0, 0)] < brightness[(1, 1)] < brightness[(1, 0)] < brightness[(0, 1)]


def test_out_that_is_a_file_is_refused_before_the_model_loads(case, tmp_path, capsys):
    root, _, _, _ = case
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    missing_model = tmp_path / "missing.onnx"  # were it loaded, the error would be about this file
    assert main(["eval", str(missing_model), "--data", str(root / "data"), "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "edgeseg eval: error: --out" in err and "is a file" in err and "Traceback" not in err
    assert main(["eval", str(missing_model), "--data", str(root / "data"), "--out", str(a_file / "sub")]) == 2
    assert "cannot create this folder" in capsys.readouterr().err
    assert a_file.read_text() == "x"


def test_outputs_never_replace_the_model_or_the_pred_folder(case, tmp_path, capsys):
    root, model, _, _ = case
    before = model.read_bytes()
    assert main(["eval", str(model), "--data", str(root / "data"), "--json", str(model)]) == 2
    assert f"--json {model} is the model {model}: writing it would destroy an input" in capsys.readouterr().err
    assert model.read_bytes() == before
    pred = tmp_path / "pred"
    pred.mkdir()
    assert main(["eval", "--pred", str(pred), "--data", str(root / "data"), "--out", str(pred)]) == 2
    assert f"--out {pred} is the --pred folder {pred}" in capsys.readouterr().err
    assert list(pred.iterdir()) == []


def test_missing_matplotlib_names_the_extra_before_the_model_loads(case, tmp_path, capsys, monkeypatch):
    root, _, _, _ = case
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib now fails
    out = tmp_path / "out"
    assert main(["eval", str(tmp_path / "missing.onnx"), "--data", str(root / "data"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "pip install 'edgeseg[" in err and "--out" in err
    assert not out.exists()


def test_export_report_table_prints_percentages_and_points():
    from edgeseg.export.report import format_table

    report = {"data": "d", "split": "val", "images": 3, "models": {
        "fp32": {"miou": 0.5302, "pixel_acc": 0.8811, "argmax_agreement": 1.0, "miou_drop_points": 0.0, "pass": True},
        "int8": {"miou": 0.5288, "pixel_acc": 0.8804, "argmax_agreement": 0.9871, "miou_drop_points": 0.14,
                 "pass": True},
    }}
    table = format_table(report)
    for row in report["models"].values():
        for key in ("miou", "pixel_acc", "argmax_agreement"):
            assert format_score(row[key], 2) in table
    assert "0.14 pt" in table and "53.02 %" in table


def test_json_under_a_file_is_refused_before_the_model_loads(case, tmp_path, capsys):
    root, _, _, _ = case
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert main(["eval", str(tmp_path / "missing.onnx"), "--data", str(root / "data"),
                 "--json", str(a_file / "scores.json")]) == 2
    assert "--json " + str(a_file / "scores.json") + ": cannot create this file" in capsys.readouterr().err
