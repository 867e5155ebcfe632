"""FCN heads: output shapes for odd sizes, gradients, bilinear init vs numpy, forward vs upsampled forward_lowres."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ConfigError
from edgeseg.models import FCN, LowResOutput, bilinear_kernel, build_model, list_models
from edgeseg.models.backbones import ResNet18

NUM_CLASSES = 3


def numpy_bilinear_resize(a: np.ndarray, scale: int) -> np.ndarray:
    """Reference: float64 bilinear resize of (..., H, W) by `scale`, half-pixel centres, edge-clamped."""

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_in * scale) + 0.5) / scale - 0.5
        src = np.clip(src, 0, n_in - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    a = np.asarray(a, dtype=np.float64)
    y0, y1, fy = axis(a.shape[-2])
    x0, x1, fx = axis(a.shape[-1])
    rows = a[..., y0, :] * (1 - fy)[:, None] + a[..., y1, :] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


# The 4096-wide paper heads (134M parameters) have their own tests in test_vgg16_paper.py.
FCN_NAMES = [n for n in list_models() if n.startswith("fcn") and not n.endswith("_paper")]


@pytest.mark.parametrize("name", FCN_NAMES)
def test_output_covers_any_input_size_and_gradients_reach_first_conv(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES)
    assert (model.name, model.num_classes) == (name, NUM_CLASSES)
    assert model.output_stride == int(name[3 : name.index("s_")])
    for h, w in ((37, 53), (64, 96)):
        model.zero_grad()
        x = torch.randn(2, 3, h, w)
        out = model(x)
        assert out.shape == (2, NUM_CLASSES, h, w)
        target = torch.randint(0, NUM_CLASSES, (2, h, w))
        F.cross_entropy(out, target).backward()
        grad = first_conv(model).weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name",
                         [n for n in FCN_NAMES if n.startswith("fcn8s")] + ["fcn16s_resnet18", "unet_mobilenetv3"])
@pytest.mark.parametrize("size", [(37, 53), (64, 96)])
def test_forward_is_fixed_bilinear_upsampling_of_forward_lowres(name: str, size: tuple[int, int], realistic) -> None:
    torch.manual_seed(1)
    model = realistic(build_model(name, num_classes=NUM_CLASSES))
    h, w = size
    x = torch.randn(2, 3, h, w)
    s = model.output_stride
    with torch.no_grad():
        out = model(x)
        low = model.forward_lowres(x)
        wrapped = LowResOutput(model)(x)
    assert low.shape == (2, NUM_CLASSES, -(-h // 32) * 32 // s, -(-w // 32) * 32 // s)
    torch.testing.assert_close(wrapped, low, rtol=0, atol=0)
    expected = F.interpolate(low, scale_factor=s, mode="bilinear", align_corners=False)[..., :h, :w]
    scale = float(low.abs().max())
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * scale)
    # The same against an independent float64 numpy resize.
    reference = numpy_bilinear_resize(low.double().numpy(), s)[..., :h, :w]
    np.testing.assert_allclose(out.double().numpy(), reference, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("channels", [1, 4])
def test_bilinear_kernel_conv_transpose_matches_numpy_resize_in_interior(channels: int) -> None:
    torch.manual_seed(2)
    up = nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1, bias=False).double()
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, channels, 4).double())
    x = torch.randn(2, channels, 9, 13, dtype=torch.float64)
    with torch.no_grad():
        out = up(x).numpy()
    assert out.shape == (2, channels, 18, 26)
    reference = numpy_bilinear_resize(x.numpy(), 2)
    # The border row/column differs (transposed conv sees zeros where resize clamps); the interior is exact.
    np.testing.assert_allclose(out[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], rtol=0, atol=1e-12)


def test_bilinear_kernel_is_the_papers_diagonal_filter() -> None:
    weight = bilinear_kernel(3, 3, 4)
    assert weight.shape == (3, 3, 4, 4) and weight.dtype == torch.float32
    row = torch.tensor([0.25, 0.75, 0.75, 0.25])
    for i in range(3):
        for j in range(3):
            expected = torch.outer(row, row) if i == j else torch.zeros(4, 4)
            torch.testing.assert_close(weight[i, j], expected)
    odd = bilinear_kernel(1, 1, 3)[0, 0]  # odd size: centred on the middle tap, peak 1
    torch.testing.assert_close(odd, torch.outer(torch.tensor([0.5, 1.0, 0.5]), torch.tensor([0.5, 1.0, 0.5])))
    with pytest.raises(ConfigError, match="one to one"):
        bilinear_kernel(2, 3, 4)


def test_upsampling_layers_start_bilinear_and_skip_scores_start_at_zero() -> None:
    model = build_model("fcn8s_resnet18", num_classes=NUM_CLASSES)
    for up in (model.up_32to16, model.up_16to8):
        assert (up.kernel_size, up.stride, up.padding, up.bias) == ((4, 4), (2, 2), (1, 1), None)
        torch.testing.assert_close(up.weight.data, bilinear_kernel(NUM_CLASSES, NUM_CLASSES, 4))
    assert model.score_16.weight.abs().sum() == 0 and model.score_8.weight.abs().sum() == 0
    assert not hasattr(build_model("fcn32s_resnet18", num_classes=2), "up_32to16")


def test_fcn_rejects_bad_arguments_and_inputs() -> None:
    with pytest.raises(ConfigError, match="output_stride"):
        FCN(ResNet18(), num_classes=2, output_stride=4)
    with pytest.raises(ConfigError, match="num_classes"):
        FCN(ResNet18(), num_classes=0, output_stride=8)
    model = build_model("fcn32s_mobilenetv3", num_classes=2)
    with pytest.raises(ConfigError, match=r"\(N, 3, H, W\)"):
        model(torch.zeros(3, 32, 32))


def test_low_res_output_keeps_the_models_mode() -> None:
    model = build_model("fcn32s_mobilenetv3", num_classes=2).eval()
    wrapper = LowResOutput(model)
    assert not wrapper.training
    wrapper.train(wrapper.training)  # what torch.onnx.export does on exit
    assert not model.training
    assert (wrapper.name, wrapper.num_classes, wrapper.output_stride) == ("fcn32s_mobilenetv3", 2, 32)
