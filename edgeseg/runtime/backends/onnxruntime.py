"""ONNX Runtime backend: runs .onnx files on the CPU (or CUDA/TensorRT execution providers where installed)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from edgeseg._optional import require
from edgeseg.config import META_KEY, ModelMeta
from edgeseg.errors import ModelFileError
from edgeseg.runtime.backends.base import Backend, TensorSpec

# ONNX Runtime's tensor type names -> numpy dtypes (the graph I/O types EdgeSeg produces).
_ORT_TYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
}


def _spec(node) -> TensorSpec:  # node: onnxruntime.NodeArg
    if node.type not in _ORT_TYPES:
        raise ModelFileError(f"graph tensor '{node.name}' has type {node.type}, which EdgeSeg does not handle")
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorSpec(node.name, shape, _ORT_TYPES[node.type])


class OnnxRuntimeBackend(Backend):
    """One InferenceSession. The output array is freshly allocated by ONNX Runtime on every call."""

    name = "onnxruntime"

    def __init__(self, path, *, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        self._providers = list(providers) if providers else ["CPUExecutionProvider"]
        self._threads = threads
        super().__init__(path)

    def _load_impl(self) -> None:
        ort = require("onnxruntime", "running .onnx models")
        if not self.path.is_file():
            raise ModelFileError(f"ONNX model {self.path} does not exist")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self._threads or (os.cpu_count() or 1)
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=self._providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types for corrupt or truncated files
            raise ModelFileError(f"{self.path} is not a loadable ONNX model: {exc}") from exc
        custom = self._session.get_modelmeta().custom_metadata_map
        if META_KEY not in custom:
            raise ModelFileError(
                f"{self.path} has no EdgeSeg metadata ('{META_KEY}' in metadata_props); export it with `edgeseg export`"
            )
        self.meta = ModelMeta.from_json(custom[META_KEY])
        self.inputs = [_spec(node) for node in self._session.get_inputs()]
        self.outputs = [_spec(node) for node in self._session.get_outputs()]
        self._output_name = self.outputs[0].name

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self._output_name], {self.inputs[0].name: batch})[0]

    def _close_impl(self) -> None:
        del self._session
