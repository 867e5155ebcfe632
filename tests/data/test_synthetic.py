from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from edgeseg.data import (
    SYNTHETIC_INFO,
    SyntheticScenes,
    open_dataset,
    synthetic_frames,
    validate_dataset,
    write_synthetic_folder,
    write_synthetic_video,
)
from edgeseg.errors import ConfigError


def test_data_package_does_not_import_torch():
    code = "import sys, edgeseg.data; sys.exit('torch' in sys.modules)"
    import subprocess

    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_same_seed_split_index_gives_same_pixels():
    a, b = SyntheticScenes(4, seed=3), SyntheticScenes(4, seed=3)
    for i in (0, 3):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
    # random access order does not matter
    np.testing.assert_array_equal(SyntheticScenes(4, seed=3)[3][0], a[3][0])


def test_train_val_and_seeds_differ():
    train, val, other = SyntheticScenes(2, split="train"), SyntheticScenes(2, split="val"), SyntheticScenes(2, seed=1)
    assert not np.array_equal(train[0][0], val[0][0])
    assert not np.array_equal(train[0][0], other[0][0])
    assert not np.array_equal(train[0][0], train[1][0])


def test_samples_are_well_formed_and_every_class_appears():
    ds = SyntheticScenes(24, size=(96, 128))
    seen = np.zeros(len(SYNTHETIC_INFO.classes), int)
    for image, label in ds:
        assert image.shape == (96, 128, 3) and image.dtype == np.uint8
        assert label.shape == (96, 128) and label.dtype == np.uint8
        assert label.max() < ds.num_classes
        seen += np.bincount(label.ravel(), minlength=ds.num_classes)
    assert (seen > 0).all(), dict(zip(SYNTHETIC_INFO.classes, seen, strict=True))
    assert validate_dataset(ds, limit=4) == 4


def test_colour_alone_does_not_give_the_class():
    # Mean colour per class varies a lot across scenes: cars and buildings have no fixed colour.
    ds = SyntheticScenes(16)
    means = {1: [], 5: []}
    for image, label in ds:
        for cls in means:
            if (label == cls).sum() > 50:
                means[cls].append(image[label == cls].mean(0))
    for cls, values in means.items():
        assert np.std(np.array(values), axis=0).max() > 20, SYNTHETIC_INFO.classes[cls]


def test_defaults_and_open_dataset():
    assert len(SyntheticScenes()) == 512 and len(SyntheticScenes(split="val")) == 64
    ds = open_dataset("synthetic", "val", synthetic_size=(64, 80), synthetic_count=5)
    assert len(ds) == 5 and ds[0][0].shape == (64, 80, 3) and ds.split == "val"
    assert ds.name_of(-1) == "synthetic_val_00004"
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(ConfigError, match="32x32"):
        SyntheticScenes(2, size=(8, 8))


def test_frames_and_video(tmp_path):
    frames = list(synthetic_frames(6, (64, 96), seed=2))
    assert len(frames) == 6 and frames[0].shape == (64, 96, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[5])  # the camera moves
    np.testing.assert_array_equal(frames[3], list(synthetic_frames(6, (64, 96), seed=2))[3])
    path = write_synthetic_video(tmp_path / "clip.mp4", 6, (64, 96), fps=10, seed=2)
    cap = cv2.VideoCapture(str(path))
    read = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        read.append(frame)
    cap.release()
    assert len(read) == 6 and read[0].shape == (64, 96, 3)
    # lossy codec: close to the generated frames, not equal
    assert np.abs(read[2].astype(int) - frames[2].astype(int)).mean() < 20


def test_synthetic_folder_round_trip(tmp_path):
    root = write_synthetic_folder(tmp_path / "synth", 3, (48, 64), seed=5, val_count=2)
    train, val = open_dataset(root, "train"), open_dataset(root, "val")
    assert (len(train), len(val)) == (3, 2)
    assert train.info == SYNTHETIC_INFO
    reference = SyntheticScenes(3, (48, 64), seed=5)
    for i in range(3):
        np.testing.assert_array_equal(train[i][0], reference[i][0])
        np.testing.assert_array_equal(train[i][1], reference[i][1])
        assert train.name_of(i) == reference.name_of(i)
    assert validate_dataset(val) == 2
