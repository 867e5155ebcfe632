import numpy as np
import onnx
import pytest
import torch

from edgeseg.errors import ConfigError, ExportError, ModelFileError
from edgeseg.export.onnx_export import onnx_from_torch, read_meta


def test_fp32_export_embeds_meta_and_parity(fp32_onnx, tiny_model, run_onnx):
    meta = read_meta(fp32_onnx)
    assert meta.precision == "fp32" and meta.output_stride == 1 and meta.input_size == (64, 64)
    parity = meta.parity
    assert parity["argmax_agreement"] >= 0.999 and parity["max_abs_err"] < 1e-3
    # the default dynamic batch: checked at batch 1 and at the largest batch
    assert {c["name"] for c in parity["checks"]} == {"random (1, 3, 64, 64)", "random (4, 3, 64, 64)", "synthetic frame"}
    model = onnx.load(str(fp32_onnx))
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(fp32_onnx, x), tiny_model(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_dynamic_export_runs_every_shape(tmp_path, tiny_model, tiny_meta, run_onnx):
    shapes = [(1, 3, 64, 64), (1, 3, 96, 128), (2, 3, 128, 160)]
    path = onnx_from_torch(tiny_model, tiny_meta, tmp_path / "d.onnx", dynamic=shapes)
    meta = read_meta(path)
    assert meta.input_size == (96, 128) and meta.dynamic_shapes[2] == (2, 3, 128, 160)
    assert run_onnx(path, np.zeros((2, 3, 128, 96), np.float32)).shape == (2, 4, 128, 96)


def test_lowres_export_records_stride(tmp_path, tiny_model, tiny_meta, run_onnx):
    path = onnx_from_torch(tiny_model, tiny_meta, tmp_path / "low.onnx", lowres=True)
    assert read_meta(path).output_stride == 2
    assert run_onnx(path, np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 4, 32, 32)


def test_parity_failure_raises_and_writes_nothing(tmp_path, tiny_meta):
    class Noisy(torch.nn.Module):  # differs between the traced export and the eager check
        def forward(self, x):
            return torch.nn.functional.conv2d(x, torch.ones(4, 3, 1, 1)) + torch.rand(1, 4, 1, 1) * 10

    with pytest.raises(ExportError, match="does not match PyTorch"):
        onnx_from_torch(Noisy(), tiny_meta, tmp_path / "bad.onnx")
    assert not list(tmp_path.iterdir())


def test_bad_dynamic_shapes(tmp_path, tiny_model, tiny_meta):
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        onnx_from_torch(tiny_model, tiny_meta, tmp_path / "x.onnx", dynamic=[(1, 3, 96, 96), (1, 3, 64, 64), (1, 3, 128, 128)])


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage-not-onnx" * 10, None])
def test_read_meta_on_corrupt_or_truncated_file(tmp_path, fp32_onnx, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content if content is not None else fp32_onnx.read_bytes()[: fp32_onnx.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="bad.onnx"):
        read_meta(bad)


def test_read_meta_on_foreign_onnx(tmp_path):
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    onnx.save(onnx.helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(ModelFileError, match="no EdgeSeg metadata"):
        read_meta(tmp_path / "foreign.onnx")
