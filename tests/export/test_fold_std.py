"""fold_std: the per-channel std folded into the first convolution gives the same logits (ONNX Runtime, both graphs),
with weights checked against a float64 numpy computation and refusals where a fold would not be exact."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.config import META_KEY, make_meta
from edgeseg.errors import ExportError
from edgeseg.export.fold_std import common_std, fold_std
from edgeseg.export.onnx_io import get_meta

MEAN = (0.40, 0.50, 0.30)
STD = (0.20, 0.25, 0.50)  # far apart, so a wrong channel order or ratio shows
SIZE = (7, 9)


def _pixels(rng, n, size=SIZE):
    """RGB 0..255 frames as float64 (N, 3, H, W)."""
    return rng.integers(0, 256, (n, 3, *size)).astype(np.float64)


def _normalise(pixels, mean, std):
    m = np.asarray(mean, np.float64).reshape(1, 3, 1, 1)
    s = np.asarray(std, np.float64).reshape(1, 3, 1, 1)
    return ((pixels / 255.0 - m) / s).astype(np.float32)


def _graph(first="pad", pad_value=None, group=1, tied=False, rng=None):
    """input -> [Pad bottom/right | Relu] -> Conv 3x3 pad 1 (+ a second Conv sharing the weight when `tied`)."""
    rng = rng or np.random.default_rng(0)
    in_channels = 3 // group
    weight = rng.standard_normal((6 if group == 1 else 3, in_channels, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.arange(weight.shape[0], dtype=np.float32), "B")]
    nodes, head = [], "input"
    if first == "pad":
        inits.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 2, 3], np.int64), "pads"))
        pad_inputs = ["input", "pads"]
        if pad_value is not None:
            inits.append(numpy_helper.from_array(np.array(pad_value, np.float32), "pad_value"))
            pad_inputs.append("pad_value")
        nodes.append(helper.make_node("Pad", pad_inputs, ["padded"], mode="constant", name="pad"))
        head = "padded"
    elif first == "relu":
        nodes.append(helper.make_node("Relu", ["input"], ["relu"], name="relu"))
        head = "relu"
    nodes.append(helper.make_node("Shape", ["input"], ["input_shape"], name="shape"))  # shape-only: allowed
    nodes.append(helper.make_node("Conv", [head, "W", "B"], ["logits"], pads=[1, 1, 1, 1], group=group, name="conv1"))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", weight.shape[0], "h", "w"])]
    if tied:  # a second Conv, on a constant, sharing the weight
        inits.append(numpy_helper.from_array(np.ones((1, 3, 4, 4), np.float32), "x2"))
        nodes.append(helper.make_node("Conv", ["x2", "W"], ["other"], pads=[1, 1, 1, 1], name="conv_tied"))
        outputs.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, [1, 6, 4, 4]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, *SIZE])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = make_meta("hand", ["a", "b", "c", "d", "e", "f"][: weight.shape[0]] if group == 1 else ["a", "b", "c"],
                     SIZE, mean=MEAN, std=STD)
    helper.set_model_props(model, {META_KEY: meta.to_json()})
    return model


def test_folded_weights_and_meta_match_a_float64_computation():
    model = _graph()
    folded = fold_std(model)
    s = (0.20 + 0.25 + 0.50) / 3  # by hand: the mean of the three stds
    assert common_std(STD) == pytest.approx(s, abs=1e-15)
    weight = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "W")).astype(np.float64)
    expected = weight * (s / np.array(STD)).reshape(1, 3, 1, 1)
    got = numpy_helper.to_array(next(t for t in folded.graph.initializer if t.name == "W"))
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    bias = numpy_helper.to_array(next(t for t in folded.graph.initializer if t.name == "B"))
    np.testing.assert_array_equal(bias, np.arange(6, dtype=np.float32))  # the mean is not folded: bias unchanged
    meta = get_meta(folded)
    assert meta.std == pytest.approx((s, s, s)) and meta.mean == MEAN
    assert meta.extra["std_folded_from"] == pytest.approx(list(STD))
    assert get_meta(model).std == STD  # the argument is not modified


def test_folded_graph_gives_the_same_logits_at_the_borders_too(run_onnx):
    """Pad (zeros) then a zero-padded 3x3 conv: every output pixel on the border depends on the padding."""
    model = _graph()
    folded = fold_std(model)
    s = get_meta(folded).std[0]
    pixels = _pixels(np.random.default_rng(1), 3)
    expected = run_onnx(model, _normalise(pixels, MEAN, STD))
    got = run_onnx(folded, _normalise(pixels, MEAN, (s, s, s)))
    assert expected.shape == (3, 6, SIZE[0] + 2, SIZE[1] + 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_folding_the_mean_too_would_not_be_exact_at_borders(run_onnx):
    """Why only the std is folded: with the mean moved into the bias, zero padding means black, not the mean."""
    model = _graph()
    pixels = _pixels(np.random.default_rng(2), 1)
    expected = run_onnx(model, _normalise(pixels, MEAN, STD))
    centred = onnx.ModelProto()
    centred.CopyFrom(model)
    weight = numpy_helper.to_array(model.graph.initializer[0]).astype(np.float64)
    scaled = weight / np.array(STD).reshape(1, 3, 1, 1)  # takes x/255 directly
    bias = np.arange(6) - (scaled * np.array(MEAN).reshape(1, 3, 1, 1)).sum(axis=(1, 2, 3))
    centred.graph.initializer[0].CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), "W"))
    centred.graph.initializer[1].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), "B"))
    got = run_onnx(centred, (pixels / 255.0).astype(np.float32))
    np.testing.assert_allclose(got[..., 2:-3, 2:-4], expected[..., 2:-3, 2:-4], rtol=1e-4, atol=1e-4)  # interior
    assert np.abs(got - expected).max() > 0.1  # the borders differ


def test_tiny_fcn_folded_matches_on_a_batch(fp32_onnx, frames, run_onnx):
    """The exported TinyFCN (BatchNorm folded into a padded stride-2 conv, dynamic batch): 3 frames in one batch."""
    from edgeseg.export.frames import float_plan

    folded = fold_std(fp32_onnx)
    original_meta, folded_meta = get_meta(onnx.load(str(fp32_onnx))), get_meta(folded)
    batch = frames[:3]
    expected = run_onnx(fp32_onnx, float_plan(original_meta).preprocess(batch))
    got = run_onnx(folded, float_plan(folded_meta).preprocess(batch))
    assert got.shape[0] == 3
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.999


def test_registry_model_with_input_pad_folds_exactly(tmp_path, run_onnx):
    """fcn8s_resnet18 pads its input to a multiple of 32 before a 7x7 stride-2 conv with padding 3."""
    from edgeseg.export.onnx_export import onnx_from_torch
    from edgeseg.models import build_model

    meta = make_meta("fcn8s_resnet18", ["a", "b", "c"], (40, 56))
    path = onnx_from_torch(build_model("fcn8s_resnet18", num_classes=3).eval(), meta, tmp_path / "m.onnx", max_batch=2)
    readers = [n.op_type for n in onnx.load(str(path)).graph.node if "input" in n.input]
    assert sorted(set(readers)) == ["Pad", "Shape"] and readers.count("Pad") == 1  # Shape: the dynamic batch
    folded = fold_std(path)
    s = get_meta(folded).std[0]
    pixels = _pixels(np.random.default_rng(3), 2, (40, 56))
    expected = run_onnx(path, _normalise(pixels, meta.mean, meta.std))
    got = run_onnx(folded, _normalise(pixels, meta.mean, (s, s, s)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_tied_weight_keeps_its_other_user():
    model = _graph(tied=True)
    folded = fold_std(model)
    conv1, tied = (next(n for n in folded.graph.node if n.name == name) for name in ("conv1", "conv_tied"))
    assert conv1.input[1] != "W" and tied.input[1] == "W"
    original = numpy_helper.to_array(model.graph.initializer[0])
    np.testing.assert_array_equal(numpy_helper.to_array(next(t for t in folded.graph.initializer if t.name == "W")),
                                  original)


@pytest.mark.parametrize("kwargs, message", [
    ({"first": "relu"}, "Relu 'relu' before any Conv"),
    ({"pad_value": 1.0}, "Pad 'pad' before any Conv"),
    ({"group": 3, "first": None}, "group 3"),
])
def test_graphs_where_a_fold_is_not_exact_are_refused(kwargs, message):
    with pytest.raises(ExportError, match=message):
        fold_std(_graph(**kwargs))


def test_uint8_input_graph_is_refused(fp32_onnx):
    from edgeseg.export.graph_edits import add_uint8_input

    with pytest.raises(ExportError, match="uint8_nhwc_bgr.*fold before --uint8-input"):
        fold_std(add_uint8_input(fp32_onnx))
