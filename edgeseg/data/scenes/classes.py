"""The classes of the synthetic street scenes: names, Cityscapes colours, the dataset info and the class ids."""

from __future__ import annotations

from edgeseg.config import IGNORE_INDEX
from edgeseg.data.base import DatasetInfo

SYNTHETIC_CLASSES = ("sky", "building", "road", "sidewalk", "vegetation", "car", "person", "pole")
# The Cityscapes colours of the same classes.
SYNTHETIC_PALETTE = (
    (70, 130, 180), (70, 70, 70), (128, 64, 128), (244, 35, 232),
    (107, 142, 35), (0, 0, 142), (220, 20, 60), (153, 153, 153),
)  # fmt: skip
SYNTHETIC_INFO = DatasetInfo(SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, IGNORE_INDEX)
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, CAR, PERSON, POLE = range(len(SYNTHETIC_CLASSES))
