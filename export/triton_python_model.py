"""Triton Python-backend model wrapping EdgeSeg's Segmenter (ONNX Runtime + edgeseg._C kernels). Copied into a
model repository as NAME_python/1/model.py by edgeseg.export.triton; it runs inside Triton's Python stub, which must
see an interpreter with edgeseg installed (`edgeseg serve` arranges that).

Contract: `frames` uint8 (N, H, W, 3) BGR at the model's input size in, `classmap` uint8 (N, H, W) out. Triton
checks dtype and shape against config.pbtxt before a request gets here and forms the batches; `execute` runs all
requests of one batch as one Segmenter call and splits the masks back per request.

Tensors cross the stub boundary through DLPack, not `pb_utils.Tensor(name, ndarray)` / `as_numpy()`: the stub's
NumPy bridge is compiled against NumPy 1.x and under NumPy 2 silently reads zeros and returns empty outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

INPUT_NAME, OUTPUT_NAME = "frames", "classmap"


def _quiet_consumed_capsules(unraisable) -> None:
    """The stub renames DLPack capsules it consumed to 'used_dlpack' (the spec says 'used_dltensor'), so NumPy's
    capsule destructor reports a harmless 'incorrect name' on every response; the stub itself frees the tensor."""
    if isinstance(unraisable.exc_value, ValueError) and "PyCapsule_GetPointer" in str(unraisable.exc_value):
        return
    _default_hook(unraisable)


_default_hook = sys.unraisablehook
sys.unraisablehook = _quiet_consumed_capsules


class TritonPythonModel:
    """One instance per Triton model instance; each owns a Segmenter on the ONNX file beside this model.py."""

    def initialize(self, args: dict) -> None:
        from edgeseg.runtime.segmenter import Segmenter

        config = json.loads(args["model_config"])
        onnx = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.segmenter = Segmenter(onnx, backend="onnxruntime")
        height, width = self.segmenter.meta.input_size
        dims = [int(d) for d in config["input"][0]["dims"]]
        if dims != [height, width, 3]:
            raise pb_utils.TritonModelException(
                f"config.pbtxt input dims {dims} do not match {onnx}'s input size {height}x{width}x3")

    def execute(self, requests: list) -> list:
        batches = [np.from_dlpack(pb_utils.get_input_tensor_by_name(r, INPUT_NAME)) for r in requests]
        try:
            masks = self.segmenter.predict([frame for batch in batches for frame in batch])
        except Exception as exc:  # noqa: BLE001 - reported to every client of this batch, not raised into the stub
            error = pb_utils.TritonError(f"edgeseg segmenter failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for batch in batches:
            out = np.ascontiguousarray(np.stack(masks[start:start + len(batch)]))
            start += len(batch)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor.from_dlpack(OUTPUT_NAME, out)]))
        return responses

    def finalize(self) -> None:
        self.segmenter.close()
