"""FP32 ONNX -> INT8 Q/DQ ONNX: `qdq_from_onnx` calibrates with ONNX Runtime's quantize_static.

Target 'tensorrt' (the default) is an INT8 graph that pays off in a strongly typed engine, following TensorRT's Q/DQ
placement guide and NVIDIA ModelOpt's ONNX recipe:
- Q/DQ on the *inputs* of the ops TensorRT runs in INT8 and fuses: Conv and ConvTranspose (activations per tensor,
  weights per output channel: axis 0, ConvTranspose axis 1), both inputs of element-wise Adds (residual and skip
  fusions, so TensorRT folds the Add into the convolution before it) and pooling. Outputs are not quantized: the
  next consumer's Q does it, so each tensor is quantized once per consumer (DedicatedQDQPair).
- symmetric signed INT8 everywhere (TensorRT has no zero points), biases left in float (TensorRT fuses them).
- everything not quantized runs in FP16, not FP32: weights, biases, Q/DQ scales and activations become float16
  (opset 19, whose Q/DQ take float16 scales), with a Cast to FP16 after the float32 input and back to float32
  before the output. A strongly typed engine computes in exactly these types, so without this step every
  activation, add, pooling and resize between the INT8 convolutions would run in FP32 and the INT8 engine would be
  no faster than the FP16 one. Resize's roi/scales stay float32 (ONNX requires it).
Layers kept out of INT8 (`keep_head_float`, `exclude_nodes`, the `sensitivity_top_k` sweep) run in FP16.

Target 'cpu' is the variant ONNX Runtime runs fastest on x86/ARM CPUs: unsigned asymmetric activations (U8S8),
every op ORT can quantize, FP32 elsewhere, so its graph optimizer fuses QLinearConv chains. It is not for TensorRT
(symmetric signed INT8 only): building an engine from it is refused.

`sensitivity_top_k=k` quantizes one Conv/ConvTranspose at a time (FP32 elsewhere), measures argmax agreement with
FP32 on calibration frames and keeps the k most damaging layers out of INT8 (names in meta.quantization).
Calibration frames are preprocessed by the runtime's ProcessingPlan (edgeseg.export.frames).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from edgeseg._optional import require
from edgeseg.config import ModelMeta
from edgeseg.errors import ConfigError, ExportError
from edgeseg.export.formats import option_default, option_choices
from edgeseg.export.frames import calibration_batches
from edgeseg.export.onnx_io import get_meta, load_onnx, ort_session, save_onnx, set_meta
from edgeseg.export.parity import compare

log = logging.getLogger(__name__)

WEIGHTED_OPS = ("Conv", "ConvTranspose")
WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}  # output-channel axis of each op's weight
# Where TensorRT runs INT8 and fuses Q/DQ: convolutions, both inputs of element-wise adds, pooling.
TENSORRT_OP_TYPES = WEIGHTED_OPS + ("Add", "MaxPool", "AveragePool", "GlobalAveragePool")
FP16_QDQ_OPSET = 19  # the first opset whose QuantizeLinear/DequantizeLinear take float16 scales
# Ops computed in FP32 inside the FP16 rest (large sums and exponentials), as in fp16_from_onnx.
FP32_OPS = ("Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "Exp", "Log", "Pow",
            "Sqrt", "Reciprocal", "LayerNormalization", "InstanceNormalization", "GroupNormalization")


def qdq_from_onnx(
    src: Any,
    dst: str | Path,
    calib_frames: Iterable[np.ndarray] | str | Path,
    *,
    num_frames: int = option_default("calib_frames"),
    method: str = option_default("calib_method"),
    op_types: Sequence[str] | None = None,
    exclude_nodes: Sequence[str] = (),
    keep_head_float: bool = False,
    sensitivity_top_k: int = 0,
    target: str = option_default("int8_target"),
    progress: bool = True,
) -> Path:
    """Quantize an EdgeSeg FP32 ONNX model (path or ModelProto) to INT8 Q/DQ at `dst`; meta.precision = 'int8'.

    `calib_frames`: BGR uint8 frames, an image folder or a video (DataError when none is readable).
    `op_types`: the ops to quantize (default: TENSORRT_OP_TYPES for 'tensorrt', every op ORT can for 'cpu').
    `keep_head_float` leaves the classifier and upsampling layers (and the adds between them) out of INT8.
    """
    onnx = require("onnx", "INT8 quantization")
    quant = require("onnxruntime.quantization", "INT8 quantization")
    _check_arguments(method, target, num_frames, sensitivity_top_k)
    model, meta = _fp32_source(src)
    batches = calibration_batches(calib_frames, meta, num_frames, progress)
    op_types = tuple(op_types) if op_types is not None else (TENSORRT_OP_TYPES if target == "tensorrt" else None)
    excluded = _excluded_nodes(model, op_types, exclude_nodes, keep_head_float)
    options = _recipe(quant, target, method, op_types)
    input_name = model.graph.input[0].name
    sensitivity: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgeseg-int8-") as tmp:
        run = _Quantizer(quant, onnx, model, batches, input_name, Path(tmp), options)
        quantized = run(excluded)  # calibrates every tensor the recipe quantizes; later runs reuse the ranges
        if sensitivity_top_k > 0:
            sensitivity = _sensitivity(run, model, batches, input_name, excluded)
            worst = sorted(sensitivity, key=sensitivity.get)[:sensitivity_top_k]  # lowest agreement first
            log.info("INT8 sensitivity: keeping %s out of INT8 (agreement when quantized alone: %s)", worst,
                     {k: round(sensitivity[k], 4) for k in worst})
            excluded += worst
            quantized = run(excluded)
    _check_weight_axes(quantized)
    if target == "tensorrt":
        quantized = _rest_to_fp16(onnx, quantized)
    info = {"target": target, "calib_method": method, "calib_frames": len(batches),
            "op_types": list(op_types) if op_types else "all", "excluded_nodes": sorted(set(excluded)),
            "sensitivity": sensitivity, "float_precision": "fp16" if target == "tensorrt" else "fp32"}
    set_meta(quantized, meta.replace(precision="int8", quantization=info))
    _check_graph(onnx, quantized)
    return save_onnx(quantized, dst)


# ----- steps -------------------------------------------------------------------------------------------------------
def _check_arguments(method: str, target: str, num_frames: int, sensitivity_top_k: int) -> None:
    if method not in option_choices("calib_method"):
        raise ConfigError(f"calibration method {method!r} is not one of {option_choices('calib_method')}")
    if target not in option_choices("int8_target"):
        raise ConfigError(f"INT8 target {target!r} is not one of {option_choices('int8_target')}")
    if num_frames < 1:
        raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
    if sensitivity_top_k < 0:
        raise ConfigError(f"sensitivity_top_k must be >= 0, got {sensitivity_top_k}")


def _fp32_source(src: Any) -> tuple[Any, ModelMeta]:
    model = load_onnx(src)
    meta = get_meta(model, where="the FP32 model")
    if meta.precision != "fp32" or meta.input_format != "float_nchw_rgb":
        raise ExportError("qdq_from_onnx needs the FP32 float-input model (quantize before add_uint8_input/fp16), "
                          f"got precision {meta.precision!r}, input {meta.input_format!r}")
    return model, meta


def _excluded_nodes(model: Any, op_types: Sequence[str] | None, exclude_nodes: Sequence[str],
                    keep_head_float: bool) -> list[str]:
    excluded = list(exclude_nodes)
    unknown = sorted(set(excluded) - {n.name for n in model.graph.node})
    if unknown:
        raise ConfigError(f"exclude_nodes names nodes that are not in the graph: {unknown}")
    if keep_head_float:
        excluded += _head_nodes(model, op_types)
    return excluded


def _recipe(quant: Any, target: str, method: str, op_types: Sequence[str] | None) -> dict[str, Any]:
    """quantize_static's keyword arguments for a target (see the module docstring)."""
    calibrate = {"entropy": quant.CalibrationMethod.Entropy, "percentile": quant.CalibrationMethod.Percentile,
                 "minmax": quant.CalibrationMethod.MinMax}[method]
    common = dict(quant_format=quant.QuantFormat.QDQ, weight_type=quant.QuantType.QInt8, per_channel=True,
                  calibrate_method=calibrate, op_types_to_quantize=list(op_types) if op_types else None)
    if target == "cpu":  # ORT's fast CPU kernels: U8 activations with zero points, int32 bias
        return dict(common, activation_type=quant.QuantType.QUInt8, extra_options={
            "WeightSymmetric": True, "QDQOpTypePerChannelSupportToAxis": {"ConvTranspose": 1}})
    return dict(common, activation_type=quant.QuantType.QInt8, extra_options={
        "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False, "DedicatedQDQPair": True,
        "QDQOpTypePerChannelSupportToAxis": {"ConvTranspose": 1},
        "OpTypesToExcludeOutputQuantization": list(op_types or ()),  # Q/DQ on inputs only, as TensorRT fuses them
        "ForceQuantizeNoInputCheck": True,  # pooling gets its Q/DQ even when its input is not quantized yet
    })


