"""`open_dataset`: "synthetic" or a directory whose layout is recognised from the folders it holds."""

from __future__ import annotations

from pathlib import Path

from edgeseg.data.base import SegmentationDataset
from edgeseg.data.cityscapes import CityscapesDataset, is_cityscapes_layout
from edgeseg.data.folder import FolderDataset, is_folder_layout
from edgeseg.data.scenes import DEFAULT_SIZE, SyntheticScenes
from edgeseg.data.voc import VOCDataset, is_voc_layout
from edgeseg.errors import DataError

# Checked in order; the first whose test passes opens the directory.
LAYOUTS = (
    ("PASCAL VOC", "JPEGImages/ + SegmentationClass/ + ImageSets/Segmentation/SPLIT.txt", is_voc_layout, VOCDataset),
    ("Cityscapes", "leftImg8bit/SPLIT/CITY/ + gtFine/SPLIT/CITY/", is_cityscapes_layout, CityscapesDataset),
    (
        "folder",
        "SPLIT/images/ + SPLIT/labels/ (or images/ + labels|masks/), optional classes.json",
        is_folder_layout,
        FolderDataset,
    ),
)


def open_dataset(
    spec: str | Path,
    split: str = "train",
    *,
    synthetic_size: tuple[int, int] = DEFAULT_SIZE,
    synthetic_count: int | None = None,
) -> SegmentationDataset:
    """The string "synthetic" -> SyntheticScenes (512 train / 64 val scenes by default); a directory -> its layout.

    A Path is always a directory, even one named "synthetic".
    """
    if isinstance(spec, str) and spec == "synthetic":
        return SyntheticScenes(synthetic_count, synthetic_size, seed=0, split=split)
    root = Path(spec).expanduser()
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"dataset {root} {what}; give a dataset directory or 'synthetic'")
    for _name, _pattern, matches, dataset_class in LAYOUTS:
        if matches(root):
            return dataset_class(root, split)
    looked_for = "; ".join(f"{name}: {pattern}" for name, pattern, _, _ in LAYOUTS)
    raise DataError(f"{root} is not a dataset layout EdgeSeg knows. Looked for {looked_for}")
