"""What a deserialized TensorRT engine says about itself: its I/O tensors and optimisation profile.

Used for engines that come without EdgeSeg's sidecar (built by trtexec or another tool): the runner and
`edgeseg annotate` read the tensors from the engine and take the rest of the ModelMeta from the user's flags.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from edgeseg.errors import ModelFileError
from edgeseg.sidecar import TensorInfo

# TensorRT DataType names -> numpy dtype names (the same for tensorrt and tensorrt_rtx)
_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "UINT8": "uint8", "INT32": "int32",
           "INT64": "int64", "BOOL": "bool"}


def engine_tensors(trt: ModuleType, engine: Any, name: str
                   ) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...], tuple[tuple[int, ...], ...] | None]:
    """(inputs, outputs, profile): the engine's I/O tensors (-1 for a dynamic axis) and the (min, opt, max) shapes
    of its first optimisation profile for the input, or None when the input is static."""
    inputs, outputs = [], []
    for index in range(engine.num_io_tensors):
        tensor = engine.get_tensor_name(index)
        dtype = engine.get_tensor_dtype(tensor)
        type_name = getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1])
        if type_name not in _DTYPES:
            raise ModelFileError(f"engine {name}: tensor '{tensor}' is {type_name}, which EdgeSeg does not handle")
        info = TensorInfo(tensor, tuple(int(d) for d in engine.get_tensor_shape(tensor)), _DTYPES[type_name])
        is_input = engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT
        (inputs if is_input else outputs).append(info)
    if len(inputs) != 1 or not outputs:
        raise ModelFileError(f"engine {name} has {len(inputs)} inputs and {len(outputs)} outputs; EdgeSeg runs "
                             "image models with one input and at least one output")
    profile = None
    if any(d < 0 for d in inputs[0].shape):
        shapes = engine.get_tensor_profile_shape(inputs[0].name, 0)
        profile = tuple(tuple(int(d) for d in shape) for shape in shapes)
    return tuple(inputs), tuple(outputs), profile
