"""U-Net: its decoder against a float64 reference of the paper's wiring, shapes, gradients, and the commands end to
end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.models import UNet, build_model
from edgeseg.models.backbones import ResNet18
from tests.runtime.onnx_graphs import bilinear_upsample

NAMES = ["unet_resnet18", "unet_mobilenetv3"]


def _conv_bn_relu_reference(z: np.ndarray, layer: nn.Sequential) -> np.ndarray:
    """float64: 3x3 conv (padding 1, no bias), eval-mode BatchNorm written out, ReLU."""
    conv, bn = layer[0], layer[1]
    with torch.no_grad():
        y = F.conv2d(torch.from_numpy(z)[None], conv.weight.double(), padding=1)[0].numpy()
        scale = (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)).numpy()
        shift = bn.bias.double().numpy() - bn.running_mean.double().numpy() * scale
    return np.maximum(y * scale[:, None, None] + shift[:, None, None], 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_decoder_concatenates_the_stride_16_8_4_2_features(name: str, realistic) -> None:
    """Upsample x2, concatenate [decoder, skip] at strides 16, 8, 4 and 2, two conv blocks each, 1x1 score, x2 to
    the input, crop: recomputed in float64 from the backbone's features on the hand-padded input."""
    torch.manual_seed(0)
    model = realistic(build_model(name, num_classes=3))
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        out = model(x)
        feats = model.backbone(F.pad(x, (0, 64 - 53, 0, 64 - 37)))  # padded by hand to 64x64
    y = feats[32][0].double().numpy()
    for stride, block in zip((16, 8, 4, 2), model.decoder):
        up = bilinear_upsample(y, 2, (2 * y.shape[1], 2 * y.shape[2]))
        z = np.concatenate([up, feats[stride][0].double().numpy()])
        y = _conv_bn_relu_reference(_conv_bn_relu_reference(z, block.conv1), block.conv2)
    weight = model.score.weight.detach().double()[:, :, 0, 0].numpy()
    score = np.einsum("kc,chw->khw", weight, y) + model.score.bias.detach().double().numpy()[:, None, None]
    assert score.shape == (3, 32, 32)  # stride 2 on the padded 64x64 input
    expected = bilinear_upsample(score, 2, (64, 64))[:, :37, :53]
    scale = float(np.abs(expected).max())
    assert scale > 1e-3  # a real signal
    np.testing.assert_allclose(out[0].double().numpy(), expected, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("name", NAMES)
def test_any_input_size_and_gradients_reach_encoder_and_decoder(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=4)
    assert (model.name, model.num_classes, model.output_stride) == (name, 4, 2)
    for h, w in ((37, 53), (32, 64)):
        model.zero_grad()
        x = torch.randn(2, 3, h, w)
        out = model(x)
        assert out.shape == (2, 4, h, w)
        assert model.forward_lowres(x).shape == (2, 4, -(-h // 32) * 16, -(-w // 32) * 16)
        F.cross_entropy(out, torch.randint(0, 4, (2, h, w))).backward()
        for conv in (next(m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)),
                     model.decoder[0].conv1[0], model.decoder[-1].conv2[0]):
            assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_unet_rejects_bad_arguments_and_inputs() -> None:
    with pytest.raises(ConfigError, match="4 positive decoder widths"):
        UNet(ResNet18(), num_classes=2, decoder_channels=(64, 32))
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("unet_resnet18", num_classes=0)
    with pytest.raises(ConfigError, match=r"unet_mobilenetv3 expects an \(N, 3, H, W\)"):
        build_model("unet_mobilenetv3", num_classes=2)(torch.zeros(1, 1, 32, 32))


def test_pretrained_backbone_loads_into_the_unet(tmp_path) -> None:
    torch.manual_seed(3)
    source = ResNet18()
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    model = build_model("unet_resnet18", num_classes=2, pretrained_backbone=path)
    torch.testing.assert_close(model.backbone.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


@pytest.mark.slow
def test_train_export_run_take_a_unet_unchanged(tmp_path) -> None:
    """`edgeseg train --model unet_mobilenetv3` -> `export` (parity-checked against PyTorch) -> `run`: the masks
    the runtime writes equal the checkpoint's own argmax on the same preprocessed frames."""
    import cv2

    from edgeseg.cli import main
    from edgeseg.data import write_synthetic_folder, write_synthetic_video
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.training.checkpoint import load_model

    data = write_synthetic_folder(tmp_path / "data", n=4, size=(64, 80), seed=3, val_count=2)
    assert main(["train", "--data", str(data), "--model", "unet_mobilenetv3", "--epochs", "1", "--batch-size", "2",
                 "--image-size", "64", "80", "--out", str(tmp_path / "train"), "--workers", "0"]) == 0
    assert main(["export", str(tmp_path / "train" / "best.pt"), "--out", str(tmp_path / "export")]) == 0
    video = write_synthetic_video(tmp_path / "in.mp4", frames=3, size=(64, 80), seed=1)
    assert main(["run", str(tmp_path / "export" / "model.onnx"), "--source", str(video), "--out",
                 str(tmp_path / "out.mp4"), "--masks", str(tmp_path / "masks")]) == 0
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert len(masks) == 3
    model, meta = load_model(tmp_path / "train" / "best.pt")
    assert meta.model_name == "unet_mobilenetv3"
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    assert ok
    with Segmenter(tmp_path / "export" / "model.onnx") as segmenter:
        batch = segmenter.preprocess([frame]).copy()
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(batch))[0].numpy()
    top2 = np.sort(logits, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-3  # where two classes are within float32 rounding the argmax is a coin toss
    written = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(written[clear], logits.argmax(0)[clear])
