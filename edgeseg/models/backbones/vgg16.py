"""VGG-16 (configuration D) as used by FCN: the 13 conv layers, then fc6/fc7 recast as convolutions.

Two heads:
- `VGG16` (the from-scratch default, light): fc6 is a 3x3 conv to `fc_channels` (default 1024) instead of a 7x7
  conv to 4096, and fc7 a 1x1 conv of the same width. A torchvision state_dict loads its 13 convs; its classifier
  is dropped and fc6/fc7 keep their initialisation.
- `VGG16Paper`: the paper's convolutionalised classifier. fc6 is a 7x7 conv 512 -> 4096 and fc7 a 1x1 conv
  4096 -> 4096, and a torchvision ImageNet file's fully connected layers become them, weights and all:
  `classifier.0.weight` (4096, 25088) reshaped to (4096, 512, 7, 7) (torch.flatten of pool5 is channel-major, so
  this is exactly the Linear layer slid over pool5), `classifier.3.weight` to (4096, 4096, 1, 1). The 1000-way
  `classifier.6` is dropped: the FCN's score layer replaces it.

How `VGG16Paper` differs from the paper: the paper pads the input image by 100 pixels so that fc6 (unpadded, 7x7)
has a 7x7 pool5 window even on small images, and then crops its upsampled scores by a per-net offset. Here fc6 is
zero-padded by 3 cells instead ("same" padding), so its output cell (i, j) is the classifier applied to the 7x7
pool5 window centred on cell (i, j), with zeros past the border; the stride-32 map keeps pool5's grid, and the FCN
handles any input size as for the other backbones (pad to a multiple of 32, crop the output). On a 224x224 input
(a 7x7 pool5) the centre cell equals the ImageNet classifier's fc7 exactly. Near the border the window sees zeros
where the paper's sees features of its padded image.

Both: ReLU and dropout after fc6 and fc7, no BatchNorm, as in the paper. `features` keeps torchvision's
`vgg16().features` indices, so a torchvision state_dict loads into it directly.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models.backbones.base import Backbone, FeatureInfo

PAPER_FC_CHANNELS = 4096
PAPER_FC6_KERNEL = 7  # torchvision's classifier.0 reads a 7x7 pool5 (25088 = 512 * 7 * 7)

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

    def __init__(self, fc_channels: int = 1024, dropout: float = 0.5, fc6_kernel: int = 3) -> None:
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
            nn.Conv2d(512, fc_channels, kernel_size=fc6_kernel, padding=fc6_kernel // 2),  # fc6
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


class VGG16Paper(VGG16):
    """VGG-16 with the paper's fc6 (7x7 conv to 4096) and fc7 (1x1 conv to 4096), loaded from a torchvision ImageNet
    state_dict's classifier.0 and classifier.3 (see the module docstring for how it differs from the paper)."""

    ignored_prefixes = ("classifier.6.",)
    optional_prefixes = ()
    missing_hint = ("the paper's fc6/fc7 come from a torchvision VGG-16 ImageNet file's classifier.0 and classifier.3; "
                    "for a file without them use fcn8s_vgg16 (light fc6/fc7 trained from scratch)")

    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__(fc_channels=PAPER_FC_CHANNELS, dropout=dropout, fc6_kernel=PAPER_FC6_KERNEL)

    def map_keys(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """classifier.0/3 (Linear) -> fc.0/3 (conv): the weights reshaped to the conv's shape when their sizes match
        (a file whose sizes do not is reported as 'wrong shape' by load_pretrained)."""
        renamed = dict(state)
        for linear, conv_name in (("classifier.0", "fc.0"), ("classifier.3", "fc.3")):
            conv = self.get_submodule(conv_name)
            weight = renamed.pop(f"{linear}.weight", None)
            if weight is not None:
                if weight.numel() == conv.weight.numel():
                    weight = weight.reshape(conv.weight.shape)
                renamed[f"{conv_name}.weight"] = weight
            bias = renamed.pop(f"{linear}.bias", None)
            if bias is not None:
                renamed[f"{conv_name}.bias"] = bias
        return renamed
