"""Predicting with a torch model on BGR frames, with the same resize/normalise arithmetic as the runtime."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from edgeseg.config import ModelMeta
from edgeseg.training.torch_data import normalize_rgb


class TorchPredictor:
    """`predict(frames_bgr) -> masks at the model's input size`, like runtime.Segmenter.predict."""

    def __init__(self, model: torch.nn.Module, meta: ModelMeta, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.meta = meta
        self.device = device

    def batch(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        height, width = self.meta.input_size
        arrays = [
            normalize_rgb(cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR)[:, :, ::-1], self.meta.mean, self.meta.std)
            for f in frames
        ]
        return torch.from_numpy(np.stack(arrays)).to(self.device)

    @torch.no_grad()
    def logits(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        return self.model(self.batch(frames))

    def predict(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        return list(self.logits(frames).argmax(1).cpu().numpy().astype(np.uint8))
