"""PASCAL VOC segmentation: DIR/JPEGImages/ID.jpg, DIR/SegmentationClass/ID.png, DIR/ImageSets/Segmentation/SPLIT.txt.

Labels are palette PNGs: the pixel values are class indices (0 background, 1..20 objects, 255 the "difficult"
border, kept as ignore). They are read as indices, not colours (see edgeseg.data._png).
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.config import IGNORE_INDEX, default_palette
from edgeseg.data.base import DatasetInfo, FileDataset, LabelMap
from edgeseg.errors import DataError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC_INFO = DatasetInfo(VOC_CLASSES, tuple(default_palette(len(VOC_CLASSES))), IGNORE_INDEX)


def is_voc_layout(root: Path) -> bool:
    return (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir()


class VOCDataset(FileDataset):
    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = Path(root)
        list_dir = root / "ImageSets" / "Segmentation"
        list_file = list_dir / f"{split}.txt"
        if not list_file.is_file():
            found = sorted(p.stem for p in list_dir.glob("*.txt")) if list_dir.is_dir() else []
            raise DataError(f"VOC dataset {root} has no split list {list_file}; splits found: {found}")
        ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise DataError(f"VOC split list {list_file} is empty")
        pairs = []
        for sample_id in ids:
            image, label = root / "JPEGImages" / f"{sample_id}.jpg", root / "SegmentationClass" / f"{sample_id}.png"
            if not image.is_file():
                raise DataError(f"{list_file} lists {sample_id!r} but its image {image} does not exist")
            if not label.is_file():
                raise DataError(f"image {image} has no label: expected {label}")
            pairs.append((image, label))
        super().__init__(pairs, VOC_INFO, LabelMap.identity(len(VOC_CLASSES), (IGNORE_INDEX,)), split, root)
