"""synthetic_frames: the one maker of synthetic BGR video frames (a camera panning over a wide street scene)."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from edgeseg.data.scenes.render import DEFAULT_SIZE, check_size, render_scene, scene_rng
from edgeseg.errors import ConfigError

# Peak bytes per frame pixel while the wide scene is drawn (measured with tracemalloc: 135-143 at 360x480-720x960).
RENDER_BYTES_PER_PIXEL = 150


def render_bytes(size: tuple[int, int]) -> int:
    """Memory synthetic_frames needs at `size` (H, W), to refuse a size that cannot fit before drawing it."""
    return RENDER_BYTES_PER_PIXEL * int(size[0]) * int(size[1])


def synthetic_frames(n: int, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0) -> Iterator[np.ndarray]:
    """`n` BGR uint8 frames of a camera panning back and forth over one wide synthetic street scene."""
    h, w = check_size(size)
    if int(n) < 0:
        raise ConfigError(f"frame count must be >= 0, got {n}")
    wide_w = 3 * w
    wide, _ = render_scene(scene_rng(seed, "video", 0), (h, wide_w))
    wide = cv2.cvtColor(wide, cv2.COLOR_RGB2BGR)
    period = 90  # frames for one sweep there and back
    for i in range(int(n)):
        x = int(round((wide_w - w) * 0.5 * (1 - np.cos(2 * np.pi * i / period))))
        frame = wide[:, x : x + w].astype(np.int16)
        noise = scene_rng(seed, "video-noise", i).normal(0, 2.0, frame.shape)
        yield np.clip(frame + np.round(noise), 0, 255).astype(np.uint8)

