"""Inputs and checks shared by the CPU (test_ops.py) and CUDA (test_ops_cuda.py) kernel tests."""

from __future__ import annotations

import numpy as np

from edgeseg.runtime import ops_reference as ref

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# (frame H, W) -> (model h, w): odd sizes, 1x1, up and down.
RESIZE_CASES = [((37, 53), (128, 160)), ((1, 1), (5, 7)), ((480, 360), (128, 160)), ((128, 160), (37, 53)),
                ((360, 480), (512, 1024)), ((100, 100), (50, 50)), ((2, 3), (1, 1))]

# (C, h, w, stride, (H, W)): full size and crops where the model padded its input to a multiple of 32.
UPSAMPLE_CASES = [(11, 12, 16, 32, (360, 480)), (19, 23, 31, 16, (360, 481)), (19, 45, 61, 8, (360, 480)),
                  (11, 16, 32, 32, (512, 1024)), (5, 7, 9, 8, (56, 72)), (3, 1, 1, 8, (8, 8)), (2, 5, 6, 1, (5, 6))]


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


def lsb(std: tuple[float, float, float] = STD) -> np.ndarray:
    """One uint8 step after normalisation, per channel, shaped for (1, 3, h, w)."""
    return (1.0 / 255.0 / np.asarray(std)).reshape(1, 3, 1, 1)


def cv2_preprocess(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = size
    rgb = cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_LINEAR)[..., ::-1].astype(np.float64)
    return ((rgb / 255.0 - np.asarray(MEAN)) / np.asarray(STD)).transpose(2, 0, 1)[None]


def check_upsample_argmax(got: np.ndarray, logits: np.ndarray, stride: int, size: tuple[int, int]) -> None:
    """>= 99.99% agreement with the float64 reference, and exact where the top-2 margin is > 1e-4."""
    up = ref.upsample_bilinear(logits, stride, size)
    want = np.argmax(up, axis=0)
    top2 = np.sort(up, axis=0)[-2:] if up.shape[0] > 1 else np.concatenate([up - np.inf, up])
    margin = top2[1] - top2[0]
    differ = got != want
    assert not np.any(differ & (margin > 1e-4)), f"{int(np.sum(differ & (margin > 1e-4)))} clear-margin pixels differ"
    assert 1.0 - differ.mean() >= 0.9999, f"agreement {1.0 - differ.mean():.6f} < 99.99%"
