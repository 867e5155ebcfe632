"""Inputs and checks shared by the CPU (test_ops.py) and CUDA (test_ops_cuda.py) kernel tests."""

from __future__ import annotations

import numpy as np

from edgeseg.runtime import ops_reference as ref

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# (frame H, W) -> (model h, w): odd sizes, 1x1, up and down, 1-pixel-wide/high frames, large ratios both ways and
# near-identity sizes (where cv2's float32 coordinates and our exact ones differ most often).
RESIZE_CASES = [((37, 53), (128, 160)), ((1, 1), (5, 7)), ((480, 360), (128, 160)), ((128, 160), (37, 53)),
                ((360, 480), (512, 1024)), ((100, 100), (50, 50)), ((2, 3), (1, 1)), ((1, 41), (9, 13)),
                ((41, 1), (13, 9)), ((1, 1), (1, 1)), ((3, 2000), (700, 5)), ((1080, 1920), (17, 31)),
                ((5, 7), (1000, 1201)), ((641, 479), (640, 480))]

# (C, h, w, stride, (H, W)): full size and crops where the model padded its input to a multiple of 32, 1-pixel
# logits, and strides whose weights are not exact in binary (3, 5, 7).
UPSAMPLE_CASES = [(11, 12, 16, 32, (360, 480)), (19, 23, 31, 16, (360, 481)), (19, 45, 61, 8, (360, 480)),
                  (11, 16, 32, 32, (512, 1024)), (5, 7, 9, 8, (56, 72)), (3, 1, 1, 8, (8, 8)), (2, 5, 6, 1, (5, 6)),
                  (4, 5, 7, 3, (15, 20)), (3, 9, 1, 5, (41, 5)), (2, 1, 13, 7, (7, 90))]

# Sizes where cv2's float32 coordinates are exact, so our resize equals cv2.resize bit for bit: identity, 2x down
# (cv2 switches to INTER_AREA there, which gives the same numbers), binary-fraction ratios.
CV2_EXACT_CASES = [((360, 480), (360, 480)), ((720, 1280), (360, 640)), ((1080, 1920), (360, 480)),
                   ((1080, 1920), (512, 1024)), ((37, 53), (74, 106)), ((1, 1), (5, 7))]


def frame(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def palette(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.integers(0, 256, (k, 3), dtype=np.uint8)


def mask(rng: np.random.Generator, h: int, w: int, k: int) -> np.ndarray:
    """Class ids 0..k-1 with some void (255) and out-of-range (k) pixels."""
    m = rng.integers(0, k, (h, w), dtype=np.uint8)
    m[rng.random((h, w)) < 0.05] = 255
    m[rng.random((h, w)) < 0.02] = min(k, 255)
    return m


def logits(rng: np.random.Generator, shape: tuple[int, ...], dtype, values: str) -> np.ndarray:
    """'normal' values, 'ties' (small integers: many exact ties before and after interpolation) or 'nan' (normal
    values with NaN and +-inf pixels, which turn neighbouring interpolated values into NaN)."""
    if values == "ties":
        return rng.integers(-2, 2, shape).astype(dtype)
    out = (3 * rng.standard_normal(shape)).astype(dtype)
    if values == "nan":
        flat = out.reshape(-1)
        picks = rng.choice(flat.size, size=max(1, flat.size // 50), replace=False)
        flat[picks[0::3]] = np.nan
        flat[picks[1::3]] = np.inf
        flat[picks[2::3]] = -np.inf
    return out


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes: NaN payloads and the sign of zero count."""
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def cv2_resize_nchw(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.resize INTER_LINEAR to (h, w), as RGB (1, 3, h, w) uint8."""
    import cv2

    h, w = size
    return cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_LINEAR)[..., ::-1].transpose(2, 0, 1)[None]


def check_upsample_argmax(got: np.ndarray, logits: np.ndarray, stride: int, size: tuple[int, int]) -> None:
    """>= 99.99% agreement with the float64 reference, and exact where the top-2 margin is > 1e-4."""
    up = ref.upsample_bilinear(logits, stride, size)
    want = np.argmax(up, axis=0)
    top2 = np.sort(up, axis=0)[-2:] if up.shape[0] > 1 else np.concatenate([up - np.inf, up])
    margin = top2[1] - top2[0]
    differ = got != want
    assert not np.any(differ & (margin > 1e-4)), f"{int(np.sum(differ & (margin > 1e-4)))} clear-margin pixels differ"
    assert 1.0 - differ.mean() >= 0.9999, f"agreement {1.0 - differ.mean():.6f} < 99.99%"


def softmax_confidence_f64(values: np.ndarray) -> np.ndarray:
    """Independent float64 reference: round(255 * max_c softmax(values)_c) over axis 0, as float64 (NaN stays NaN)."""
    v = np.asarray(values, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(v - v.max(axis=0))
        p = e.max(axis=0) / e.sum(axis=0)
    return np.floor(255.0 * p + 0.5)


def check_confidence(got: np.ndarray, values: np.ndarray) -> None:
    """uint8 confidence within 1 LSB of float64 softmax at every pixel whose values are all finite."""
    want = softmax_confidence_f64(values)
    finite = np.isfinite(np.asarray(values, np.float64)).all(axis=0)
    assert got.dtype == np.uint8 and got.shape == want.shape
    diff = np.abs(got.astype(np.float64) - want)[finite]
    assert diff.size == 0 or diff.max() <= 1, f"{int(np.sum(diff > 1))} pixels more than 1 LSB off (max {diff.max()})"
