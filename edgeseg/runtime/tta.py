"""Test-time augmentation at deployment: the model runs on each frame at several scales, mirrored or not, and the
views' class probabilities are averaged before the one argmax.

`TTA` says which views to run; the processing plan (edgeseg.runtime.plan) runs them, so every backend and the torch
predictor get the same thing. For each view, in float32:

    frame -> resize to round(input_size * scale) [-> mirror left-right] -> graph -> logits at the view's size
          [-> mirror back] -> bilinear resize to input_size -> softmax over classes
    mean of the views' probabilities -> argmax -> mask at input_size

Low-resolution graphs (output_stride > 1) are upsampled by their stride and cropped to the view's size first, as in
plain inference. Scales other than 1 need a graph whose height and width are dynamic (`edgeseg export --dynamic`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import cv2
import numpy as np

from edgeseg.errors import ConfigError

MAX_SCALE = 4.0  # a guard against typos (40 for 0.4); larger views would mostly measure memory
_CV_MAX_CHANNELS = 128  # cv2.resize wraps at most this many channels per call


class View(NamedTuple):
    """One augmented copy of the input: its scale and whether it is mirrored left-right."""

    scale: float
    flip: bool


@dataclass(frozen=True)
class TTA:
    """Which views to average: every scale in `scales`, each also mirrored when `flip`. TTA() is plain inference."""

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False

    def __post_init__(self) -> None:
        try:
            scales = tuple(float(s) for s in self.scales)
        except (TypeError, ValueError):
            raise ConfigError(f"--tta-scales must be numbers, got {self.scales!r}") from None
        if not scales:
            raise ConfigError("--tta-scales needs at least one scale (1 is the model's input size)")
        bad = [s for s in scales if not (math.isfinite(s) and 0.0 < s <= MAX_SCALE)]
        if bad:
            raise ConfigError(f"--tta-scales must be in (0, {MAX_SCALE:g}] (1 = the model's input size), got {bad}")
        if len(set(scales)) != len(scales):
            raise ConfigError(f"--tta-scales lists a scale twice: {list(scales)}")
        if not isinstance(self.flip, bool):
            raise ConfigError(f"tta flip must be True or False, got {self.flip!r}")
        object.__setattr__(self, "scales", scales)

    @property
    def views(self) -> tuple[View, ...]:
        return tuple(View(s, f) for s in self.scales for f in ((False, True) if self.flip else (False,)))

    @property
    def is_plain(self) -> bool:
        """One unmirrored view at scale 1: the average of one softmax is that softmax, whose argmax is the logits'
        argmax, so the plan runs plain inference (bit for bit the same masks)."""
        return self.views == (View(1.0, False),)

    def describe(self) -> str:
        scales = "/".join(f"{s:g}" for s in self.scales)
        return f"scales {scales}" + (" + flip" if self.flip else "")


def view_size(input_size: Iterable[int], scale: float) -> tuple[int, int]:
    """(H, W) of a view: the model's input size times `scale`, rounded half up, at least 1."""
    return tuple(max(1, int(math.floor(int(n) * scale + 0.5))) for n in input_size)  # type: ignore[return-value]


def resize_chw(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) float32 -> (C, H, W), bilinear with half-pixel centres (cv2 INTER_LINEAR; for integer upscaling
    this is torch's align_corners=False)."""
    height, width = size
    if x.shape[1:] == (height, width):
        return x
    hwc = np.ascontiguousarray(x.transpose(1, 2, 0))
    parts = []
    for start in range(0, hwc.shape[2], _CV_MAX_CHANNELS):
        part = cv2.resize(np.ascontiguousarray(hwc[:, :, start : start + _CV_MAX_CHANNELS]), (width, height),
                          interpolation=cv2.INTER_LINEAR)
        parts.append(part.reshape(height, width, -1))
    return np.ascontiguousarray(np.concatenate(parts, axis=2).transpose(2, 0, 1))


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Float32 softmax, shifted by the maximum so exp never overflows."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


__all__ = ["MAX_SCALE", "TTA", "View", "resize_chw", "softmax", "view_size"]