class _Quantizer:
    """quantize_static over fixed calibration batches; the first call calibrates, later calls reuse the ranges."""

    def __init__(self, quant: Any, onnx: Any, model: Any, batches: list[np.ndarray], input_name: str, tmp: Path,
                 options: dict[str, Any]) -> None:
        self.quant, self.onnx, self.model, self.tmp, self.options = quant, onnx, model, tmp, options
        self.reader = type("Reader", (_Reader, quant.CalibrationDataReader), {})(batches, input_name)
        self.cache = tmp / "calibration.json"

    def __call__(self, excluded: Sequence[str], op_types: Sequence[str] | None = None) -> Any:
        options = dict(self.options, nodes_to_exclude=list(excluded))
        if op_types is not None:
            options["op_types_to_quantize"] = list(op_types)
        out = self.tmp / "q.onnx"
        self.reader.rewind()
        chatter = io.StringIO()  # quantize_static prints its calibration progress; keep it for the debug log
        advice_filter = _DropPreprocessAdvice()
        for handler in logging.getLogger().handlers:
            handler.addFilter(advice_filter)
        try:  # a copy: quantize_static moves the initializers of the ModelProto it is given to external data
            with contextlib.redirect_stdout(chatter):
                self.quant.quantize_static(copy.deepcopy(self.model), str(out), self.reader,
                                           calibration_cache_path=str(self.cache), **options)
        except (ValueError, RuntimeError, KeyError, self.onnx.checker.ValidationError) as exc:
            raise ExportError(f"INT8 quantization failed: {type(exc).__name__}: {exc}") from exc
        finally:
            for handler in logging.getLogger().handlers:
                handler.removeFilter(advice_filter)
            log.debug("quantize_static: %s", chatter.getvalue().strip())
        return self.onnx.load(str(out))


