"""VGG-16 (configuration D) as used by FCN: the 13 conv layers, then fc6/fc7 recast as convolutions.

Deviation from the paper, to stay light: fc6 is a 3x3 conv to `fc_channels` (default 1024) instead of a 7x7 conv
to 4096, and fc7 a 1x1 conv of the same width; both are followed by ReLU and dropout, as in the paper. No
BatchNorm, as in the paper. `features` keeps torchvision's `vgg16().features` indices, so a torchvision state_dict
loads into it directly; torchvision's classifier is dropped and fc6/fc7 keep their initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models.backbones.base import Backbone, FeatureInfo

# Channels per conv, "M" = 2x2 max-pool (torchvision's cfg "D").
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# Indices in `features` of pool1 (stride 2), pool2 (4), pool3 (8), pool4 (16) and pool5 (32).
_POOL1, _POOL2, _POOL3, _POOL4, _POOL5 = 4, 9, 16, 23, 30
_TAPS = {_POOL1: 2, _POOL2: 4, _POOL3: 8, _POOL4: 16}


class VGG16(Backbone):
    """VGG-16 conv layers plus a convolutional fc6/fc7; features at pool1 (64), pool2 (128), pool3 (256), pool4 (512)
    and fc7 (fc_channels)."""

    ignored_prefixes = ("classifier.",)
    optional_prefixes = ("fc.",)

    def __init__(self, fc_channels: int = 1024, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Conv2d(512, fc_channels, kernel_size=3, padding=1),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(fc_channels, fc_channels, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.feature_info = [
            FeatureInfo(f"features.{_POOL1}", 64, 2),
            FeatureInfo(f"features.{_POOL2}", 128, 4),
            FeatureInfo(f"features.{_POOL3}", 256, 8),
            FeatureInfo(f"features.{_POOL4}", 512, 16),
            FeatureInfo("fc", fc_channels, 32),
        ]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS:
                out[_TAPS[index]] = x
        out[32] = self.fc(x)
        return out
