"""Datasets for training and evaluation, numpy and OpenCV only (no torch).

Every dataset gives (image RGB uint8 HxWx3, label uint8 HxW with 255 = ignore) and a DatasetInfo (classes,
palette). `open_dataset("synthetic")` needs no files; a directory in the folder (CamVid), PASCAL VOC or
Cityscapes layout is recognised by its folders.
"""

from edgeseg.data.base import DatasetInfo, SegmentationDataset, validate_dataset
from edgeseg.data.cityscapes import CITYSCAPES_INFO, CityscapesDataset, cityscapes_train_ids
from edgeseg.data.folder import FolderDataset
from edgeseg.data.open import open_dataset
from edgeseg.data.scenes import (
    SYNTHETIC_INFO,
    SyntheticScenes,
    synthetic_frames,
    write_synthetic_folder,
    write_synthetic_video,
)
from edgeseg.data.transforms import EvalTransform, TrainTransform
from edgeseg.data.voc import VOC_INFO, VOCDataset

__all__ = [
    "CITYSCAPES_INFO",
    "CityscapesDataset",
    "DatasetInfo",
    "EvalTransform",
    "FolderDataset",
    "SYNTHETIC_INFO",
    "SegmentationDataset",
    "SyntheticScenes",
    "TrainTransform",
    "VOCDataset",
    "VOC_INFO",
    "cityscapes_train_ids",
    "open_dataset",
    "synthetic_frames",
    "validate_dataset",
    "write_synthetic_folder",
    "write_synthetic_video",
]
