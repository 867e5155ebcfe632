import numpy as np
import pytest

from edgeseg.data import synthetic_frames
from edgeseg.errors import ConfigError
from edgeseg.runtime.plan import ProcessingPlan
from edgeseg.export.graph_edits import add_argmax, add_uint8_input
from edgeseg.export.onnx_io import get_meta


@pytest.mark.parametrize("dtype", ["uint8", "int32"])
def test_add_argmax_matches_numpy(fp32_onnx, dtype, run_onnx):
    model = add_argmax(fp32_onnx, dtype)
    assert [o.name for o in model.graph.output] == ["classmap"]
    assert get_meta(model).output_format == "classmap"
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    classmap = run_onnx(model, x)
    assert classmap.dtype == np.dtype(dtype) and classmap.shape == (1, 64, 64)
    np.testing.assert_array_equal(classmap, run_onnx(fp32_onnx, x).argmax(axis=1))


def test_add_uint8_input_matches_runtime_preprocessing(fp32_onnx, tiny_meta, run_onnx):
    model = add_uint8_input(fp32_onnx)
    assert [i.name for i in model.graph.input] == ["frame"]
    assert get_meta(model).input_format == "uint8_nhwc_bgr"
    frame = next(synthetic_frames(1, (64, 64), seed=3))  # already at the model's input size: the runtime only normalises
    got = run_onnx(model, frame[None])
    want = run_onnx(fp32_onnx, preprocess(frame, tiny_meta))
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_both_edits_compose(fp32_onnx, run_onnx):
    model = add_argmax(add_uint8_input(fp32_onnx))
    meta = get_meta(model)
    assert (meta.input_format, meta.output_format) == ("uint8_nhwc_bgr", "classmap")
    out = run_onnx(model, np.zeros((1, 64, 64, 3), np.uint8))
    assert out.shape == (1, 64, 64) and out.dtype == np.uint8


def test_argmax_refuses_lowres(tmp_path, tiny_model, tiny_meta):
    from edgeseg.export.onnx_export import onnx_from_torch

    path = onnx_from_torch(tiny_model, tiny_meta, tmp_path / "low.onnx", lowres=True)
    with pytest.raises(ConfigError, match="full-resolution"):
        add_argmax(path)


def preprocess(frame, meta):
    """One frame -> the float graph's (1, 3, H, W) input, by the runtime's plan."""
    return ProcessingPlan.from_meta(meta, np.float32).preprocess([frame])
