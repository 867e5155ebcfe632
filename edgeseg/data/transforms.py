"""Joint image/label augmentation with numpy and OpenCV only, deterministic given a numpy Generator.

Images are resized bilinearly (INTER_LINEAR), labels with INTER_NEAREST_EXACT: nearest neighbour using the same
pixel-centre convention as INTER_LINEAR. (Plain INTER_NEAREST samples floor(x * scale), half a source pixel off
the bilinear grid when shrinking, so label edges would drift from image edges.)
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeseg.config import IGNORE_INDEX, size_hw
from edgeseg.data.photometric import PhotometricDistortion
from edgeseg.errors import ConfigError

_LABEL_INTERP = cv2.INTER_NEAREST_EXACT


def _size(out_size) -> tuple[int, int]:
    return size_hw(out_size, "out_size")


def _resize(image: np.ndarray, label: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    if image.shape[:2] == (h, w):
        return image, label
    return (
        cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR),
        cv2.resize(label, (w, h), interpolation=_LABEL_INTERP),
    )


def _check_pair(image: np.ndarray, label: np.ndarray) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise ConfigError(f"image {image.shape} and label {label.shape} differ in size")


class TrainTransform:
    """Random scale in `scale_range` -> random crop to `out_size` (padding image 0, label 255) -> random h-flip
    -> optional photometric distortion of the image (edgeseg.data.photometric; padding stays 0).

    The scale is relative to the evaluation view (the whole image resized to `out_size`, as EvalTransform and the
    runtime do), not to the source file: scale 1 is exactly what the model sees at inference, so a 360x480 dataset
    trained at 180x240 sees objects at the sizes it will meet, zoomed 0.5-2x.

    `__call__(image, label, rng)` draws, in this order: scale, crop y, crop x, flip, then the photometric amounts;
    the same rng state gives the same output, and without `photometric` the same output as before it existed.
    """

    def __init__(
        self, out_size: tuple[int, int], scale_range: tuple[float, float] = (0.5, 2.0), flip: bool = True,
        photometric: PhotometricDistortion | None = None,
    ) -> None:
        self.out_size = _size(out_size)
        lo, hi = (float(v) for v in scale_range)
        if not 0 < lo <= hi:
            raise ConfigError(f"scale_range must be 0 < low <= high, got {scale_range!r}")
        self.scale_range = (lo, hi)
        self.flip = bool(flip)
        self.photometric = photometric

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        _check_pair(image, label)
        out_h, out_w = self.out_size
        scale = rng.uniform(*self.scale_range)
        h, w = max(1, round(out_h * scale)), max(1, round(out_w * scale))
        image, label = _resize(image, label, h, w)
        pad_h, pad_w = max(0, out_h - h), max(0, out_w - w)
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE_INDEX)
        y = int(rng.integers(0, image.shape[0] - out_h + 1))
        x = int(rng.integers(0, image.shape[1] - out_w + 1))
        image, label = image[y : y + out_h, x : x + out_w], label[y : y + out_h, x : x + out_w]
        flip = self.flip and rng.random() < 0.5
        if self.photometric is not None:
            # on the crop (the fewest pixels), then the padding back to 0: it is not part of the scene
            image = self.photometric(np.ascontiguousarray(image), rng)
            if pad_h or pad_w:  # then `image` is a new array (copyMakeBorder), never the dataset's own
                image[max(0, h - y):, :] = 0
                image[:, max(0, w - x):] = 0
        if flip:
            image, label = image[:, ::-1], label[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(label)

    def __repr__(self) -> str:
        return (f"TrainTransform(out_size={self.out_size}, scale_range={self.scale_range}, flip={self.flip}, "
                f"photometric={self.photometric})")


class EvalTransform:
    """Resize to `out_size` (image bilinear, label nearest); no randomness (`rng` is accepted and unused)."""

    def __init__(self, out_size: tuple[int, int]) -> None:
        self.out_size = _size(out_size)

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        _check_pair(image, label)
        return _resize(image, label, *self.out_size)

    def __repr__(self) -> str:
        return f"EvalTransform(out_size={self.out_size})"
