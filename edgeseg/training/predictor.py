"""Predicting with a torch model on BGR frames through the model's ProcessingPlan, like the runtime does.

frames -> plan.preprocess (the runtime's C++ kernel) -> torch model -> logits (numpy) -> plan.postprocess. The
torch model is the only difference from runtime.Segmenter, so the two give the same masks for the same weights.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from edgeseg.config import ModelMeta
from edgeseg.runtime.plan import ProcessingPlan
from edgeseg.runtime.tta import TTA


class TorchPredictor:
    """`predict(frames_bgr) -> uint8 masks at the model's input size`, like runtime.Segmenter.predict."""

    def __init__(self, model: torch.nn.Module, meta: ModelMeta, device: str | torch.device = "cpu",
                 tta: TTA | None = None) -> None:
        self.model = model.eval().to(device)
        self.meta = meta
        self.device = torch.device(device)
        self.plan = ProcessingPlan.from_meta(meta, tta=tta)  # a torch model takes any input size

    def batch(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames -> the model's NCHW float32 input, exactly the runtime's preprocessing."""
        return self.plan.preprocess(list(frames))

    @torch.no_grad()
    def logits(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Float32 logits (N, C, H, W) on the host."""
        return self._infer(self.batch(frames))

    @torch.no_grad()
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    def predict(self, frames: Sequence[np.ndarray], *, confidence: bool = False) -> list:
        """Masks, or (mask, confidence) pairs with `confidence` (ProcessingPlan.postprocess)."""
        frames = list(frames)
        if not frames:
            return []
        if not self.plan.tta.is_plain:
            if confidence:
                self.plan.check_confidence()  # refuses confidence with TTA
            return self.plan.predict_tta(frames, self._infer)
        return self.plan.postprocess(self.logits(frames), confidence=confidence)
