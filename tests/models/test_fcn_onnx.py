"""EdgeSeg's exporter (`onnx_from_torch`) gives what PyTorch gives, for a real FCN and U-Net, at every shape of its
profile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeseg.config import make_meta
from edgeseg.models import LowResOutput, build_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SHAPES = [(1, 3, 64, 96), (1, 3, 75, 101), (2, 3, 96, 128)]  # min, opt, max: odd sizes exercise the crop/pad


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn8s_mobilenetv3", "unet_mobilenetv3"])
@pytest.mark.parametrize("lowres", [False, True], ids=["forward", "forward_lowres"])
def test_onnx_from_torch_matches_pytorch(tmp_path, name: str, lowres: bool, realistic) -> None:
    from edgeseg.export.onnx_export import onnx_from_torch, read_meta

    torch.manual_seed(0)
    model = realistic(build_model(name, num_classes=4))
    meta = make_meta(name, ["a", "b", "c", "d"], (75, 101))
    path = onnx_from_torch(model, meta, tmp_path / "model.onnx", dynamic=SHAPES, lowres=lowres)
    written = read_meta(path)
    assert written.input_size == (75, 101) and written.output_stride == (model.output_stride if lowres else 1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = LowResOutput(model) if lowres else model  # PyTorch's own module, independent of the exporter
    rng = np.random.default_rng(1)
    for shape in SHAPES + [(1, 3, 80, 100)]:  # the profile's shapes and one in between
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        (got,) = session.run(None, {"input": x})
        assert got.shape == expected.shape
        if not lowres:
            assert got.shape[-2:] == shape[-2:]
        assert np.abs(expected).max() > 0.1  # a real signal, not vanishing activations
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
        assert np.mean(got.argmax(1) == expected.argmax(1)) > 0.999
    assert not any(n.op_type == "Identity" for n in onnx.load(str(path)).graph.node)  # weights read directly
