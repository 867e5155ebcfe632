"""An exponential moving average (EMA) of a model's weights, for evaluation and export.

After every optimizer step: ema_p <- d * ema_p + (1 - d) * p for each floating-point parameter, and every buffer
(BatchNorm running mean/var, num_batches_tracked) copied as it is: the running statistics are already averages,
and averaging them again would mix statistics of weights the EMA no longer holds.

With `warmup`, the decay at update n (1-based) is min(decay, (1 + n) / (10 + n)) (TensorFlow's
ExponentialMovingAverage num_updates rule): early on the EMA follows the weights closely instead of staying near
the random initialisation for ~1 / (1 - decay) steps, which matters for short CPU runs of a few hundred steps.

The EMA model is a separate, frozen copy in eval mode: evaluate it, save its `state_dict()` as the checkpoint's
weights, export it. `state_dict()`/`load_state_dict()` of `ModelEma` itself carry the update count for --resume.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from edgeseg.errors import ConfigError


class ModelEma:
    """EMA of `model`'s parameters (buffers copied). Call `update(model)` after each optimizer step."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, *, warmup: bool = True) -> None:
        if not (math.isfinite(decay) and 0.0 <= decay < 1.0):
            raise ConfigError(f"--ema-decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def decay_at(self, updates: int) -> float:
        """The decay used by update number `updates` (1-based)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + updates) / (10.0 + updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> float:
        """Fold `model`'s current weights into the average; returns the decay used."""
        self.updates += 1
        decay = self.decay_at(self.updates)
        source = _unwrap(model)
        params = dict(source.named_parameters())
        for name, ema_param in self.module.named_parameters():
            param = params[name].detach()
            if ema_param.is_floating_point():
                ema_param.lerp_(param.to(ema_param.dtype), 1.0 - decay)  # d * ema + (1 - d) * p
            else:
                ema_param.copy_(param)
        buffers = dict(source.named_buffers())
        for name, ema_buffer in self.module.named_buffers():
            ema_buffer.copy_(buffers[name].detach())
        return decay

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay,
                "warmup": self.warmup}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DistributedDataParallel / torch.compile wrappers (their names carry a prefix)."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model
