from __future__ import annotations

import colorsys

import cv2
import numpy as np
import pytest

from edgeseg.data import TrainTransform
from edgeseg.data.photometric import (
    PhotometricDistortion,
    PhotometricParams,
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    blur_kernel_size,
    gaussian_blur,
    shift_hue,
)
from edgeseg.errors import ConfigError, DataError


@pytest.fixture
def image(rng):
    """A smooth gradient plus noise: every level 0..255 occurs, and colours of every hue."""
    h, w = 24, 40
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / (w - 1), yy * 255 / (h - 1), (xx + yy) * 255 / (h + w - 2)], -1)
    return np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)


def grey_rgb(image, order):
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if order == "rgb" else cv2.COLOR_BGR2GRAY)


@pytest.mark.parametrize("delta", [-40.0, -7.5, 0.0, 12.3, 90.0])
def test_brightness_matches_opencv_saturating_add(image, delta):
    expected = cv2.addWeighted(image, 1.0, image, 0.0, delta)  # saturate_cast(x + delta), rounded
    np.testing.assert_array_equal(adjust_brightness(image, delta), expected)


@pytest.mark.parametrize("order", ["rgb", "bgr"])
@pytest.mark.parametrize("factor", [0.0, 0.4, 1.0, 1.7])
def test_contrast_blends_with_the_mean_grey(image, order, factor):
    mean = grey_rgb(image, order).mean()
    expected = cv2.addWeighted(image, factor, image, 0.0, (1 - factor) * mean)
    got = adjust_contrast(image, factor, order)
    assert np.abs(got.astype(int) - expected).max() <= 1  # OpenCV computes in float32, the table in float64
    assert (got == expected).mean() > 0.99
    if factor == 0.0:
        assert np.unique(got).size == 1 and abs(int(got[0, 0, 0]) - mean) <= 0.5


@pytest.mark.parametrize("order", ["rgb", "bgr"])
@pytest.mark.parametrize("factor", [0.0, 0.5, 1.0, 1.8])
def test_saturation_blends_each_pixel_with_its_grey(image, order, factor):
    grey = grey_rgb(image, order).astype(np.float64)[..., None]
    expected = np.clip(np.rint(factor * image + (1 - factor) * grey), 0, 255)
    got = adjust_saturation(image, factor, order)
    assert np.abs(got - expected).max() <= 1
    if factor == 0.0:  # all grey: three equal channels
        assert (got == got[..., :1]).all()
    if factor == 1.0:
        np.testing.assert_array_equal(got, image)


