"""Cityscapes fine annotations.

    DIR/leftImg8bit/SPLIT/CITY/X_leftImg8bit.png + DIR/gtFine/SPLIT/CITY/X_gtFine_labelIds.png

The labelIds (0..33, -1 for the licence plate in instance files) become the 19 trainIds of the official table
(cityscapesScripts `helpers/labels.py`); every other id is 255.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgeseg.config import IGNORE_INDEX
from edgeseg.data.base import DatasetInfo, FileDataset, LabelMap
from edgeseg.errors import DataError


class CityscapesLabel(NamedTuple):
    name: str
    id: int
    train_id: int
    color: tuple[int, int, int]


# From cityscapesScripts/cityscapesscripts/helpers/labels.py (name, id, trainId, color).
CITYSCAPES_LABELS = (
    CityscapesLabel("unlabeled", 0, 255, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, (0, 0, 0)),
    CityscapesLabel("static", 4, 255, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, (119, 11, 32)),
    CityscapesLabel("license plate", -1, -1, (0, 0, 142)),
)
_TRAIN = sorted((lab for lab in CITYSCAPES_LABELS if 0 <= lab.train_id < 255), key=lambda lab: lab.train_id)
CITYSCAPES_INFO = DatasetInfo(tuple(lab.name for lab in _TRAIN), tuple(lab.color for lab in _TRAIN), IGNORE_INDEX)

_ID_TO_TRAIN = np.full(256, IGNORE_INDEX, np.int16)
for _lab in CITYSCAPES_LABELS:
    if _lab.id >= 0:
        _ID_TO_TRAIN[_lab.id] = _lab.train_id if 0 <= _lab.train_id < 255 else IGNORE_INDEX


def cityscapes_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map Cityscapes labelIds (any integer array, -1 allowed) to trainIds 0..18, everything else to 255."""
    ids = np.asarray(label_ids)
    out = np.full(ids.shape, IGNORE_INDEX, np.uint8)
    inside = (ids >= 0) & (ids <= 255)
    out[inside] = _ID_TO_TRAIN[ids[inside].astype(np.intp)]
    return out


def is_cityscapes_layout(root: Path) -> bool:
    return (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir()


class CityscapesDataset(FileDataset):
    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = Path(root)
        image_root = root / "leftImg8bit" / split
        if not image_root.is_dir():
            found = sorted(p.name for p in (root / "leftImg8bit").iterdir() if p.is_dir())
            raise DataError(f"Cityscapes dataset {root} has no split '{split}' ({image_root}); splits found: {found}")
        images = sorted(image_root.glob("*/*_leftImg8bit.png"))
        if not images:
            raise DataError(f"{image_root} holds no CITY/*_leftImg8bit.png images")
        pairs = []
        for image in images:
            prefix = image.name[: -len("_leftImg8bit.png")]
            label = root / "gtFine" / split / image.parent.name / f"{prefix}_gtFine_labelIds.png"
            if not label.is_file():
                raise DataError(f"image {image} has no label: expected {label}")
            pairs.append((image, label))
        super().__init__(pairs, CITYSCAPES_INFO, LabelMap(_ID_TO_TRAIN), split, root)
