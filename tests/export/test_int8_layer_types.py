"""Issue 9: the INT8 graph for TensorRT is INT8 where TensorRT fuses Q/DQ and FP16 everywhere else.

Checked on the network TensorRT-RTX's own ONNX parser makes of the file (strongly typed, so each layer's output
type is what the engine computes in), for a real FCN (ResNet-18 FCN-8s: residual Adds, max pooling, skip fusions,
ConvTranspose upsampling, a final Resize).
"""

from collections import Counter

import numpy as np
import onnx
import pytest

from edgeseg.export.int8 import qdq_from_onnx
from edgeseg.export.onnx_io import read_meta

trt_rtx = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx (pip install tensorrt-rtx-cu13) is not importable")
pytestmark = pytest.mark.tensorrt

OUTPUT_CAST = "edgeseg_logits_to_fp32"  # the one layer that must give float32: the graph's float32 output


@pytest.fixture(scope="module")
def fcn(tmp_path_factory):
    import torch

    from edgeseg.config import make_meta
    from edgeseg.data import synthetic_frames
    from edgeseg.export.onnx_export import onnx_from_torch
    from edgeseg.models import build_model

    torch.manual_seed(0)
    model = build_model("fcn8s_resnet18", num_classes=5).eval()
    meta = make_meta("fcn8s_resnet18", [f"c{i}" for i in range(5)], (64, 96))
    d = tmp_path_factory.mktemp("fcn")
    fp32 = onnx_from_torch(model, meta, d / "model.onnx")
    frames = list(synthetic_frames(4, (64, 96)))
    return {
        "fp32": fp32,
        "int8": qdq_from_onnx(fp32, d / "model_int8.onnx", frames, method="minmax", progress=False),
        "int8_head": qdq_from_onnx(fp32, d / "head_int8.onnx", frames, method="minmax", keep_head_float=True,
                                   progress=False),
    }


def _layers(path):
    from edgeseg.export.engine import inspect_onnx_layers

    return [r for r in inspect_onnx_layers(path, "tensorrt_rtx") if r.kind != "CONSTANT"]


def _float_layers(path):
    return [(r.layer, r.kind) for r in _layers(path) if r.dtype == "FLOAT"]


def test_fp32_graph_computes_in_float(fcn):
    kinds = Counter(r.kind for r in _layers(fcn["fp32"]) if r.dtype == "FLOAT")
    assert kinds["CONVOLUTION"] == 23 and kinds["ELEMENTWISE"] >= 10 and kinds["POOLING"] == 1


@pytest.mark.parametrize("variant", ["int8", "int8_head"])
def test_int8_graph_has_no_float32_layer_but_the_output_cast(fcn, variant):
    assert _float_layers(fcn[variant]) == [(OUTPUT_CAST, "CAST")]
    kinds = Counter((r.kind, r.dtype) for r in _layers(fcn[variant]))
    assert kinds[("CONVOLUTION", "HALF")] == 23 and kinds[("DECONVOLUTION", "HALF")] == 2
    assert kinds[("POOLING", "HALF")] == 1 and kinds[("RESIZE", "HALF")] == 1
    assert kinds[("QUANTIZE", "INT8")] > 0


def test_qdq_sits_where_tensorrt_fuses_it(fcn):
    """Both inputs of every residual/skip Add, the max pooling input and every Conv/ConvTranspose are quantized;
    Q/DQ is never put on a convolution's output (TensorRT quantizes at the consumer)."""
    model = onnx.load(str(fcn["int8"]))
    producers = {o: n for n in model.graph.node for o in n.output}
    quantized = lambda name: name in producers and producers[name].op_type == "DequantizeLinear"  # noqa: E731
    for node in model.graph.node:
        if node.op_type in ("Add", "MaxPool") and not node.name.endswith("_bias_add"):  # bias adds: see below
            assert all(quantized(i) for i in node.input), node.name
        if node.op_type in ("Conv", "ConvTranspose"):
            assert quantized(node.input[0]) and quantized(node.input[1]), node.name
            scale = next(t for t in model.graph.initializer if t.name == producers[node.input[1]].input[1])
            assert scale.data_type == onnx.TensorProto.FLOAT16  # FP16 Q/DQ scales: the rest stays in half
    # a quantized convolution's bias is a separate FP16 Add (TensorRT fuses it back), never ORT's INT32 bias
    assert all(len(n.input) == 2 for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose"))
    assert read_meta(fcn["int8"]).quantization["float_precision"] == "fp16"
    assert model.opset_import[0].version >= 19


def test_keep_head_float_leaves_the_head_out_of_int8(fcn):
    model = onnx.load(str(fcn["int8_head"]))
    excluded = set(read_meta(fcn["int8_head"]).quantization["excluded_nodes"])
    producers = {o: n for n in model.graph.node for o in n.output}
    heads = [n for n in model.graph.node if n.name in excluded]
    assert {n.op_type for n in heads} >= {"Conv", "ConvTranspose", "Add"}
    for node in heads:  # no DequantizeLinear feeds an excluded layer's weight
        assert not (len(node.input) > 1 and node.input[1] in producers
                    and producers[node.input[1]].op_type == "DequantizeLinear"), node.name


def test_int8_agrees_with_fp32_on_synthetic_scenes(fcn, run_onnx):
    from edgeseg.data import synthetic_frames
    from edgeseg.export.parity import compare
    from edgeseg.runtime.plan import ProcessingPlan

    plan = ProcessingPlan.from_meta(read_meta(fcn["fp32"]), np.float32)
    batches = [plan.preprocess([f]) for f in synthetic_frames(3, (64, 96), seed=5)]
    agreement = [compare(run_onnx(fcn["fp32"], x), run_onnx(fcn["int8"], x))[1] for x in batches]
    assert np.mean(agreement) >= 0.9


def test_int8_runs_the_same_on_onnxruntime_with_and_without_its_optimizer(fcn):
    """ONNX Runtime's CPU optimizer must not change the INT8 graph's results (its bias quantization once wiped out
    FP16-scaled biases): the report measures INT8 accuracy on ONNX Runtime."""
    import onnxruntime as ort

    x = np.random.default_rng(2).standard_normal((1, 3, 64, 96)).astype(np.float32)
    outputs = []
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level, options.log_severity_level = level, 3
        session = ort.InferenceSession(str(fcn["int8"]), options, providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {"input": x})[0])
    np.testing.assert_allclose(outputs[0], outputs[1], atol=0.05 * float(np.abs(outputs[0]).max()))
