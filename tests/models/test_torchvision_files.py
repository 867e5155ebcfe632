"""Torchvision ImageNet files load into the backbones one to one, and VGG-16's classifier becomes the paper's fc6/fc7.

The files are made here with random weights under torchvision's exact key names and shapes, written out from
torchvision's architectures (resnet18, mobilenet_v3_large, vgg16), not read from EdgeSeg's modules: nothing downloads
and torchvision is not needed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeseg.errors import ModelFileError
from edgeseg.models import build_model
from edgeseg.models.backbones import VGG16Paper


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,), f"{prefix}.running_mean": (channels,),
            f"{prefix}.running_var": (channels,), f"{prefix}.num_batches_tracked": ()}


def resnet18_layout() -> dict[str, tuple[int, ...]]:
    """torchvision.models.resnet18().state_dict(): key -> shape."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    in_ch = 64
    for layer, out_ch in zip((1, 2, 3, 4), (64, 128, 256, 512)):
        for block in (0, 1):
            p = f"layer{layer}.{block}"
            keys[f"{p}.conv1.weight"] = (out_ch, in_ch if block == 0 else out_ch, 3, 3)
            keys.update(_bn(f"{p}.bn1", out_ch))
            keys[f"{p}.conv2.weight"] = (out_ch, out_ch, 3, 3)
            keys.update(_bn(f"{p}.bn2", out_ch))
            if block == 0 and layer > 1:
                keys[f"{p}.downsample.0.weight"] = (out_ch, in_ch, 1, 1)
                keys.update(_bn(f"{p}.downsample.1", out_ch))
        in_ch = out_ch
    keys.update({"fc.weight": (1000, 512), "fc.bias": (1000,)})
    return keys


# torchvision's mobilenet_v3_large config: (in, kernel, expanded, out, SE squeeze channels or 0), features.1-15.
_MNV3_BNECK = [(16, 3, 16, 16, 0), (16, 3, 64, 24, 0), (24, 3, 72, 24, 0), (24, 5, 72, 40, 24), (40, 5, 120, 40, 32),
               (40, 5, 120, 40, 32), (40, 3, 240, 80, 0), (80, 3, 200, 80, 0), (80, 3, 184, 80, 0),
               (80, 3, 184, 80, 0), (80, 3, 480, 112, 120), (112, 3, 672, 112, 168), (112, 5, 672, 160, 168),
               (160, 5, 960, 160, 240), (160, 5, 960, 160, 240)]


def mobilenet_v3_large_layout() -> dict[str, tuple[int, ...]]:
    """torchvision.models.mobilenet_v3_large().state_dict(): key -> shape."""
    keys: dict[str, tuple[int, ...]] = {"features.0.0.weight": (16, 3, 3, 3), **_bn("features.0.1", 16)}
    for index, (in_ch, kernel, expanded, out_ch, squeeze) in enumerate(_MNV3_BNECK, start=1):
        p, j = f"features.{index}.block", 0
        if expanded != in_ch:
            keys[f"{p}.0.0.weight"] = (expanded, in_ch, 1, 1)
            keys.update(_bn(f"{p}.0.1", expanded))
            j = 1
        keys[f"{p}.{j}.0.weight"] = (expanded, 1, kernel, kernel)  # depthwise
        keys.update(_bn(f"{p}.{j}.1", expanded))
        j += 1
        if squeeze:
            keys.update({f"{p}.{j}.fc1.weight": (squeeze, expanded, 1, 1), f"{p}.{j}.fc1.bias": (squeeze,),
                         f"{p}.{j}.fc2.weight": (expanded, squeeze, 1, 1), f"{p}.{j}.fc2.bias": (expanded,)})
            j += 1
        keys[f"{p}.{j}.0.weight"] = (out_ch, expanded, 1, 1)
        keys.update(_bn(f"{p}.{j}.1", out_ch))
    keys["features.16.0.weight"] = (960, 160, 1, 1)
    keys.update(_bn("features.16.1", 960))
    keys.update({"classifier.0.weight": (1280, 960), "classifier.0.bias": (1280,),
                 "classifier.3.weight": (1000, 1280), "classifier.3.bias": (1000,)})
    return keys


VGG16_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256),
               (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512)]


