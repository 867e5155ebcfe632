"""Glue between the numpy datasets of edgeseg.data and torch: augmentation, normalisation, tensors."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from edgeseg.data.photometric import PhotometricDistortion
from edgeseg.data.transforms import EvalTransform, TrainTransform


def normalize_rgb(image_rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 3xHxW, (x/255 - mean)/std, for training batches only.

    Training augments RGB images already at their final size, so only the normalisation is needed here (within
    1 LSB of the runtime's kernel, which does not matter for SGD). Everything that predicts or evaluates goes
    through the model's ProcessingPlan instead (edgeseg.training.predictor.TorchPredictor)."""
    scaled = image_rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    normed = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(normed.transpose(2, 0, 1))


class TorchSegmentationDataset(torch.utils.data.Dataset):
    """Wraps a SegmentationDataset: train mode augments (TrainTransform: scale in `scale_range`, crop, flip, and
    the photometric distortion when given), eval mode resizes to `size`."""

    def __init__(self, dataset: Any, size: tuple[int, int], mean, std, *, train: bool, seed: int = 0,
                 scale_range: tuple[float, float] = (0.5, 2.0),
                 photometric: PhotometricDistortion | None = None) -> None:
        self.dataset = dataset
        self.mean, self.std = mean, std
        self.train = train
        self.seed = seed
        self.epoch = 0
        if train:
            self.transform = TrainTransform(out_size=size, scale_range=scale_range, photometric=photometric)
        else:
            self.transform = EvalTransform(out_size=size)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.dataset[index]
        # A fresh but reproducible augmentation per (seed, epoch, index), whatever the worker layout.
        rng = np.random.default_rng((self.seed, self.epoch, index))
        image, label = self.transform(image, label, rng)
        return torch.from_numpy(normalize_rgb(image, self.mean, self.std)), torch.from_numpy(label.astype(np.int64))
