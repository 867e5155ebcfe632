from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import EvalTransform, TrainTransform
from edgeseg.errors import ConfigError

# Far-apart colours so bilinear blends are never mistaken for another class.
COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 255, 255]], np.uint8)


def blocky_pair(rng, h=60, w=80, cell=6):
    """Label of random blocks (with an asymmetric layout) and an image whose colour encodes it."""
    small = rng.integers(0, len(COLOURS), (h // cell + 1, w // cell + 1))
    label = np.repeat(np.repeat(small, cell, 0), cell, 1)[:h, :w].astype(np.uint8)
    return COLOURS[label], label


def decode(image):
    distance = ((image[:, :, None, :].astype(int) - COLOURS[None, None].astype(int)) ** 2).sum(-1)
    return distance.argmin(-1)


def interior(label):
    """Pixels whose 3x3 neighbourhood has one label (not at a class edge) and which are not padding."""
    padded = np.pad(label, 1, mode="edge")
    same = np.ones(label.shape, bool)
    for dy in range(3):
        for dx in range(3):
            same &= padded[dy : dy + label.shape[0], dx : dx + label.shape[1]] == label
    return same & (label != 255)


@pytest.mark.parametrize("seed", range(12))
def test_train_transform_keeps_image_and_label_aligned(seed):
    rng = np.random.default_rng(seed)
    image, label = blocky_pair(rng, cell=10)  # blocks stay >= 3 px at the smallest scale (0.5 of 48x64)
    out_image, out_label = TrainTransform((48, 64), scale_range=(0.5, 2.0))(image, label, rng)
    assert out_image.shape == (48, 64, 3) and out_label.shape == (48, 64)
    assert out_image.dtype == np.uint8 and out_label.dtype == np.uint8
    keep = interior(out_label)
    assert keep.mean() > 0.05  # at scale 0.5 three quarters of the crop are padding
    np.testing.assert_array_equal(decode(out_image)[keep], out_label[keep])
    # padding: label 255 exactly where the image is the black pad (black is also class 0, so check one way)
    assert (out_image[out_label == 255] == 0).all()


def test_train_transform_is_deterministic_flips_and_pads():
    rng_image = np.random.default_rng(0)
    image, label = blocky_pair(rng_image)
    t = TrainTransform((48, 64))
    a = t(image, label, np.random.default_rng(7))
    b = t(image, label, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # scale 1 is the evaluation view (here the image's own size): the only change is the flip, for some seeds
    same = TrainTransform((60, 80), scale_range=(1, 1))
    outcomes = set()
    for seed in range(16):
        _, out = same(image, label, np.random.default_rng(seed))
        outcomes.add("flip" if np.array_equal(out, label[:, ::-1]) else "keep" if np.array_equal(out, label) else "?")
    assert outcomes == {"flip", "keep"}
    # scale is relative to out_size: scale 0.5 of 120x160 is the 60x80 image itself, padded bottom/right with
    # image 0 and label 255
    out_image, out_label = TrainTransform((120, 160), scale_range=(0.5, 0.5), flip=False)(
        image, label, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(out_label[:60, :80], label)
    assert (out_label[60:] == 255).all() and (out_label[:, 80:] == 255).all() and (out_image[60:] == 0).all()
    # scale 1 of a smaller out_size is the evaluation view: the whole image resized, as EvalTransform does it
    _, whole = TrainTransform((30, 40), scale_range=(1, 1), flip=False)(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(whole, EvalTransform((30, 40))(image, label)[1])


def test_eval_transform_resizes_aligned():
    rng = np.random.default_rng(3)
    image, label = blocky_pair(rng, 90, 120)
    out_image, out_label = EvalTransform((45, 60))(image, label, rng)
    assert out_image.shape == (45, 60, 3) and out_label.shape == (45, 60)
    keep = interior(out_label)
    np.testing.assert_array_equal(decode(out_image)[keep], out_label[keep])
    assert EvalTransform((90, 120))(image, label)[1] is label


def test_transform_arguments_are_checked():
    with pytest.raises(ConfigError, match="scale_range"):
        TrainTransform((8, 8), scale_range=(2.0, 1.0))
    with pytest.raises(ConfigError, match="out_size"):
        EvalTransform((0, 8))
    with pytest.raises(ConfigError, match="differ in size"):
        EvalTransform((8, 8))(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4), np.uint8))
