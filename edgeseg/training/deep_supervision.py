"""Deep supervision for FCNs and U-Nets: auxiliary score heads on the stride-8 and stride-16 features (pool3 and
pool4 in the paper's VGG), used while training and never part of the model.

Each auxiliary head is a 1x1 score conv, like the FCN's own, whose scores are upsampled to the input and scored
against the same labels. The loss is

    loss = main + aux_weight * mean(aux_1, ..., aux_n)

so the intermediate features must be linearly separable by class on their own, which adds gradient to the early
layers that the x8 skip path reaches only through the fused sum. The heads live in the `DeepSupervision` wrapper,
not in the FCN: the FCN's state_dict, best.pt, the EMA and every export are the same with or without them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.models.fcn import FCN, upsample_to_input
from edgeseg.models.unet import UNet

AUX_STRIDES = (8, 16)


class DeepSupervision(nn.Module):
    """Training wrapper: forward(x) -> [the FCN's logits, one full-size logits tensor per auxiliary stride]."""

    def __init__(self, model: FCN | UNet, strides: Sequence[int] = AUX_STRIDES) -> None:
        super().__init__()
        if not isinstance(model, (FCN, UNet)):
            raise ConfigError(f"auxiliary heads need an FCN or U-Net model, got {type(model).__name__}")
        self.model = model
        self.strides = tuple(strides)
        heads = {}
        for stride in self.strides:
            head = nn.Conv2d(model.backbone.channels(stride), model.num_classes, kernel_size=1)
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
            heads[str(stride)] = head
        self.aux_heads = nn.ModuleDict(heads)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        logits, feats = self.model.forward_with_features(x)
        aux = [upsample_to_input(self.aux_heads[str(s)](feats[s]), s, x) for s in self.strides]
        return [logits, *aux]


class DeepSupervisionLoss(nn.Module):
    """`criterion` on the main logits plus `aux_weight` times its mean over the auxiliary logits."""

    def __init__(self, criterion: nn.Module, aux_weight: float) -> None:
        super().__init__()
        if not aux_weight > 0:
            raise ConfigError(f"--aux-weight must be > 0 for auxiliary heads, got {aux_weight}")
        self.criterion = criterion
        self.aux_weight = float(aux_weight)

    def forward(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        main, *aux = outputs
        loss = self.criterion(main, target)
        if aux:
            loss = loss + self.aux_weight * torch.stack([self.criterion(a, target) for a in aux]).mean()
        return loss

    def extra_repr(self) -> str:
        return f"aux_weight={self.aux_weight}"
