"""Shared fixture: turn a freshly built FCN into one whose every branch and layer carries realistic signal."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn


def _realistic(model: nn.Module, seed: int = 0) -> nn.Module:
    """Perturb skip scores and upsampling kernels (zero/bilinear at init), set BatchNorm statistics from one
    random batch (fresh statistics make deep eval-mode activations vanish), and return the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.startswith(("score_", "up_")):
                module.weight.add_(torch.randn(module.weight.shape, generator=gen) * 0.05)
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.momentum = 1.0
        model.train()
        model(torch.randn(2, 3, 64, 64, generator=gen))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return model.eval()


@pytest.fixture
def realistic() -> Callable[..., nn.Module]:
    return _realistic
