"""FP32 ONNX -> FP16 ONNX: `fp16_from_onnx` converts weights and activations with onnxconverter-common.

Ops in `op_block_list` stay in FP32 (the converter puts Casts around them). The default keeps numerically
sensitive reductions and exponentials in FP32 and lets convolutions, ConvTranspose and Resize run in FP16.
Resize's `roi`/`scales` inputs must stay float32 by the ONNX spec; the converter turns them into float16, so
they are restored afterwards. With keep_io_types=True the graph still takes and gives float32.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

from edgeseg._optional import require
from edgeseg.errors import ExportError
from edgeseg.export.onnx_io import get_meta, load_onnx, save_onnx, set_meta

log = logging.getLogger(__name__)

# Numerically sensitive in FP16 (large sums, exponentials, powers) plus ops without FP16 kernels in ONNX Runtime.
SENSITIVE_OPS = ("Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "Exp", "Log",
                 "Pow", "Sqrt", "Reciprocal", "LayerNormalization", "InstanceNormalization", "GroupNormalization")
_NO_FP16 = ("Range", "CumSum", "TopK", "NonMaxSuppression", "RoiAlign", "RandomUniformLike", "Upsample")
DEFAULT_OP_BLOCK_LIST = SENSITIVE_OPS + _NO_FP16


def fp16_from_onnx(
    src: Any,
    dst: str | Path,
    *,
    keep_io_types: bool = True,
    op_block_list: Sequence[str] = DEFAULT_OP_BLOCK_LIST,
    node_block_list: Sequence[str] = (),
) -> Path:
    """Convert an EdgeSeg FP32 ONNX model (path or ModelProto) to FP16 at `dst`; meta.precision becomes 'fp16'."""
    onnx = require("onnx", "converting to FP16")
    float16 = require("onnxconverter_common.float16", "converting to FP16")
    model = load_onnx(src)
    meta = get_meta(model, where=str(src) if not isinstance(src, onnx.ModelProto) else "the model")
    if meta.precision != "fp32":
        raise ExportError(f"fp16_from_onnx needs an FP32 model, got one whose precision is {meta.precision!r}")
    io_types = [(v.name, v.type.tensor_type.elem_type) for v in list(model.graph.input) + list(model.graph.output)]
    try:
        with warnings.catch_warnings(record=True) as caught:  # one warning per tiny weight clamped to 1e-7
            warnings.simplefilter("always")
            converted = float16.convert_float_to_float16(
                model, keep_io_types=keep_io_types, op_block_list=list(op_block_list),
                node_block_list=list(node_block_list),
            )
        clamped = sum("truncated" in str(w.message) for w in caught)
        if clamped:
            log.info("FP16: %d weight values outside the float16 range were clamped", clamped)
    except Exception as exc:  # the converter raises plain Exceptions/ValueErrors on graphs it cannot handle
        raise ExportError(f"FP16 conversion failed: {type(exc).__name__}: {exc}") from exc
    _restore_fp32_resize_params(onnx, converted)
    if keep_io_types:
        _restore_io_types(onnx, converted, dict(io_types))
    set_meta(converted, meta.replace(precision="fp16"))
    try:
        onnx.checker.check_model(converted)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the FP16 graph is invalid: {exc}") from exc
    n16 = sum(1 for t in converted.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    log.info("FP16 model: %d of %d initializers in float16", n16, len(converted.graph.initializer))
    return save_onnx(converted, dst)


def _restore_fp32_resize_params(onnx: Any, model: Any) -> None:
    """Resize's roi (input 1) and scales (input 2) must be float32: undo the converter's FP16 on them."""
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    producers = {out: node for node in model.graph.node for out in node.output}
    inits = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        for index in (1, 2):
            if index >= len(node.input) or not node.input[index]:
                continue
            name = node.input[index]
            producer = producers.get(name)
            if producer is not None and producer.op_type == "Cast" and producer.attribute[0].i == f16:
                node.input[index] = producer.input[0]  # the converter's Cast of an FP32 value: skip it
            elif producer is not None and producer.op_type == "Constant":
                _to_fp32(onnx, producer.attribute[0].t, f16, f32)
            elif name in inits and inits[name].data_type == f16:
                if consumers.get(name, 0) > 1:
                    raise ExportError(f"Resize parameter '{name}' is shared with other nodes; cannot restore float32")
                _to_fp32(onnx, inits[name], f16, f32)


def _to_fp32(onnx: Any, tensor: Any, f16: int, f32: int) -> None:
    if tensor.data_type == f16:
        array = onnx.numpy_helper.to_array(tensor).astype("float32")
        tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))


def _restore_io_types(onnx: Any, model: Any, want: dict[str, int]) -> None:
    """The converter leaves a graph output float16 when a blocked op produces it: add the missing Cast."""
    for value in model.graph.output:
        if value.name in want and value.type.tensor_type.elem_type != want[value.name]:
            inner = value.name + "_fp16"
            for node in model.graph.node:
                node.output[:] = [inner if o == value.name else o for o in node.output]
                node.input[:] = [inner if i == value.name else i for i in node.input]
            model.graph.node.append(
                onnx.helper.make_node("Cast", [inner], [value.name], to=want[value.name], name=value.name + "_to_fp32")
            )
            value.type.tensor_type.elem_type = want[value.name]
