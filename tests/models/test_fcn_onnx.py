"""ONNX export (TorchScript exporter, opset 17, dynamic batch/H/W) gives what PyTorch gives, at two input sizes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from edgeseg.models import LowResOutput, build_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.slow
@pytest.mark.parametrize("lowres", [False, True], ids=["forward", "forward_lowres"])
def test_dynamic_shape_export_matches_pytorch(tmp_path, lowres: bool, realistic) -> None:
    torch.manual_seed(0)
    model = realistic(build_model("fcn8s_mobilenetv3", num_classes=4))
    net = LowResOutput(model) if lowres else model
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(
            net,
            (torch.randn(1, 3, 75, 101),),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "h", 3: "w"}},
        )
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 75, 101), (2, 3, 64, 96)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = net(x).numpy()
        (got,) = session.run(None, {"image": x.numpy()})
        assert got.shape == expected.shape
        if not lowres:
            assert got.shape[-2:] == shape[-2:]
        assert np.abs(expected).max() > 0.1  # a real signal, not vanishing activations
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
