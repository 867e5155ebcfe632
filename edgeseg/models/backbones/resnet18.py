"""ResNet-18 (He et al.) with BatchNorm; module names follow torchvision's `resnet18`, whose state_dict loads as is.

Features: the stem's ReLU (64 channels, stride 2), layer1 (64, stride 4), layer2 (128, stride 8), layer3 (256,
stride 16), layer4 (512, stride 32). No avgpool/fc.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models.backbones.base import Backbone, FeatureInfo


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN when the shape changes) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _layer(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch))


class ResNet18(Backbone):
    """ResNet-18 trunk: stem (stride 4), then layer1..layer4 at strides 4, 8, 16, 32."""

    ignored_prefixes = ("fc.",)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 2)
        self.feature_info = [
            FeatureInfo("relu", 64, 2),
            FeatureInfo("layer1", 64, 4),
            FeatureInfo("layer2", 128, 8),
            FeatureInfo("layer3", 256, 16),
            FeatureInfo("layer4", 512, 32),
        ]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        c2 = self.relu(self.bn1(self.conv1(x)))
        c4 = self.layer1(self.maxpool(c2))
        c8 = self.layer2(c4)
        c16 = self.layer3(c8)
        c32 = self.layer4(c16)
        return {2: c2, 4: c4, 8: c8, 16: c16, 32: c32}
