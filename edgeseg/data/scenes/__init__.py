"""Synthetic street scenes: a deterministic generator that needs no download, for tests, demos and smoke training.

Import the public names from edgeseg.data; the modules here each do one job:

    classes.py   class names, palette, SYNTHETIC_INFO
    draw.py      the scene's elements (perspective geometry, buildings, road, trees, cars, people, ...)
    render.py    render_scene: one (image RGB, label) from a seeded generator; the seeding rule
    dataset.py   SyntheticScenes: a map-style dataset of rendered scenes
    frames.py    synthetic_frames: BGR video frames, the one synthetic-frame maker
    writers.py   write_synthetic_video (MP4) and write_synthetic_folder (folder-layout dataset)
"""

from edgeseg.data.scenes.classes import SYNTHETIC_CLASSES, SYNTHETIC_INFO, SYNTHETIC_PALETTE
from edgeseg.data.scenes.dataset import DEFAULT_COUNTS, SyntheticScenes
from edgeseg.data.scenes.frames import synthetic_frames
from edgeseg.data.scenes.render import DEFAULT_SIZE, render_scene
from edgeseg.data.scenes.writers import write_synthetic_folder, write_synthetic_video

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
