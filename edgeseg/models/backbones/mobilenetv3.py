"""MobileNetV3-Large (Howard et al., 2019): inverted residuals, squeeze-and-excitation, hardswish, BatchNorm.

Module names follow torchvision's `mobilenet_v3_large().features` (`features.{i}.block.{j}`, SE `fc1`/`fc2`),
so a torchvision state_dict loads as is; its classifier is dropped. BatchNorm uses torchvision's eps=0.001 (the
numbers its weights were trained with) but PyTorch's default momentum 0.1, not torchvision's 0.01: momentum is not
in a state_dict, and 0.01, tuned for ImageNet's long schedules, leaves the running statistics far behind weights
that train from scratch in minutes (a CamVid run's eval mode predicted nearly one class, 3.4 % mIoU, while the same
weights with a frame's own statistics labelled 74 % of its pixels right). Features: block 1 output (16 channels, stride 2), block 3 (24, stride 4), block 6 (40, stride 8),
block 12 (112, stride 16) and the final 1x1 conv (960, stride 32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.backbones.base import Backbone, FeatureInfo

BN_MOMENTUM = 0.1  # see the module docstring: the running statistics must keep up with training from scratch

# (kernel, expanded, out, use_se, activation, stride) for each bottleneck, in = previous out (Table 1 of the paper).
_BNECK = (
    (3, 16, 16, False, "RE", 1),  # features.1: stride 2
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),  # features.3: stride 4
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),  # features.6: stride 8
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),  # features.12: stride 16
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)
_LAST_CHANNELS = 960  # features.16: 1x1 conv, stride 32
_TAPS = {1: 2, 3: 4, 6: 8, 12: 16}  # features index -> stride of its output (the last layer is stride 32)


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None):
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=0.001, momentum=BN_MOMENTUM),
    ]
    if act == "HS":
        layers.append(nn.Hardswish(inplace=True))
    elif act == "RE":
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Channel attention: global average pool, 1x1 conv + ReLU, 1x1 conv + hardsigmoid, rescale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeeze = _make_divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    """1x1 expand, kxk depthwise, optional SE, 1x1 linear project; residual when stride 1 and shapes agree."""

    def __init__(self, in_ch: int, kernel: int, expanded: int, out_ch: int, use_se: bool, act: str, stride: int):
        super().__init__()
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expanded != in_ch:
            layers.append(_conv_bn_act(in_ch, expanded, 1, act=act))
        layers.append(_conv_bn_act(expanded, expanded, kernel, stride=stride, groups=expanded, act=act))
        if use_se:
            layers.append(SqueezeExcitation(expanded))
        layers.append(_conv_bn_act(expanded, out_ch, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_residual else out


class MobileNetV3Large(Backbone):
    """MobileNetV3-Large trunk (no classifier): features.0 stem, features.1-15 bottlenecks, features.16 1x1 conv."""

    ignored_prefixes = ("classifier.",)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_act(3, 16, 3, stride=2, act="HS")]
        in_ch = 16
        for kernel, expanded, out_ch, use_se, act, stride in _BNECK:
            layers.append(InvertedResidual(in_ch, kernel, expanded, out_ch, use_se, act, stride))
            in_ch = out_ch
        layers.append(_conv_bn_act(in_ch, _LAST_CHANNELS, 1, act="HS"))
        self.features = nn.Sequential(*layers)
        tap_channels = {1: 16, 3: 24, 6: 40, 12: 112}
        self.feature_info = [FeatureInfo(f"features.{i}", tap_channels[i], s) for i, s in _TAPS.items()]
        self.feature_info.append(FeatureInfo(f"features.{len(layers) - 1}", _LAST_CHANNELS, 32))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS:
                out[_TAPS[index]] = x
        out[32] = x
        return out
