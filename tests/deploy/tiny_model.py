"""The deployment tests' model: a small FCN whose masks hold several classes, and the sizes it is exported at."""

from __future__ import annotations

import torch

SIZE = (48, 64)  # (H, W): not square, so a transposed axis shows
CLASSES = ("road", "car", "person", "sky")
MAX_BATCH = 4
TINY_NAME = "test_triton_tiny_fcn"


class TinyFCN(torch.nn.Module):
    """Two strided convs and a 1x1 classifier, upsampled x4 bilinear: real spatial structure in a few kB."""

    def __init__(self, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        )
        self.classifier = torch.nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        logits = self.classifier(self.body(x))
        return torch.nn.functional.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