def test_hue_by_hand_and_channel_order():
    red_rgb = np.array([[[255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(shift_hue(red_rgb, 60), [[[0, 255, 0]]])  # +120 degrees: red -> green
    np.testing.assert_array_equal(shift_hue(red_rgb, -60), [[[0, 0, 255]]])  # -120 degrees: red -> blue
    np.testing.assert_array_equal(shift_hue(red_rgb[..., ::-1].copy(), 60, "bgr"), [[[0, 255, 0]]])
    grey = np.full((2, 2, 3), 77, np.uint8)
    np.testing.assert_array_equal(shift_hue(grey, 33), grey)  # no hue to turn


@pytest.mark.parametrize("order", ["rgb", "bgr"])
@pytest.mark.parametrize("delta", [-45, -10, 7, 30, 90])
def test_hue_matches_a_float64_hsv_rotation(image, order, delta):
    rgb = image if order == "rgb" else image[..., ::-1]
    expected = np.empty(rgb.shape, np.float64)
    for (y, x), _ in np.ndenumerate(rgb[..., 0]):
        h, s, v = colorsys.rgb_to_hsv(*(rgb[y, x] / 255.0))
        expected[y, x] = colorsys.hsv_to_rgb((h + delta / 180.0) % 1.0, s, v)
    expected *= 255
    got = shift_hue(np.ascontiguousarray(image), delta, order).astype(np.float64)
    got = got if order == "rgb" else got[..., ::-1]
    error = np.abs(got - expected)
    # 8-bit HSV keeps H in 2-degree steps and S in 1/255 steps: a few levels off in the worst pixel, <1 on average
    assert error.mean() < 1.0 and error.max() <= 6


def gaussian_reference(image, sigma):
    """float64 separable Gaussian, reflect-101 border (numpy's 'reflect'), same kernel size rule."""
    k = blur_kernel_size(sigma)
    r = k // 2
    taps = np.exp(-((np.arange(k) - r) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    x = np.pad(image.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
    rows = sum(taps[i] * x[i : i + image.shape[0]] for i in range(k))
    out = sum(taps[i] * rows[:, i : i + image.shape[1]] for i in range(k))
    return out


@pytest.mark.parametrize("sigma", [0.3, 0.8, 1.5, 2.2])
def test_blur_is_opencv_gaussian_blur(image, sigma):
    got = gaussian_blur(image, sigma)
    k = blur_kernel_size(sigma)
    np.testing.assert_array_equal(got, cv2.GaussianBlur(image, (k, k), sigma))
    assert np.abs(got - gaussian_reference(image, sigma)).max() <= 1.0  # OpenCV's 8-bit path is fixed point


def test_distortion_with_every_op_forced_equals_the_ops_in_order(image):
    d = PhotometricDistortion(brightness=10, contrast=(1.3, 1.3), saturation=(0.6, 0.6), hue=5,
                              blur_sigma=(0.7, 0.7), p=1.0, blur_p=1.0)
    rng = np.random.default_rng(5)
    params = d.draw(rng)
    assert -10 <= params.brightness <= 10 and params.contrast == 1.3 and params.blur_sigma == 0.7
    expected = gaussian_blur(shift_hue(adjust_saturation(adjust_contrast(adjust_brightness(
        image, params.brightness), 1.3), 0.6), params.hue), 0.7)
    np.testing.assert_array_equal(d.apply(image, params), expected)
    np.testing.assert_array_equal(d(image, np.random.default_rng(5)), expected)  # __call__ = apply(draw)
    off = PhotometricDistortion(p=0.0, blur_p=0.0)
    assert off.draw(rng) == PhotometricParams()
    np.testing.assert_array_equal(off(image, rng), image)


def test_draw_consumes_a_fixed_number_of_values():
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    PhotometricDistortion(p=0.0, blur_p=0.0).draw(a)
    PhotometricDistortion(p=1.0, blur_p=1.0).draw(b)
    assert a.random() == b.random()


def test_bad_options_and_images(image):
    with pytest.raises(ConfigError, match="contrast"):
        PhotometricDistortion(contrast=(1.5, 0.5))
    with pytest.raises(ConfigError, match="hue"):
        PhotometricDistortion(hue=100)
    with pytest.raises(ConfigError, match="blur_sigma"):
        PhotometricDistortion(blur_sigma=(0.0, 1.0))
    with pytest.raises(ConfigError, match="probability"):
        PhotometricDistortion(p=1.5)
    with pytest.raises(ConfigError, match="order"):
        PhotometricDistortion(order="hsv")
    with pytest.raises(DataError, match="uint8 H x W x 3"):
        adjust_brightness(image.astype(np.float32), 3)
    with pytest.raises(ConfigError, match="sigma must be > 0"):
        gaussian_blur(image, 0)


def test_train_transform_photometric_changes_only_the_image_and_keeps_padding_black(image, rng):
    label = rng.integers(0, 5, image.shape[:2]).astype(np.uint8)
    # no flip: cv2.cvtColor HSV rounds a pixel differently once it moves to another SIMD lane (1 level)
    plain = TrainTransform((24, 40), scale_range=(0.5, 0.7), flip=False)
    strong = PhotometricDistortion(brightness=60, contrast=(1.2, 1.2), saturation=(1.5, 1.5), hue=20,
                                   p=1.0, blur_p=0.0)
    jittered = TrainTransform((24, 40), scale_range=(0.5, 0.7), flip=False, photometric=strong)
    for seed in range(8):
        img0, lab0 = plain(image, label, np.random.default_rng(seed))
        img1, lab1 = jittered(image, label, np.random.default_rng(seed))
        np.testing.assert_array_equal(lab1, lab0)  # same geometry: photometric draws come after scale/crop/flip
        pad = lab0 == 255
        assert pad.any() and (img1[pad] == 0).all()
        assert not np.array_equal(img1[~pad], img0[~pad])
        # the distortion of the plain crop (its padding re-blackened) is the jittered output
        params = strong.draw(_rng_after_geometry(seed, flip=False))
        expected = strong.apply(img0, params)
        expected[pad] = 0
        np.testing.assert_array_equal(img1, expected)


def _rng_after_geometry(seed, flip):
    """A Generator advanced past TrainTransform's geometric draws (scale, crop y, crop x, flip)."""
    rng = np.random.default_rng(seed)
    rng.uniform(0.5, 0.7)
    rng.integers(0, 1)  # the crops: scale < 1 pads to exactly the output size, so each range is 0..0
    rng.integers(0, 1)
    if flip:
        rng.random()
    return rng