def vgg16_layout() -> dict[str, tuple[int, ...]]:
    """torchvision.models.vgg16().state_dict(): key -> shape."""
    keys: dict[str, tuple[int, ...]] = {}
    for index, in_ch, out_ch in VGG16_CONVS:
        keys[f"features.{index}.weight"] = (out_ch, in_ch, 3, 3)
        keys[f"features.{index}.bias"] = (out_ch,)
    for index, shape in ((0, (4096, 25088)), (3, (4096, 4096)), (6, (1000, 4096))):
        keys[f"classifier.{index}.weight"] = shape
        keys[f"classifier.{index}.bias"] = shape[:1]
    return keys


def random_state(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random weights of the layout's shapes: He-scaled weights (activations neither vanish nor blow up through 13
    convs), small biases, positive running variances, a batch counter."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("weight") and len(shape) > 1:
            fan_in = int(torch.tensor(shape[1:]).prod())
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.1
    return state


@pytest.mark.parametrize(
    ("model_name", "layout", "classifier"),
    [("fcn8s_resnet18", resnet18_layout, "fc."), ("unet_resnet18", resnet18_layout, "fc."),
     ("fcn8s_mobilenetv3", mobilenet_v3_large_layout, "classifier.")],
)
def test_torchvision_file_maps_one_to_one_onto_the_backbone(tmp_path, model_name, layout, classifier):
    state = random_state(layout(), seed=1)
    path = tmp_path / "imagenet.pth"
    torch.save(state, path)
    model = build_model(model_name, num_classes=3, pretrained_backbone=path)
    own = model.backbone.state_dict()
    expected_keys = {k for k in state if not k.startswith(classifier)}
    assert set(own) == expected_keys  # every key used, none left over, nothing of the backbone missing
    for key in expected_keys:
        assert own[key].shape == state[key].shape, key
        torch.testing.assert_close(own[key], state[key], rtol=0, atol=0)


def _classifier_reference(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """torchvision's VGG classifier up to fc7: Linear, ReLU, Dropout, Linear, ReLU, Dropout (eval mode)."""
    head = nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
                         nn.Dropout())
    head.load_state_dict({f"{i}.{p}": state[f"classifier.{i}.{p}"] for i in (0, 3) for p in ("weight", "bias")})
    return head.eval()


@pytest.mark.slow
def test_convolutionalised_fc6_fc7_equal_the_linear_layers(tmp_path):
    """fcn8s_vgg16_paper loaded from a torchvision-layout VGG-16 file: on 224x224 (a 7x7 pool5) the centre fc7 cell is
    the Linear classifier on the flattened pool5; on 320x320 (10x10) each cell whose 7x7 window fits inside is the
    classifier on that window (the conv slides the Linear layer over pool5)."""
    state = random_state(vgg16_layout(), seed=2)
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    model = build_model("fcn8s_vgg16_paper", num_classes=3, pretrained_backbone=path).eval()
    backbone = model.backbone
    for index, _, _ in VGG16_CONVS:  # the 13 convs one to one
        torch.testing.assert_close(backbone.features[index].weight, state[f"features.{index}.weight"], rtol=0, atol=0)
    reference = _classifier_reference(state)
    torch.manual_seed(0)
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224)
        pool5 = backbone.features(x)
        assert pool5.shape == (1, 512, 7, 7)
        fc7 = backbone(x)[32]
        expected = reference(pool5.flatten(1))
        assert fc7.shape == (1, 4096, 7, 7) and float(expected.abs().max()) > 0.1
        torch.testing.assert_close(fc7[:, :, 3, 3], expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
        x = torch.randn(1, 3, 320, 320)
        pool5, fc7 = backbone.features(x), backbone(x)[32]
        for i, j in ((3, 3), (3, 6), (5, 4), (6, 6)):
            expected = reference(pool5[:, :, i - 3 : i + 4, j - 3 : j + 4].flatten(1))
            torch.testing.assert_close(fc7[:, :, i, j], expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
        out = model(torch.randn(1, 3, 75, 101))  # any size: pool5 smaller than 7x7 is fine
        assert out.shape == (1, 3, 75, 101)


def test_paper_head_refuses_a_file_without_the_classifier(tmp_path):
    state = random_state({k: v for k, v in vgg16_layout().items() if k.startswith("features.")}, seed=3)
    path = tmp_path / "features_only.pth"
    torch.save(state, path)
    with pytest.raises(ModelFileError, match=r"4 missing .*fc\.0.*classifier\.0 and classifier\.3.*fcn8s_vgg16"):
        VGG16Paper().load_pretrained(path)
    light = build_model("fcn8s_vgg16", num_classes=2, pretrained_backbone=path)  # the light head takes it
    torch.testing.assert_close(light.backbone.features[28].weight, state["features.28.weight"])
