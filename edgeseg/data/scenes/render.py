"""Rendering one synthetic street scene: the elements of draw.py composed far to near, then texture and lighting.

Each scene is drawn in perspective: sky, a skyline of buildings with window grids, a road with lane marks
converging to a vanishing point, sidewalks with tile joints, then trees, poles, cars and people placed on the
ground and drawn far to near so nearer objects occlude farther ones. Colour alone does not give the class:
buildings and cars draw from overlapping colour ranges, vegetation is sometimes autumn-orange, sky may be grey.
Texture (windows, lane marks, tiles, leaf noise), shape and position carry the rest. Lighting gain, colour cast,
shadows, blur and sensor noise vary per image.

Same (seed, stream, index) -> same pixels on every machine (numpy's PCG64 and OpenCV's integer drawing).
A 128x160 scene takes a few milliseconds. Labels hold no void pixels.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

from edgeseg.config import size_hw
from edgeseg.data.base import Sample
from edgeseg.data.scenes.classes import SKY, VEGETATION
from edgeseg.data.scenes.draw import (
    DRAWERS,
    Scene,
    draw_buildings,
    draw_ground,
    draw_sky,
    grass,
    place_objects,
    rect,
)
from edgeseg.errors import ConfigError

DEFAULT_SIZE = (128, 160)

# Per-class texture noise (std in 0..255 units): fine grain and low-frequency blotches.
_FINE_NOISE = np.array([1.5, 5, 9, 5, 14, 3, 5, 3], np.float32)
_BLOTCH_NOISE = np.array([4, 6, 6, 8, 30, 2, 4, 2], np.float32)


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of a synthetic image: at least 32x32 so every element fits; ConfigError otherwise."""
    return size_hw(size, "synthetic scene size", minimum=32)


def scene_rng(seed: int, stream: str, index: int) -> np.random.Generator:
    """The generator of item `index` of a named stream (a split, "video"): independent of access order."""
    if seed < 0 or index < 0:
        raise ConfigError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(stream.encode()), int(index)]))


def render_scene(rng: np.random.Generator, size: tuple[int, int]) -> Sample:
    """One street scene (image RGB uint8, label uint8) of `size` (H, W) drawn with `rng`."""
    h, w = check_size(size)
    image = np.zeros((h, w, 3), np.float32)
    label = np.full((h, w), SKY, np.uint8)
    scene = Scene(rng, h, w)
    draw_sky(rng, image, scene)
    draw_buildings(rng, image, label, scene)
    draw_ground(rng, image, label, scene)
    if rng.random() < 0.5:  # hedge row at the foot of the buildings
        hedge_h = h * rng.uniform(0.02, 0.06)
        x0 = rng.uniform(-0.2, 0.6) * w
        rect(
            image,
            label,
            x0,
            scene.horizon - hedge_h,
            x0 + w * rng.uniform(0.2, 0.6),
            scene.horizon + 1,
            grass(rng),
            VEGETATION,
        )
    for y, kind, x in place_objects(rng, scene):
        DRAWERS[kind](rng, image, label, scene, x, y)

    # Texture noise by class: fine grain everywhere, low-frequency blotches (leaves, stains).
    fine = rng.standard_normal((h, w), dtype=np.float32)
    blotch = cv2.resize(
        rng.standard_normal((h // 4 + 1, w // 4 + 1), dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR
    )
    image += (_FINE_NOISE[label] * fine + _BLOTCH_NOISE[label] * blotch)[..., None]
    # Lighting: a shadow across the ground, global gain and colour cast, sometimes a little blur.
    if rng.random() < 0.5:
        yy, xx = np.ogrid[0:h, 0:w]
        a = rng.uniform(-1, 1)
        shadow = (yy > scene.horizon) & (xx - scene.vx > a * (yy - scene.horizon) * 2)
        image[shadow] *= rng.uniform(0.5, 0.8)
    image *= (rng.uniform(0.6, 1.3) * rng.uniform(0.85, 1.15, 3)).astype(np.float32)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.5, 1.0))
    image += np.float32(rng.uniform(1, 6)) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label

