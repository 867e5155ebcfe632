"""Fully convolutional networks (Long, Shelhamer & Darrell, 2015): FCN-32s, FCN-16s and FCN-8s on any backbone.

A 1x1 "score" conv turns the stride-32 features into class scores. FCN-16s upsamples them x2 with a learnable
ConvTranspose2d (initialised to bilinear interpolation, `bilinear_kernel`) and adds the scores of the stride-16
features; FCN-8s repeats this with the stride-8 features. The final x32/x16/x8 upsampling is a FIXED bilinear
interpolation (half-pixel, align_corners=False), so an exported graph may stop before it (`forward_lowres`,
`LowResOutput`) and let the runtime upsample and take the argmax in one pass.

Any input size works: the input is zero-padded bottom/right to a multiple of 32 (amounts computed from the input
shape, so ONNX export with dynamic H/W stays correct) and the output is cropped back to (H, W).

Initialisation: skip score convs start at zero, so FCN-16s/8s start out equal to the coarser net (the paper's
staged surgery); the stride-32 score conv is N(0, 0.01) rather than the paper's zeros, so gradients reach the
backbone from the first step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.models.backbones import Backbone, MobileNetV3Large, ResNet18, VGG16, VGG16Paper
from edgeseg.models.registry import register_model

PAD_MULTIPLE = 32
OUTPUT_STRIDES = (8, 16, 32)


def bilinear_kernel(in_ch: int, out_ch: int, k: int) -> torch.Tensor:
    """ConvTranspose2d weight (in_ch, out_ch, k, k) that upsamples each channel bilinearly, channels kept apart.

    The 2-D kernel is the paper's `upsample_filt`; it sits on the diagonal (channel i -> channel i), zeros
    elsewhere. With k=4, stride=2, padding=1 this is exact x2 half-pixel bilinear resizing away from the border.
    """
    if in_ch != out_ch:
        raise ConfigError(f"a bilinear upsampling kernel maps channels one to one; got in_ch={in_ch}, out_ch={out_ch}")
    if k < 1:
        raise ConfigError(f"kernel size must be >= 1, got {k}")
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = np.ogrid[:k, :k]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    weight = np.zeros((in_ch, out_ch, k, k), dtype=np.float64)
    weight[range(in_ch), range(out_ch), :, :] = filt
    return torch.from_numpy(weight).float()


def _upsample2x(channels: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, channels, 4))
    return up


def _score(in_ch: int, num_classes: int, std: float) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, num_classes, kernel_size=1)
    if std > 0:
        nn.init.normal_(conv.weight, std=std)
    else:
        nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def check_num_classes(num_classes: object) -> int:
    """`num_classes` as given when it is an integer >= 1 (not a bool); ConfigError otherwise."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return num_classes


