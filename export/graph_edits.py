"""Graph edits that move pre/post-processing into the model, so an engine does them on the GPU.

`add_argmax`: logits (N, C, H, W) -> ArgMax(axis=1) -> Cast -> output 'classmap' (N, H, W) uint8/int32.
`add_uint8_input`: input 'frame' uint8 (N, H, W, 3) BGR -> Cast -> Transpose to NCHW -> flip to RGB ->
(x / 255 - mean) / std as one Mul and one Add -> the original float input. Both update the embedded ModelMeta.
Each takes a path or a ModelProto and returns a new ModelProto (the argument is not modified).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseg._optional import require
from edgeseg.config import ModelMeta
from edgeseg.errors import ConfigError, ExportError
from edgeseg.export.onnx_io import get_meta, load_onnx, set_meta

CLASSMAP_NAME = "classmap"
FRAME_NAME = "frame"
CLASSMAP_DTYPES = ("uint8", "int32")


def add_argmax(model: Any, dtype: str = "uint8") -> Any:
    """Append ArgMax(axis=1, keepdims=0) + Cast to `dtype`: the graph's only output becomes 'classmap' (N, H, W)."""
    onnx = require("onnx", "editing ONNX graphs")
    if dtype not in CLASSMAP_DTYPES:
        raise ConfigError(f"classmap dtype must be one of {CLASSMAP_DTYPES}, got {dtype!r}")
    model = _copy(onnx, load_onnx(model))
    meta = get_meta(model)
    if meta.output_format != "logits":
        raise ExportError(f"the model already outputs {meta.output_format!r}; add_argmax needs logits")
    if meta.output_stride != 1:
        raise ConfigError("--argmax needs full-resolution logits; a lowres graph (output_stride "
                          f"{meta.output_stride}) leaves the upsampling and argmax to the runtime")
    if meta.num_classes > 256 and dtype == "uint8":
        raise ConfigError(f"{meta.num_classes} classes do not fit a uint8 classmap; use dtype='int32'")
    graph = model.graph
    if len(graph.output) != 1:
        raise ExportError(f"add_argmax expects one output, the graph has {len(graph.output)}")
    logits = graph.output[0]
    dims = logits.type.tensor_type.shape.dim
    graph.node.extend([
        onnx.helper.make_node("ArgMax", [logits.name], ["classmap_int64"], axis=1, keepdims=0, name="edgeseg_argmax"),
        onnx.helper.make_node("Cast", ["classmap_int64"], [CLASSMAP_NAME], name="edgeseg_classmap_cast",
                              to=onnx.TensorProto.UINT8 if dtype == "uint8" else onnx.TensorProto.INT32),
    ])
    shape = [d.dim_param or d.dim_value or None for i, d in enumerate(dims) if i != 1]
    elem = onnx.TensorProto.UINT8 if dtype == "uint8" else onnx.TensorProto.INT32
    del graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info(CLASSMAP_NAME, elem, shape))
    set_meta(model, meta.replace(output_format="classmap"))
    onnx.checker.check_model(model)
    return model


def add_uint8_input(model: Any, meta: ModelMeta | None = None) -> Any:
    """Prepend the runtime's normalisation: the graph takes 'frame' uint8 (N, H, W, 3) BGR at meta.input_size."""
    onnx = require("onnx", "editing ONNX graphs")
    model = _copy(onnx, load_onnx(model))
    meta = meta or get_meta(model)
    if meta.input_format != "float_nchw_rgb":
        raise ExportError(f"the model already takes {meta.input_format!r}; add_uint8_input needs a float NCHW input")
    graph = model.graph
    if len(graph.input) != 1:
        raise ExportError(f"add_uint8_input expects one graph input, the graph has {len(graph.input)}")
    old = graph.input[0]
    if old.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ExportError("add_uint8_input needs a float32 graph input (convert to FP16 with keep_io_types=True)")
    n, _, h, w = (d.dim_param or d.dim_value or None for d in old.type.tensor_type.shape.dim)
    mean = np.asarray(meta.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(meta.std, np.float32).reshape(1, 3, 1, 1)
    constants = [
        onnx.numpy_helper.from_array(np.array([2, 1, 0], np.int64), "edgeseg_bgr_to_rgb"),
        onnx.numpy_helper.from_array(1.0 / (255.0 * std), "edgeseg_norm_scale"),
        onnx.numpy_helper.from_array(-mean / std, "edgeseg_norm_shift"),
    ]
    nodes = [
        onnx.helper.make_node("Cast", [FRAME_NAME], ["edgeseg_frame_f32"], to=onnx.TensorProto.FLOAT, name="edgeseg_cast"),
        onnx.helper.make_node("Transpose", ["edgeseg_frame_f32"], ["edgeseg_nchw_bgr"], perm=[0, 3, 1, 2],
                              name="edgeseg_to_nchw"),
        onnx.helper.make_node("Gather", ["edgeseg_nchw_bgr", "edgeseg_bgr_to_rgb"], ["edgeseg_nchw_rgb"], axis=1,
                              name="edgeseg_bgr_to_rgb"),
        onnx.helper.make_node("Mul", ["edgeseg_nchw_rgb", "edgeseg_norm_scale"], ["edgeseg_scaled"], name="edgeseg_scale"),
        onnx.helper.make_node("Add", ["edgeseg_scaled", "edgeseg_norm_shift"], [old.name], name="edgeseg_normalise"),
    ]
    new_input = onnx.helper.make_tensor_value_info(FRAME_NAME, onnx.TensorProto.UINT8, [n, h, w, 3])
    del graph.input[:]
    graph.input.append(new_input)
    graph.initializer.extend(constants)
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)
    set_meta(model, meta.replace(input_format="uint8_nhwc_bgr"))
    onnx.checker.check_model(model)
    return model


def _copy(onnx: Any, model: Any) -> Any:
    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    return clone
