"""FP32 ONNX -> INT8 Q/DQ ONNX for TensorRT: `qdq_from_onnx` calibrates with ONNX Runtime's quantize_static.

TensorRT's recipe for explicit quantization: QDQ format, symmetric signed INT8 for activations (per tensor) and
weights (per output channel), biases left in float (TensorRT fuses them; it has no INT32 bias DQ), one dedicated
Q/DQ pair per consumer. ConvTranspose weights are (C_in, C_out, kH, kW): their per-channel axis is 1, which we
force (QDQOpTypePerChannelSupportToAxis) and check. Calibration frames are preprocessed like the runtime.

`target='cpu'` makes the variant ONNX Runtime runs fastest on x86/ARM CPUs instead: unsigned asymmetric
activations (U8S8) and every op ORT can quantize (Add, pooling...), so its graph optimizer fuses QLinearConv
chains; on the 2-core Xeon here it runs FCN-8s about 3x faster than FP32 where the TensorRT recipe is slower than FP32.
It is not for TensorRT, which needs symmetric signed INT8: building an engine from it is refused.

`sensitivity_top_k=k` quantizes one layer at a time, measures argmax agreement with FP32 on calibration frames
and keeps the k most damaging layers in float (their names are recorded in meta.quantization).
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
from edgeseg.errors import ConfigError, ExportError
from edgeseg.export.frames import iter_frames, preprocess
from edgeseg.export.onnx_io import get_meta, load_onnx, ort_session, save_onnx, set_meta
from edgeseg.export.parity import compare

log = logging.getLogger(__name__)

CALIB_METHODS = ("entropy", "percentile", "minmax")
INT8_TARGETS = ("tensorrt", "cpu")
DEFAULT_OP_TYPES = ("Conv", "ConvTranspose")
WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}  # output-channel axis of each op's weight


def qdq_from_onnx(
    src: Any,
    dst: str | Path,
    calib_frames: Iterable[np.ndarray] | str | Path,
    *,
    num_frames: int = 64,
    method: str = "entropy",
    op_types: Sequence[str] = DEFAULT_OP_TYPES,
    exclude_nodes: Sequence[str] = (),
    keep_head_float: bool = False,
    sensitivity_top_k: int = 0,
    target: str = "tensorrt",
    progress: bool = True,
) -> Path:
    """Quantize an EdgeSeg FP32 ONNX model (path or ModelProto) to INT8 Q/DQ at `dst`; meta.precision = 'int8'.

    `calib_frames`: BGR uint8 frames, an image folder or a video (DataError when none is readable).
    `keep_head_float` leaves the last Conv/ConvTranspose layers (the classifier and upsampling) unquantized.
    """
    onnx = require("onnx", "INT8 quantization")
    quant = require("onnxruntime.quantization", "INT8 quantization")
    if method not in CALIB_METHODS:
        raise ConfigError(f"calibration method {method!r} is not one of {CALIB_METHODS}")
    if target not in INT8_TARGETS:
        raise ConfigError(f"INT8 target {target!r} is not one of {INT8_TARGETS}")
    if num_frames < 1:
        raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
    model = load_onnx(src)
    meta = get_meta(model, where="the FP32 model")
    if meta.precision != "fp32" or meta.input_format != "float_nchw_rgb":
        raise ExportError("qdq_from_onnx needs the FP32 float-input model (quantize before add_uint8_input/fp16), "
                          f"got precision {meta.precision!r}, input {meta.input_format!r}")
    input_name = model.graph.input[0].name
    size = tuple(meta.dynamic_shapes[1][2:]) if meta.dynamic_shapes else meta.input_size
    batches = _calibration_batches(calib_frames, meta, size, num_frames, progress)

    excluded = list(exclude_nodes)
    quantizable = [n.name for n in model.graph.node if n.op_type in op_types]
    unknown = sorted(set(excluded) - {n.name for n in model.graph.node})
    if unknown:
        raise ConfigError(f"exclude_nodes names nodes that are not in the graph: {unknown}")
    if keep_head_float:
        excluded += _head_nodes(model, op_types)
    options = dict(
        quant_format=quant.QuantFormat.QDQ, activation_type=quant.QuantType.QInt8, weight_type=quant.QuantType.QInt8,
        per_channel=True, op_types_to_quantize=list(op_types),
        calibrate_method={"entropy": quant.CalibrationMethod.Entropy, "percentile": quant.CalibrationMethod.Percentile,
                          "minmax": quant.CalibrationMethod.MinMax}[method],
        extra_options={
            "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False, "DedicatedQDQPair": True,
            "QDQOpTypePerChannelSupportToAxis": {"ConvTranspose": 1},
        },
    )
    if target == "cpu":  # ORT's fast CPU kernels: U8 activations with zero points, all quantizable ops, int32 bias
        options.update(activation_type=quant.QuantType.QUInt8, op_types_to_quantize=None)
        options["extra_options"] = {"WeightSymmetric": True, "QDQOpTypePerChannelSupportToAxis": {"ConvTranspose": 1}}
    sensitivity: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgeseg-int8-") as tmp:
        cache = Path(tmp) / "calibration.json"  # calibrate once; sensitivity runs reuse the ranges
        quantized = _quantize(quant, onnx, model, batches, input_name, Path(tmp) / "q.onnx", cache,
                              nodes_to_exclude=excluded, **options)
        if sensitivity_top_k > 0:
            sensitivity = _sensitivity(quant, onnx, model, batches, input_name, tmp, cache, quantizable, excluded, options)
            worst = sorted(sensitivity, key=sensitivity.get)[:sensitivity_top_k]  # lowest agreement first
            log.info("INT8 sensitivity: keeping %s in float (agreement when quantized alone: %s)", worst,
                     {k: round(sensitivity[k], 4) for k in worst})
            excluded += worst
            quantized = _quantize(quant, onnx, model, batches, input_name, Path(tmp) / "q.onnx", cache,
                                  nodes_to_exclude=excluded, **options)
    _check_weight_axes(onnx, quantized)
    info = {"calib_method": method, "calib_frames": len(batches), "excluded_nodes": sorted(set(excluded)),
            "sensitivity": sensitivity, "target": target}
    set_meta(quantized, meta.replace(precision="int8", quantization=info))
    return save_onnx(quantized, dst)


def _calibration_batches(source, meta, size, num_frames, progress) -> list[np.ndarray]:
    tqdm = require("tqdm", "showing calibration progress").tqdm
    frames = iter_frames(source, limit=num_frames)
    return [preprocess(f, meta, size) for f in tqdm(frames, total=num_frames, desc="INT8 calibration frames",
                                                   unit="frame", disable=not progress)]


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
        return "pre-processing before quantization" not in record.getMessage() and \
            "run pre-processing" not in record.getMessage()


def _quantize(quant, onnx, model, batches, input_name, out: Path, cache: Path, **options) -> Any:
    reader = type("Reader", (_Reader, quant.CalibrationDataReader), {})(batches, input_name)
    chatter = io.StringIO()  # quantize_static prints its calibration progress; keep it for the debug log
    advice_filter = _DropPreprocessAdvice()
    for handler in logging.getLogger().handlers:
        handler.addFilter(advice_filter)
    try:  # a copy: quantize_static moves the initializers of the ModelProto it is given to external data
        with contextlib.redirect_stdout(chatter):
            quant.quantize_static(copy.deepcopy(model), str(out), reader, calibration_cache_path=str(cache), **options)
    except (ValueError, RuntimeError, KeyError, onnx.checker.ValidationError) as exc:
        raise ExportError(f"INT8 quantization failed: {type(exc).__name__}: {exc}") from exc
    finally:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(advice_filter)
        log.debug("quantize_static: %s", chatter.getvalue().strip())
    return onnx.load(str(out))


def _sensitivity(quant, onnx, model, batches, input_name, tmp, cache, quantizable, excluded, options) -> dict[str, float]:
    """Argmax agreement with FP32 when only one layer is quantized, for each quantizable layer."""
    probe = batches[: min(8, len(batches))]
    fp32 = ort_session(model)
    reference = [fp32.run(None, {input_name: x})[0] for x in probe]
    scores = {}
    for name in quantizable:
        if name in excluded:
            continue
        others = [n for n in quantizable if n != name]
        single = _quantize(quant, onnx, model, batches, input_name, Path(tmp) / "one.onnx", cache,
                           nodes_to_exclude=others, **options)
        session = ort_session(single)
        scores[name] = float(np.mean([compare(ref, session.run(None, {input_name: x})[0])[1]
                                      for ref, x in zip(reference, probe)]))
    return scores


def _head_nodes(model, op_types) -> list[str]:
    """The Conv/ConvTranspose layers after the last one with more than (num_classes) outputs: classifier + upsampling."""
    layers = [n for n in model.graph.node if n.op_type in op_types]
    inits = {t.name: t for t in model.graph.initializer}
    channels = []
    for node in layers:
        weight = inits.get(node.input[1])
        axis = WEIGHT_AXIS.get(node.op_type, 0)
        channels.append(weight.dims[axis] if weight is not None else None)
    if not channels or channels[-1] is None:
        return [layers[-1].name] if layers else []
    head = []
    for node, ch in zip(reversed(layers), reversed(channels)):
        if ch != channels[-1]:
            break
        head.append(node.name)
    return head


def _check_weight_axes(onnx, model) -> None:
    """Per-channel weight DequantizeLinear must use each op's output-channel axis (TensorRT requires it)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    inits = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in WEIGHT_AXIS or len(node.input) < 2:
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        scale = next(t for t in model.graph.initializer if t.name == dq.input[1])
        if len(scale.dims) == 1 and scale.dims[0] > 1 and axis != WEIGHT_AXIS[node.op_type]:
            raise ExportError(f"{node.op_type} '{node.name}' has its weight quantized along axis {axis}; "
                              f"TensorRT needs axis {WEIGHT_AXIS[node.op_type]} (output channels)")
