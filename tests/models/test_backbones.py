"""Backbones: the features contract, torchvision key names, and loading local pretrained weights."""

from __future__ import annotations

import pytest
import torch

from edgeseg.errors import ModelFileError
from edgeseg.models import build_model
from edgeseg.models.backbones import Backbone, MobileNetV3Large, ResNet18, VGG16

BACKBONES = [VGG16, ResNet18, MobileNetV3Large]


@pytest.mark.parametrize("cls", BACKBONES)
def test_forward_matches_feature_info(cls: type[Backbone]) -> None:
    torch.manual_seed(0)
    backbone = cls().eval()
    assert [info.stride for info in backbone.feature_info] == [2, 4, 8, 16, 32]
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 96))
    assert sorted(feats) == [2, 4, 8, 16, 32]
    for info in backbone.feature_info:
        backbone.get_submodule(info.name)  # the name points at a real module
        assert feats[info.stride].shape == (1, info.channels, 64 // info.stride, 96 // info.stride)


@pytest.mark.parametrize(
    ("cls", "keys"),
    [
        (VGG16, ["features.0.weight", "features.28.bias"]),
        (ResNet18, ["conv1.weight", "bn1.running_var", "layer2.0.downsample.1.weight", "layer4.1.conv2.weight"]),
        (MobileNetV3Large, ["features.0.1.weight", "features.4.block.2.fc1.weight", "features.16.0.weight"]),
    ],
)
def test_state_dict_uses_torchvision_names(cls: type[Backbone], keys: list[str]) -> None:
    state = cls().state_dict()
    for key in keys:
        assert key in state
    if cls is MobileNetV3Large:  # torchvision: features.4.block.2 is SE(72 -> 24 -> 72)
        assert state["features.4.block.2.fc1.weight"].shape == (24, 72, 1, 1)


def test_load_pretrained_round_trip_ignores_classifier(tmp_path) -> None:
    torch.manual_seed(0)
    source = MobileNetV3Large()
    state = dict(source.state_dict())
    state["classifier.0.weight"] = torch.zeros(1280, 960)  # a torchvision file carries its classifier
    path = tmp_path / "mnv3.pth"
    torch.save(state, path)
    model = build_model("fcn8s_mobilenetv3", num_classes=2, pretrained_backbone=path)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value)


def test_load_pretrained_errors_name_the_file(tmp_path) -> None:
    backbone = MobileNetV3Large()
    missing = tmp_path / "nope.pth"
    with pytest.raises(ModelFileError, match="nope.pth does not exist"):
        backbone.load_pretrained(missing)
    garbled = tmp_path / "garbled.pth"
    garbled.write_bytes(b"truncated: not a torch file")
    with pytest.raises(ModelFileError, match="garbled.pth is not a readable torch file"):
        backbone.load_pretrained(garbled)
    partial = tmp_path / "partial.pth"
    state = dict(backbone.state_dict())
    del state["features.16.0.weight"]
    torch.save(state, partial)
    with pytest.raises(ModelFileError, match=r"partial.pth do not fit MobileNetV3Large: 1 missing .*features.16.0"):
        backbone.load_pretrained(partial)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, wrong)
    with pytest.raises(ModelFileError, match="unexpected"):
        backbone.load_pretrained(wrong)


def test_vgg_accepts_features_only_file(tmp_path) -> None:
    """A torchvision VGG-16 file has no conv fc6/fc7: those keep their init, the 13 convs load."""
    source = VGG16()
    state = {k: v for k, v in source.state_dict().items() if k.startswith("features.")}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    target = VGG16()
    target.load_pretrained(path)
    torch.testing.assert_close(target.features[28].weight, source.features[28].weight)


def test_mobilenetv3_running_stats_move_a_tenth_of_the_way_per_training_step():
    """Momentum 0.1 (not torchvision's 0.01): after one training forward from fresh statistics, the first BatchNorm's
    running mean is 0.1 x the batch mean of the stem conv's output, computed here in float64."""
    import torch
    import torch.nn.functional as F

    from edgeseg.models.backbones import MobileNetV3Large

    torch.manual_seed(0)
    backbone = MobileNetV3Large().train()
    conv, bn = backbone.features[0][0], backbone.features[0][1]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        backbone(x)
    stem = F.conv2d(x.double(), conv.weight.double(), stride=conv.stride, padding=conv.padding)
    torch.testing.assert_close(bn.running_mean.double(), 0.1 * stem.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-7)
