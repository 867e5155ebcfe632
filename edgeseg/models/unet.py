"""U-Net (Ronneberger, Fischer & Brox, 2015) on the same backbones as FCN: skip features are concatenated, not added.

Where FCN turns each skip feature into class scores and adds them, U-Net's decoder carries features all the way up:
starting from the stride-32 features, each of four blocks upsamples x2 (fixed bilinear, half-pixel), concatenates
the backbone's feature map at the new stride (16, 8, 4, then 2) and mixes them with two 3x3 conv-BN-ReLU layers.
A 1x1 score conv on the stride-2 block gives the logits that `forward_lowres` returns (`output_stride` 2); forward
upsamples them x2 to the input, like FCN's final fixed upsampling, so exports, the runtime's low-resolution path
and every command take U-Net as they take FCN.

Any input size works, exactly as in `fcn.py`: the input is zero-padded bottom/right to a multiple of 32, so every
stride-s feature is exactly (H/32*32)/s and the concatenations line up; the output is cropped back to (H, W).
The original U-Net used unpadded convolutions and cropped the skips; padded convs (as in most modern U-Nets) keep
the sizes aligned instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.models.backbones import Backbone, MobileNetV3Large, ResNet18
from edgeseg.models.fcn import check_num_classes, pad_to_multiple, upsample_to_input
from edgeseg.models.registry import register_model

# The strides whose backbone features the decoder concatenates, in decoding order.
SKIP_STRIDES = (16, 8, 4, 2)
OUTPUT_STRIDE = SKIP_STRIDES[-1]


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """x2 bilinear upsampling, concatenation with the skip feature, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_ch + skip_ch, out_ch)
        self.conv2 = _conv_bn_relu(out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class UNet(nn.Module):
    """U-Net decoder on `backbone`: forward(x) -> (N, num_classes, H, W) logits for any H, W.

    `decoder_channels` are the widths of the four blocks (at strides 16, 8, 4, 2). Attributes as FCN's: `name`,
    `num_classes`, `output_stride` (2: the stride of `forward_lowres`' output on the padded input).
    """

    output_stride = OUTPUT_STRIDE

    def __init__(self, backbone: Backbone, *, num_classes: int, decoder_channels: Sequence[int] = (128, 64, 32, 16),
                 name: str = "unet") -> None:
        super().__init__()
        check_num_classes(num_classes)
        widths = tuple(int(c) for c in decoder_channels)
        if len(widths) != len(SKIP_STRIDES) or min(widths) < 1:
            raise ConfigError(f"U-Net needs {len(SKIP_STRIDES)} positive decoder widths (strides {SKIP_STRIDES}), "
                              f"got {tuple(decoder_channels)}")
        self.name = name
        self.num_classes = num_classes
        self.backbone = backbone
        blocks = []
        in_ch = backbone.channels(32)
        for stride, out_ch in zip(SKIP_STRIDES, widths):
            blocks.append(DecoderBlock(in_ch, backbone.channels(stride), out_ch))
            in_ch = out_ch
        self.decoder = nn.ModuleList(blocks)
        self.score = nn.Conv2d(in_ch, num_classes, kernel_size=1)
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.score.weight, std=0.01)
        nn.init.zeros_(self.score.bias)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:
        """Logits before the final fixed x2 upsampling, on the input padded to a multiple of 32."""
        return self._lowres_and_features(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_to_input(self.forward_lowres(x), self.output_stride, x)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """(forward's logits, the backbone's features by stride), for training-time auxiliary heads."""
        low, feats = self._lowres_and_features(x)
        return upsample_to_input(low, self.output_stride, x), feats

    def _lowres_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        feats = self.backbone(pad_to_multiple(x, self.name))
        y = feats[32]
        for stride, block in zip(SKIP_STRIDES, self.decoder):
            y = block(y, feats[stride])
        return self.score(y), feats


def _unet(name: str, backbone: Backbone, decoder_channels: Sequence[int], num_classes: int,
          pretrained_backbone: str | Path | None) -> UNet:
    model = UNet(backbone, num_classes=num_classes, decoder_channels=decoder_channels, name=name)
    if pretrained_backbone is not None:
        backbone.load_pretrained(pretrained_backbone)
    return model


# Decoder widths kept light for the edge: at 360x480, unet_resnet18 is 9.2 GMAC against fcn8s_resnet18's 6.7
# (widths 256/128/64/32 would be 13.9), unet_mobilenetv3 1.9 against fcn8s_mobilenetv3's 0.8.
@register_model("unet_resnet18")
def unet_resnet18(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> UNet:
    """U-Net on ResNet-18: decoder blocks of 128, 64, 32, 16 channels over layer3, layer2, layer1 and the stem."""
    return _unet("unet_resnet18", ResNet18(), (128, 64, 32, 16), num_classes, pretrained_backbone)


@register_model("unet_mobilenetv3")
def unet_mobilenetv3(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> UNet:
    """U-Net on MobileNetV3-Large: decoder blocks of 64, 32, 24, 16 channels over features 12, 6, 3 and 1."""
    return _unet("unet_mobilenetv3", MobileNetV3Large(), (64, 32, 24, 16), num_classes, pretrained_backbone)
