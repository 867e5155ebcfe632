"""Photometric distortion of uint8 training images: brightness, contrast, saturation, hue, Gaussian blur.

Different drives differ in light, white balance, camera and focus far more than frames of one drive do, so a model
that only saw a few drives needs these to generalise to others. Each op is a pure function of (image, amount),
saturating to 0..255 and rounding to nearest like OpenCV's saturate_cast; `PhotometricDistortion` draws the
amounts from a numpy Generator and applies them. Only the image changes: labels are untouched.

- brightness: x + delta                                      (cv2.addWeighted(x, 1, x, 0, delta))
- contrast:   f * x + (1 - f) * mean grey of the image       (torchvision's adjust_contrast)
- saturation: f * x + (1 - f) * grey of the pixel            (torchvision's adjust_saturation)
- hue:        H + delta (mod 180) in OpenCV's 8-bit HSV (H in 0..179, 2 degrees per step), via cv2.cvtColor
- blur:       cv2.GaussianBlur with sigma, kernel 2 * ceil(3 sigma) + 1, reflect-101 border

Channel order matters for grey and hue: `order` is 'rgb' (what edgeseg.data's datasets give) or 'bgr' (OpenCV
frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edgeseg.errors import ConfigError, DataError

ORDERS = ("rgb", "bgr")
_GREY = {"rgb": cv2.COLOR_RGB2GRAY, "bgr": cv2.COLOR_BGR2GRAY}
_TO_HSV = {"rgb": cv2.COLOR_RGB2HSV, "bgr": cv2.COLOR_BGR2HSV}
_FROM_HSV = {"rgb": cv2.COLOR_HSV2RGB, "bgr": cv2.COLOR_HSV2BGR}
_LEVELS = np.arange(256, dtype=np.float64)


def _check(image: np.ndarray, order: str) -> None:
    if order not in ORDERS:
        raise ConfigError(f"channel order must be one of {ORDERS}, got {order!r}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"photometric ops take uint8 H x W x 3 images, got {image.dtype} {image.shape}")


def _lut(image: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Apply a per-level affine map through a 256-entry table (one table lookup per byte, any size image)."""
    return cv2.LUT(image, np.clip(np.rint(values), 0, 255).astype(np.uint8))


def adjust_brightness(image: np.ndarray, delta: float, order: str = "rgb") -> np.ndarray:
    """saturate(x + delta)."""
    _check(image, order)
    return _lut(image, _LEVELS + delta)


def adjust_contrast(image: np.ndarray, factor: float, order: str = "rgb") -> np.ndarray:
    """saturate(f * x + (1 - f) * m), m = the mean of the image's grey (cv2.cvtColor) levels."""
    _check(image, order)
    mean = float(cv2.cvtColor(image, _GREY[order]).mean())
    return _lut(image, factor * _LEVELS + (1.0 - factor) * mean)


def adjust_saturation(image: np.ndarray, factor: float, order: str = "rgb") -> np.ndarray:
    """saturate(f * x + (1 - f) * grey(x)) per pixel: 0 gives grey, 1 the image, > 1 stronger colours."""
    _check(image, order)
    grey = cv2.cvtColor(cv2.cvtColor(image, _GREY[order]), cv2.COLOR_GRAY2RGB)  # 3 equal channels: order-free
    return cv2.addWeighted(image, float(factor), grey, 1.0 - float(factor), 0.0)


def shift_hue(image: np.ndarray, delta: float, order: str = "rgb") -> np.ndarray:
    """Rotate hue by `delta` OpenCV hue steps (2 degrees each; 90 = half a turn) in 8-bit HSV and convert back."""
    _check(image, order)
    hsv = cv2.cvtColor(image, _TO_HSV[order])
    table = np.arange(256, dtype=np.int64)
    table[:180] = (table[:180] + int(round(delta))) % 180  # 8-bit H holds 0..179
    hsv[..., 0] = table.astype(np.uint8)[hsv[..., 0]]
    return cv2.cvtColor(hsv, _FROM_HSV[order])


def blur_kernel_size(sigma: float) -> int:
    """2 * ceil(3 sigma) + 1: the kernel covers +-3 sigma."""
    return 2 * math.ceil(3.0 * sigma) + 1


def gaussian_blur(image: np.ndarray, sigma: float, order: str = "rgb") -> np.ndarray:
    """cv2.GaussianBlur with `sigma` in both directions (blur_kernel_size) and the reflect-101 border."""
    _check(image, order)
    if not sigma > 0:
        raise ConfigError(f"blur sigma must be > 0, got {sigma}")
    k = blur_kernel_size(sigma)
    return cv2.GaussianBlur(image, (k, k), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT_101)


@dataclass(frozen=True)
class PhotometricParams:
    """The amounts drawn for one image; None = that op is skipped."""

    brightness: float | None = None
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None
    blur_sigma: float | None = None


@dataclass(frozen=True)
class PhotometricDistortion:
    """Random photometric distortion: each op applied with its probability, amounts uniform in their ranges.

    `draw(rng)` always consumes the same number of draws (two per op, in the order brightness, contrast,
    saturation, hue, blur), so a Generator's state after it does not depend on which ops fired. `apply` runs the
    ops in that same order."""

    brightness: float = 32.0  # delta in -b..b grey levels
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.5, 1.5)
    hue: float = 9.0  # delta in -h..h OpenCV hue steps (9 = 18 degrees)
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    p: float = 0.5  # probability of each colour op
    blur_p: float = 0.2
    order: str = "rgb"

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ConfigError(f"photometric order must be one of {ORDERS}, got {self.order!r}")
        if not 0 <= self.brightness <= 255:
            raise ConfigError(f"photometric brightness must be in 0..255 grey levels, got {self.brightness}")
        if not 0 <= self.hue <= 90:
            raise ConfigError(f"photometric hue must be in 0..90 OpenCV hue steps (90 = 180 degrees), got {self.hue}")
        for name in ("contrast", "saturation", "blur_sigma"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi or (name == "blur_sigma" and lo <= 0):
                raise ConfigError(f"photometric {name} must be a range 0 < low <= high, got {(lo, hi)}")
        for name in ("p", "blur_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"photometric {name} must be a probability in [0, 1], got {getattr(self, name)}")

    def draw(self, rng: np.random.Generator) -> PhotometricParams:
        def maybe(p: float, lo: float, hi: float) -> float | None:
            fire, amount = rng.random() < p, rng.uniform(lo, hi)
            return float(amount) if fire else None

        return PhotometricParams(
            brightness=maybe(self.p, -self.brightness, self.brightness),
            contrast=maybe(self.p, *self.contrast),
            saturation=maybe(self.p, *self.saturation),
            hue=maybe(self.p, -self.hue, self.hue),
            blur_sigma=maybe(self.blur_p, *self.blur_sigma),
        )

    def apply(self, image: np.ndarray, params: PhotometricParams) -> np.ndarray:
        _check(image, self.order)
        if params.brightness is not None:
            image = adjust_brightness(image, params.brightness, self.order)
        if params.contrast is not None:
            image = adjust_contrast(image, params.contrast, self.order)
        if params.saturation is not None:
            image = adjust_saturation(image, params.saturation, self.order)
        if params.hue is not None:
            image = shift_hue(image, params.hue, self.order)
        if params.blur_sigma is not None:
            image = gaussian_blur(image, params.blur_sigma, self.order)
        return image

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, self.draw(rng))
