"""Synthetic street scenes (the public import path): scenes, frames and writers, implemented in edgeseg.data.scenes.

    SyntheticScenes(count, size, seed, split)   a deterministic dataset of rendered street scenes
    synthetic_frames(n, size, seed)              BGR frames of a camera panning over a scene (the one frame maker)
    write_synthetic_video / write_synthetic_folder
"""

from edgeseg.data.scenes import (
    DEFAULT_COUNTS,
    DEFAULT_SIZE,
    SYNTHETIC_CLASSES,
    SYNTHETIC_INFO,
    SYNTHETIC_PALETTE,
    SyntheticScenes,
    render_scene,
    synthetic_frames,
    write_synthetic_folder,
    write_synthetic_video,
)

__all__ = [
    "DEFAULT_COUNTS",
    "DEFAULT_SIZE",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_INFO",
    "SYNTHETIC_PALETTE",
    "SyntheticScenes",
    "render_scene",
    "synthetic_frames",
    "write_synthetic_folder",
    "write_synthetic_video",
]