class _Reader:
    """ONNX Runtime CalibrationDataReader over preprocessed (1, 3, H, W) batches."""

    def __init__(self, batches: list[np.ndarray], input_name: str) -> None:
        self._batches, self._name, self._next = batches, input_name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return {self._name: self._batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0


class _DropPreprocessAdvice(logging.Filter):
    """quantize_static logs 'Please consider to run pre-processing' on the root logger every call: our graphs are
    exported with static shapes and folded constants, so the advice is noise in the CLI's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "pre-processing before quantization" not in message and "run pre-processing" not in message


def _sensitivity(run: _Quantizer, model: Any, batches: list[np.ndarray], input_name: str,
                 excluded: Sequence[str]) -> dict[str, float]:
    """Argmax agreement with FP32 when only one Conv/ConvTranspose is quantized (everything else FP32)."""
    probe = batches[: min(8, len(batches))]
    fp32 = ort_session(model)
    reference = [fp32.run(None, {input_name: x})[0] for x in probe]
    candidates = [n.name for n in model.graph.node if n.op_type in WEIGHTED_OPS and n.name not in excluded]
    scores = {}
    for name in candidates:
        single = ort_session(run([n for n in candidates if n != name], op_types=WEIGHTED_OPS))
        scores[name] = float(np.mean([compare(ref, single.run(None, {input_name: x})[0])[1]
                                      for ref, x in zip(reference, probe)]))
    return scores


def _head_nodes(model: Any, op_types: Sequence[str] | None) -> list[str]:
    """The classifier and upsampling: the trailing Conv/ConvTranspose layers with num_classes outputs, and the
    (skip-fusion) Adds fed only by them."""
    layers = [n for n in model.graph.node if n.op_type in WEIGHTED_OPS]
    inits = {t.name: t for t in model.graph.initializer}
    channels = []
    for node in layers:
        weight = inits.get(node.input[1])
        channels.append(weight.dims[WEIGHT_AXIS[node.op_type]] if weight is not None else None)
    if not layers:
        return []
    if channels[-1] is None:
        return [layers[-1].name]
    head = []
    for node, ch in zip(reversed(layers), reversed(channels)):
        if ch != channels[-1]:
            break
        head.append(node.name)
    if op_types is None or "Add" in op_types:
        producers = {o: n.name for n in model.graph.node for o in n.output}
        for node in model.graph.node:
            sources = [producers.get(i) for i in node.input if i not in inits]
            if node.op_type == "Add" and sources and all(s in head for s in sources):
                head.append(node.name)
    return head


def _check_weight_axes(model: Any) -> None:
    """Per-channel weight DequantizeLinear must use each op's output-channel axis (TensorRT requires it)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in WEIGHT_AXIS or len(node.input) < 2:
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        scale = inits[dq.input[1]]
        if len(scale.dims) == 1 and scale.dims[0] > 1 and axis != WEIGHT_AXIS[node.op_type]:
            raise ExportError(f"{node.op_type} '{node.name}' has its weight quantized along axis {axis}; "
                              f"TensorRT needs axis {WEIGHT_AXIS[node.op_type]} (output channels)")


def _rest_to_fp16(onnx: Any, model: Any) -> Any:
    """Everything that is not INT8 becomes FP16 (see the module docstring); graph I/O stays float32."""
    from onnx import version_converter

    if model.opset_import[0].version < FP16_QDQ_OPSET:
        try:
            model = version_converter.convert_version(model, FP16_QDQ_OPSET)
        except Exception as exc:  # the converter raises RuntimeError/ValueError subclasses per unsupported op
            raise ExportError(f"cannot move the INT8 graph to opset {FP16_QDQ_OPSET} for float16 Q/DQ scales: "
                              f"{type(exc).__name__}: {exc}") from exc
    graph = model.graph
    keep32 = {name for node in graph.node if node.op_type == "Resize" for name in node.input[1:3] if name}
    for tensor in graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and tensor.name not in keep32:
            tensor.CopyFrom(_as_fp16(onnx, tensor))
    for node in graph.node:
        _node_to_fp16(onnx, node, keep32)
    body = _split_quantized_biases(onnx, graph)
    head = _cast_inputs(onnx, graph, body)
    tail = _cast_outputs(onnx, graph, body)
    body = _wrap_fp32_ops(onnx, body)
    del graph.node[:]
    graph.node.extend(head + body + tail)
    del graph.value_info[:]  # stale float32 annotations; shapes are re-inferred by every consumer
    return model


def _split_quantized_biases(onnx: Any, graph: Any) -> list[Any]:
    """Conv(x, DQ(w), b) -> Add(Conv(x, DQ(w)), b): TensorRT fuses the Add back into the convolution as its bias,
    while ONNX Runtime's CPU optimizer (WeightBiasQuantization) would otherwise turn b into INT32 with the scale
    x_scale * w_scale, which underflows in float16 and wipes the bias out."""
    producers = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    body = []
    for node in graph.node:
        body.append(node)
        bias = node.input[2] if node.op_type in WEIGHTED_OPS and len(node.input) > 2 else ""
        weight = producers.get(node.input[1]) if len(node.input) > 1 else None
        if not bias or bias not in inits or weight is None or weight.op_type != "DequantizeLinear":
            continue
        shaped = onnx.numpy_helper.from_array(
            onnx.numpy_helper.to_array(inits[bias]).reshape(1, -1, 1, 1), f"{node.name}_bias")
        graph.initializer.append(shaped)
        out = node.output[0]
        node.output[0] = f"{out}_nobias"
        del node.input[2]
        body.append(onnx.helper.make_node("Add", [node.output[0], shaped.name], [out], name=f"{node.name}_bias_add"))
    return body


def _as_fp16(onnx: Any, tensor: Any) -> Any:
    array = onnx.numpy_helper.to_array(tensor)
    if np.any(np.abs(array) > np.finfo(np.float16).max):
        log.warning("FP16: %s has values beyond the float16 range; they are clamped", tensor.name)
    limit = float(np.finfo(np.float16).max)
    return onnx.numpy_helper.from_array(np.clip(array, -limit, limit).astype(np.float16), tensor.name)


def _node_to_fp16(onnx: Any, node: Any, keep32: set[str]) -> None:
    """Float32 constants and casts inside the graph produce float16 instead (Resize parameters excepted)."""
    if node.output[0] in keep32:
        return
    for attr in node.attribute:
        if node.op_type in ("Constant", "ConstantOfShape") and attr.name == "value" \
                and attr.t.data_type == onnx.TensorProto.FLOAT:
            attr.t.CopyFrom(_as_fp16(onnx, attr.t))
        elif node.op_type == "Cast" and attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
            attr.i = onnx.TensorProto.FLOAT16


def _rename(nodes: Sequence[Any], old: str, new: str, outputs: bool) -> None:
    for node in nodes:
        node.input[:] = [new if name == old else name for name in node.input]
        if outputs:
            node.output[:] = [new if name == old else name for name in node.output]


def _cast_inputs(onnx: Any, graph: Any, body: list[Any]) -> list[Any]:
    casts = []
    for value in graph.input:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            inner = value.name + "_fp16"
            _rename(body, value.name, inner, outputs=False)
            casts.append(onnx.helper.make_node("Cast", [value.name], [inner], to=onnx.TensorProto.FLOAT16,
                                               name=f"edgeseg_{value.name}_to_fp16"))
    return casts


def _cast_outputs(onnx: Any, graph: Any, body: list[Any]) -> list[Any]:
    casts = []
    for value in graph.output:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            inner = value.name + "_fp16"
            _rename(body, value.name, inner, outputs=True)
            casts.append(onnx.helper.make_node("Cast", [inner], [value.name], to=onnx.TensorProto.FLOAT,
                                               name=f"edgeseg_{value.name}_to_fp32"))
    return casts


def _wrap_fp32_ops(onnx: Any, body: list[Any]) -> list[Any]:
    """Numerically sensitive ops compute in FP32 between Casts (FCNs have none; heads with Softmax do)."""
    out = []
    for node in body:
        if node.op_type not in FP32_OPS:
            out.append(node)
            continue
        for index, name in enumerate(node.input):
            if name:
                out.append(onnx.helper.make_node("Cast", [name], [f"{name}_{node.name}_fp32"],
                                                 to=onnx.TensorProto.FLOAT, name=f"{node.name}_in{index}_fp32"))
                node.input[index] = f"{name}_{node.name}_fp32"
        outputs = list(node.output)
        node.output[:] = [f"{name}_fp32" for name in outputs]
        out.append(node)
        out.extend(onnx.helper.make_node("Cast", [f"{name}_fp32"], [name], to=onnx.TensorProto.FLOAT16,
                                         name=f"{node.name}_out{i}_fp16") for i, name in enumerate(outputs))
    return out


def _check_graph(onnx: Any, model: Any) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the INT8 graph is invalid: {exc}") from exc
