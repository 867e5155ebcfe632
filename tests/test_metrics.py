"""Metrics against hand-computed confusion matrices and the FCN paper's formulas written out in float64."""

import numpy as np
import pytest

from edgeseg.errors import DataError
from edgeseg.metrics import MetricAccumulator, confusion_matrix, scores_from_confusion


def test_confusion_matrix_by_hand():
    label = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    # (true, pred) pairs, the void pixel excluded: (0,0) (0,1) (1,1) (1,1) (2,0)
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_array_equal(confusion_matrix(label, pred, 3), expected)


def test_scores_by_hand():
    conf = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    scores = scores_from_confusion(conf, ["a", "b", "c"], num_images=1)
    # pixel acc: 3 hits / 5 labelled pixels
    assert scores.pixel_acc == pytest.approx(3 / 5)
    # mean acc: (1/2 + 2/2 + 0/1) / 3
    assert scores.mean_acc == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # IoU: a: 1/(2+2-1)=1/3, b: 2/(2+3-2)=2/3, c: 0/(1+0-0)=0
    iou = [1 / 3, 2 / 3, 0.0]
    assert scores.miou == pytest.approx(np.mean(iou))
    assert scores.fwiou == pytest.approx((2 * iou[0] + 2 * iou[1] + 1 * iou[2]) / 5)
    assert scores.per_class_iou == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 0.0})


def test_random_against_float64_formulas():
    rng = np.random.default_rng(0)
    k = 5
    accumulator = MetricAccumulator([str(i) for i in range(k)], ignore_index=255)
    labels, preds = [], []
    for _ in range(4):
        label = rng.integers(0, k, (17, 23)).astype(np.uint8)
        label[rng.random(label.shape) < 0.1] = 255
        pred = np.where(rng.random(label.shape) < 0.6, label, rng.integers(0, k, label.shape)).astype(np.uint8)
        pred[pred == 255] = 0
        accumulator.update(label, pred)
        labels.append(label.ravel())
        preds.append(pred.ravel())
    label, pred = np.concatenate(labels), np.concatenate(preds)
    keep = label != 255
    label, pred = label[keep].astype(int), pred[keep].astype(int)
    n = np.zeros((k, k), np.float64)
    for t, p in zip(label, pred):  # the slow, obvious way
        n[t, p] += 1
    t_i = n.sum(1)
    iou = [n[i, i] / (t_i[i] + n[:, i].sum() - n[i, i]) for i in range(k)]
    scores = accumulator.scores()
    assert scores.num_images == 4
    assert scores.pixel_acc == pytest.approx(np.trace(n) / n.sum())
    assert scores.mean_acc == pytest.approx(np.mean([n[i, i] / t_i[i] for i in range(k)]))
    assert scores.miou == pytest.approx(np.mean(iou))
    assert scores.fwiou == pytest.approx(sum(t_i[i] * iou[i] for i in range(k)) / t_i.sum())


def test_absent_class_is_left_out_of_means():
    label = np.array([[0, 0, 1, 1]])
    scores = scores_from_confusion(confusion_matrix(label, label, 3), ["a", "b", "c"])
    assert np.isnan(scores.per_class_iou["c"])
    assert scores.miou == pytest.approx(1.0)
    assert scores.mean_acc == pytest.approx(1.0)


def test_ignore_only_pixels_count_nowhere():
    label = np.full((3, 3), 255, np.uint8)
    label[0, 0] = 1
    pred = np.zeros((3, 3), np.uint8)
    pred[0, 0] = 1
    assert confusion_matrix(label, pred, 2).sum() == 1


def test_bad_labels_raise():
    with pytest.raises(DataError, match="outside 0..2"):
        confusion_matrix(np.array([[0, 7]]), np.array([[0, 0]]), 3)
    with pytest.raises(DataError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)