def pad_to_multiple(x: torch.Tensor, name: str) -> torch.Tensor:
    """(N, 3, H, W) zero-padded bottom/right to multiples of PAD_MULTIPLE (amounts from x's own shape, so a traced
    graph with dynamic H/W stays right); ConfigError naming the model for any other shape."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ConfigError(f"{name} expects an (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2], x.shape[-1]
    pad_h = (PAD_MULTIPLE - h % PAD_MULTIPLE) % PAD_MULTIPLE
    pad_w = (PAD_MULTIPLE - w % PAD_MULTIPLE) % PAD_MULTIPLE
    return F.pad(x, (0, pad_w, 0, pad_h))


class FCN(nn.Module):
    """FCN head on `backbone`: forward(x) -> (N, num_classes, H, W) logits for any H, W.

    Attributes: `name`, `num_classes`, `output_stride` (8, 16 or 32: the stride of `forward_lowres`' output).
    """

    def __init__(self, backbone: Backbone, *, num_classes: int, output_stride: int, name: str = "fcn") -> None:
        super().__init__()
        check_num_classes(num_classes)
        if output_stride not in OUTPUT_STRIDES:
            raise ConfigError(f"FCN output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
        self.name = name
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.backbone = backbone
        self.score_32 = _score(backbone.channels(32), num_classes, std=0.01)
        if output_stride <= 16:
            self.up_32to16 = _upsample2x(num_classes)
            self.score_16 = _score(backbone.channels(16), num_classes, std=0.0)
        if output_stride == 8:
            self.up_16to8 = _upsample2x(num_classes)
            self.score_8 = _score(backbone.channels(8), num_classes, std=0.0)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:
        """Logits before the final fixed upsampling: stride `output_stride` on the input padded to a multiple of 32."""
        return self._lowres_and_features(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_to_input(self.forward_lowres(x), self.output_stride, x)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """(forward's logits, the backbone's features by stride on the padded input), for training-time
        auxiliary heads (edgeseg.training.deep_supervision) that must not become part of the model."""
        low, feats = self._lowres_and_features(x)
        return upsample_to_input(low, self.output_stride, x), feats

    def _lowres_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        feats = self.backbone(pad_to_multiple(x, self.name))
        score = self.score_32(feats[32])
        if self.output_stride <= 16:
            score = self.up_32to16(score) + self.score_16(feats[16])
        if self.output_stride == 8:
            score = self.up_16to8(score) + self.score_8(feats[8])
        return score, feats


def upsample_to_input(scores: torch.Tensor, stride: int, x: torch.Tensor) -> torch.Tensor:
    """`scores` at `stride` on the padded input, bilinearly upsampled (half-pixel) and cropped to x's (H, W)."""
    h, w = x.shape[-2], x.shape[-1]
    out = F.interpolate(scores, scale_factor=stride, mode="bilinear", align_corners=False)
    return out[:, :, :h, :w]


class LowResOutput(nn.Module):
    """Wraps an FCN or U-Net so that forward is its `forward_lowres` (for exporting a graph without the final
    upsampling).

    The output covers the input padded to a multiple of 32: upsample it by `output_stride`, then crop to (H, W).
    The wrapper starts in the model's train/eval mode: a wrapper left in training mode would, after
    torch.onnx.export restores modes on exit, switch the wrapped model's BatchNorm back to training.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.name = model.name
        self.num_classes = model.num_classes
        self.output_stride = model.output_stride
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_lowres(x)


def _fcn(
    name: str, backbone: Backbone, output_stride: int, num_classes: int, pretrained_backbone: str | Path | None
) -> FCN:
    model = FCN(backbone, num_classes=num_classes, output_stride=output_stride, name=name)
    if pretrained_backbone is not None:
        backbone.load_pretrained(pretrained_backbone)
    return model


@register_model("fcn32s_vgg16")
def fcn32s_vgg16(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-32s on VGG-16 (light conv fc6/fc7, see `backbones/vgg16.py`)."""
    return _fcn("fcn32s_vgg16", VGG16(), 32, num_classes, pretrained_backbone)


@register_model("fcn16s_vgg16")
def fcn16s_vgg16(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-16s on VGG-16: stride-32 scores x2 plus pool4 scores."""
    return _fcn("fcn16s_vgg16", VGG16(), 16, num_classes, pretrained_backbone)


@register_model("fcn8s_vgg16")
def fcn8s_vgg16(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-8s on VGG-16: adds pool3 scores as well (the paper's best model)."""
    return _fcn("fcn8s_vgg16", VGG16(), 8, num_classes, pretrained_backbone)


@register_model("fcn32s_vgg16_paper")
def fcn32s_vgg16_paper(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-32s on VGG-16 with the paper's convolutionalised fc6 (7x7, 4096) and fc7 (1x1, 4096): give a torchvision
    ImageNet state_dict as `pretrained_backbone` and its classifier.0/3 become fc6/fc7 (`backbones/vgg16.py`)."""
    return _fcn("fcn32s_vgg16_paper", VGG16Paper(), 32, num_classes, pretrained_backbone)


@register_model("fcn16s_vgg16_paper")
def fcn16s_vgg16_paper(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-16s on VGG-16 with the paper's fc6/fc7 (see fcn32s_vgg16_paper)."""
    return _fcn("fcn16s_vgg16_paper", VGG16Paper(), 16, num_classes, pretrained_backbone)


@register_model("fcn8s_vgg16_paper")
def fcn8s_vgg16_paper(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-8s on VGG-16 with the paper's fc6/fc7 (see fcn32s_vgg16_paper): the paper's best model."""
    return _fcn("fcn8s_vgg16_paper", VGG16Paper(), 8, num_classes, pretrained_backbone)


@register_model("fcn32s_resnet18")
def fcn32s_resnet18(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-32s on ResNet-18 (layer4)."""
    return _fcn("fcn32s_resnet18", ResNet18(), 32, num_classes, pretrained_backbone)


@register_model("fcn16s_resnet18")
def fcn16s_resnet18(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-16s on ResNet-18 (layer4 + layer3)."""
    return _fcn("fcn16s_resnet18", ResNet18(), 16, num_classes, pretrained_backbone)


@register_model("fcn8s_resnet18")
def fcn8s_resnet18(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-8s on ResNet-18 (layer4 + layer3 + layer2)."""
    return _fcn("fcn8s_resnet18", ResNet18(), 8, num_classes, pretrained_backbone)


@register_model("fcn32s_mobilenetv3")
def fcn32s_mobilenetv3(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-32s on MobileNetV3-Large (final 960-channel conv)."""
    return _fcn("fcn32s_mobilenetv3", MobileNetV3Large(), 32, num_classes, pretrained_backbone)


@register_model("fcn16s_mobilenetv3")
def fcn16s_mobilenetv3(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-16s on MobileNetV3-Large (+ the stride-16, 112-channel block)."""
    return _fcn("fcn16s_mobilenetv3", MobileNetV3Large(), 16, num_classes, pretrained_backbone)


@register_model("fcn8s_mobilenetv3")
def fcn8s_mobilenetv3(*, num_classes: int, pretrained_backbone: str | Path | None = None) -> FCN:
    """FCN-8s on MobileNetV3-Large (+ the stride-8, 40-channel block)."""
    return _fcn("fcn8s_mobilenetv3", MobileNetV3Large(), 8, num_classes, pretrained_backbone)
