"""The real CamVid copy next to the repository (../shared/data/camvid), when it is there."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.data import open_dataset, validate_dataset

CAMVID = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "camvid"

pytestmark = [
    pytest.mark.camvid,
    pytest.mark.skipif(not CAMVID.is_dir(), reason=f"CamVid not present at {CAMVID}"),
]


def test_camvid_splits_and_classes():
    train, val = open_dataset(CAMVID, "train"), open_dataset(CAMVID, "val")
    assert (len(train), len(val)) == (367, 101)
    assert train.num_classes == 11 and train.info.classes[0] == "sky" and train.info.ignore_index == 255
    assert train.info.palette[3] == (128, 64, 128)


def test_camvid_void_becomes_255():
    val = open_dataset(CAMVID, "val")
    for index in (0, 50):
        image, label = val[index]
        raw = cv2.imread(str(CAMVID / "val" / "labels" / f"{val.name_of(index)}.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (360, 480, 3) and label.shape == (360, 480)
        np.testing.assert_array_equal(label, np.where(raw == 11, 255, raw))
        assert not (label == 11).any()
    assert validate_dataset(val, limit=10) == 10
