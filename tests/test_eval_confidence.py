"""`edgeseg eval --out`: the scores per confidence bin (confidence_bins.json / .png) of a real (tiny ONNX) model,
against per-bin confusion matrices built by hand from float64 softmax of the model's logits."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgeseg.cli import main
from tests.runtime.onnx_graphs import CLASSES, reference_logits, write_pixel_classifier
from tests.runtime.ops_cases import softmax_confidence_f64

pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")

SIZE = (32, 48)  # the model's input size and the images' size: the resize is the identity, the logits exact
BLOCK = 8
BINS = 10


def _bin(q: np.ndarray) -> np.ndarray:
    return np.minimum(np.asarray(q, np.int64) * BINS // 255, BINS - 1)


def _colours(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """BGR colours whose float64 confidence is at least 1 LSB away from a bin edge, so the kernels' 1-LSB rounding
    cannot move their pixels to another bin, with confidences spread over several bins."""
    found: list[np.ndarray] = []
    seen_bins: set[int] = set()
    while len(found) < count:
        colour = rng.integers(0, 256, 3).astype(np.uint8)
        q = softmax_confidence_f64(reference_logits(np.full((*SIZE, 3), colour, np.uint8), SIZE))[0, 0]
        if _bin(q - 1) == _bin(q) == _bin(min(q + 1, 255)) and (int(_bin(q)) not in seen_bins or len(seen_bins) >= 4):
            found.append(colour)
            seen_bins.add(int(_bin(q)))
    return found


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("eval_confidence")
    for sub in ("images", "labels"):
        (root / "data" / "val" / sub).mkdir(parents=True)
    (root / "data" / "classes.json").write_text(json.dumps({"classes": list(CLASSES)}))
    model = write_pixel_classifier(root / "model.onnx", input_size=SIZE)
    colours = np.array(_colours(rng, 10))
    flip_rate = rng.uniform(0.0, 0.6, len(colours))  # how often each colour's label disagrees with the model
    expected = np.zeros((BINS, len(CLASSES), len(CLASSES)), np.int64)
    for i in range(4):
        picks = rng.integers(0, len(colours), (SIZE[0] // BLOCK, SIZE[1] // BLOCK))
        which = np.kron(picks, np.ones((BLOCK, BLOCK), int))
        frame = colours[which]
        logits = reference_logits(frame, SIZE)
        pred = logits.argmax(0)
        label = pred.copy()
        flip = rng.random(SIZE) < flip_rate[which]
        label[flip] = (pred[flip] + rng.integers(1, len(CLASSES), int(flip.sum()))) % len(CLASSES)
        label[rng.random(SIZE) < 0.05] = 255
        cv2.imwrite(str(root / "data" / "val" / "images" / f"img{i}.png"), frame)
        cv2.imwrite(str(root / "data" / "val" / "labels" / f"img{i}.png"), label.astype(np.uint8))
        keep = label != 255
        bins = _bin(softmax_confidence_f64(logits))
        np.add.at(expected, (bins[keep], label[keep], pred[keep]), 1)
    out = root / "out"
    assert main(["eval", str(model), "--data", str(root / "data"), "--out", str(out)]) == 0
    return root, out, expected


def test_scores_per_confidence_bin_by_hand(case):
    _, out, expected = case
    report = json.loads((out / "confidence_bins.json").read_text())
    bins = report["bins"]
    assert len(bins) == BINS and report["classes"] == list(CLASSES)
    assert sum(int(m.sum() > 0) for m in expected) >= 3  # the case spreads over several bins
    total = expected.sum()
    for k, (got, n) in enumerate(zip(bins, expected.astype(np.float64))):
        assert got["confidence_from"] == pytest.approx(k / BINS) and got["confidence_to"] == pytest.approx((k + 1) / BINS)
        assert got["pixels"] == int(n.sum())
        if n.sum() == 0:
            assert got["pixel_acc"] is None and got["miou"] is None and got["pixel_share"] == 0.0
            continue
        rows, cols, hits = n.sum(1), n.sum(0), np.diag(n)
        union = rows + cols - hits
        assert got["pixel_share"] == pytest.approx(n.sum() / total, abs=1e-12)
        assert got["pixel_acc"] == pytest.approx(hits.sum() / n.sum(), abs=1e-12)
        assert got["miou"] == pytest.approx(np.mean(hits[union > 0] / union[union > 0]), abs=1e-12)
        for c, name in enumerate(CLASSES):
            want = None if union[c] == 0 else pytest.approx(hits[c] / union[c], abs=1e-12)
            assert got["per_class_iou"][name] == want


def test_the_chart_is_written_next_to_the_other_pictures(case):
    _, out, _ = case
    chart = cv2.imread(str(out / "confidence_bins.png"))
    assert chart is not None and chart.shape[0] > 300 and chart.shape[1] > 500
    for name in ("scores.json", "confusion.json", "confusion.png", "per_class.png"):
        assert (out / name).is_file()


def test_models_ending_in_argmax_skip_the_bins_and_say_why(tmp_path, case, capsys):
    root, _, _ = case
    model = write_pixel_classifier(tmp_path / "argmax.onnx", input_size=SIZE, argmax=True)
    out = tmp_path / "out"
    assert main(["eval", str(model), "--data", str(root / "data"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "scores.json").is_file() and not (out / "confidence_bins.json").exists()
    assert "without --argmax" in printed
