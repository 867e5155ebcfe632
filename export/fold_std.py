"""Fold the input normalisation's per-channel std into the first convolution, for consumers with one scale factor.

DeepStream's nvinfer computes the network input as y = net-scale-factor * (x - offsets[c]) on 0..255 pixels: one
scale for every channel. EdgeSeg's graphs take (x / 255 - mean[c]) / std[c]. With offsets = 255 * mean and
net-scale-factor = 1 / (255 * s) for one common s, the graph receives (x / 255 - mean[c]) / s, which differs from
what it was trained on by the factor s / std[c] per input channel. The first convolution is linear in each input
channel, so multiplying its weights for input channel c by s / std[c] restores the original result exactly:

    conv(W', (x/255 - mean) / s) = sum_c W[:, c] * (s / std[c]) * (x_c/255 - mean_c) / s = conv(W, (x/255 - mean) / std)

Only the std ratio is folded; the mean stays outside the graph (nvinfer's offsets). Folding the mean into the
convolution's bias as well would not be exact: the convolution (and the models' Pad to a multiple of 32) pads with
zeros, and a zero of the normalised input is a pixel at the mean colour, while a zero of an un-centred input would be
a black pixel, so border outputs would change. Scaling by s / std[c] keeps zero at zero, so padding stays exact; so
do the ops allowed between the input and the convolution (Pad with zeros or by reflection/edge, and shape-only ops).

The folded graph is itself an ordinary EdgeSeg float input graph whose ModelMeta has std = (s, s, s): the runtime
runs it unchanged, and a DeepStream config derives from that meta alone.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from edgeseg._optional import require
from edgeseg.errors import ExportError
from edgeseg.export.onnx_io import get_meta, load_onnx, set_meta

__all__ = ["fold_std", "common_std"]

# Ops whose output depends only on their input's shape: they may read the graph input without blocking the fold.
_SHAPE_ONLY = frozenset({"Shape", "Size"})
_PAD_MODES_KEEPING_ZERO = (b"constant", b"reflect", b"edge", b"wrap")


def common_std(std: tuple[float, float, float]) -> float:
    """The one scale the folded graph's input is divided by: the mean of the three stds (so the folded weights stay
    within a few percent of the trained ones, and FP16/INT8 ranges barely move)."""
    return float(np.mean(np.asarray(std, np.float64)))


def fold_std(model: Any, std: float | None = None) -> Any:
    """A copy of an EdgeSeg float-input graph (path or ModelProto) whose first Conv absorbs the per-channel std.

    The result takes (x / 255 - mean) / `std` (default: common_std(meta.std)) and gives the same logits as the
    original on (x / 255 - mean) / meta.std; its ModelMeta records std = (std, std, std). ExportError when the
    graph input reaches anything but Pad / shape-only ops before a plain (group 1) Conv with constant weights.
    """
    onnx = require("onnx", "folding the input std into the first convolution")
    source = load_onnx(model)
    folded = onnx.ModelProto()
    folded.CopyFrom(source)
    meta = get_meta(folded)
    if meta.input_format != "float_nchw_rgb":
        raise ExportError(f"folding the std needs a float NCHW RGB graph input, this graph takes {meta.input_format!r} "
                          "(fold before --uint8-input)")
    target = common_std(meta.std) if std is None else float(std)
    if not target > 0:
        raise ExportError(f"the common std must be positive, got {std}")
    conv = _first_conv(folded.graph)
    _scale_input_channels(onnx, folded.graph, conv, target / np.asarray(meta.std, np.float64))
    extra = {**meta.extra, "std_folded_from": list(meta.std)}
    set_meta(folded, meta.replace(std=(target,) * 3, extra=extra))
    onnx.checker.check_model(folded)
    return folded


def _first_conv(graph: Any) -> Any:
    """The Conv the graph input reaches first, through Pad nodes that keep zero at zero; ExportError otherwise."""
    consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers[name].append((node, index))
    constants = {t.name: t for t in graph.initializer}
    if len(graph.input) != 1:
        raise ExportError(f"folding the std expects one graph input, the graph has {len(graph.input)}")
    tensor = graph.input[0].name
    while True:
        users = [(node, index) for node, index in consumers[tensor] if node.op_type not in _SHAPE_ONLY]
        if len(users) != 1:
            names = [f"{node.op_type} '{node.name}'" for node, _ in users] or ["nothing"]
            raise ExportError(f"cannot fold the std: the normalised input feeds {', '.join(names)}, not one Conv")
        node, index = users[0]
        if node.op_type == "Conv" and index == 0:
            return node
        if node.op_type == "Pad" and index == 0 and _pad_keeps_zero(node, constants):
            tensor = node.output[0]
            continue
        raise ExportError(f"cannot fold the std: the input reaches {node.op_type} '{node.name}' before any Conv "
                          "(only Pad with zeros and shape-only ops may come first)")


def _pad_keeps_zero(node: Any, constants: dict[str, Any]) -> bool:
    from onnx import numpy_helper

    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    if mode not in _PAD_MODES_KEEPING_ZERO:
        return False
    if mode != b"constant" or len(node.input) < 3 or not node.input[2]:
        return True  # reflection/edge copy pixels; a constant pad without a value pads with zeros
    value = constants.get(node.input[2])
    return value is not None and not np.any(numpy_helper.to_array(value))


def _scale_input_channels(onnx: Any, graph: Any, conv: Any, ratio: np.ndarray) -> None:
    """Multiply the Conv's weights for input channel c by ratio[c] (float64, then back to the weights' dtype)."""
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    weights = {t.name: t for t in graph.initializer}
    name = conv.input[1]
    if name not in weights:
        raise ExportError(f"cannot fold the std: the weights of Conv '{conv.name}' are not a constant initializer")
    weight = onnx.numpy_helper.to_array(weights[name])
    if group != 1 or weight.ndim != 4 or weight.shape[1] != len(ratio):
        raise ExportError(f"cannot fold the std: Conv '{conv.name}' (group {group}, weights {weight.shape}) does not "
                          f"take the {len(ratio)} input channels as one group")
    scaled = (weight.astype(np.float64) * ratio.reshape(1, -1, 1, 1)).astype(weight.dtype)
    shared = sum(name in node.input for node in graph.node) > 1
    new_name = f"{name}_std_folded" if shared else name  # a tied weight keeps its other users' values
    tensor = onnx.numpy_helper.from_array(scaled, new_name)
    if shared:
        graph.initializer.append(tensor)
        conv.input[1] = new_name
    else:
        weights[name].CopyFrom(tensor)
