"""Inference backends behind one Backend interface. Each imports its heavy dependency only when used."""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import ModelFileError
from edgeseg.runtime.backends.base import Backend, TensorSpec

BACKENDS = ("auto", "onnxruntime", "tensorrt")


def open_backend(path: str | Path, backend: str = "auto", **options) -> Backend:
    """Open a model file with the backend its suffix calls for (.onnx -> ONNX Runtime, .engine -> TensorRT)."""
    path = Path(path)
    if backend == "auto":
        if path.suffix == ".onnx":
            backend = "onnxruntime"
        elif path.suffix in (".engine", ".plan", ".trt"):
            backend = "tensorrt"
        else:
            raise ModelFileError(f"don't know how to run {path}: expected a .onnx or .engine file")
    if backend == "onnxruntime":
        from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, **options)
    if backend == "tensorrt":
        from edgeseg.runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path, **options)
    raise ModelFileError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


__all__ = ["BACKENDS", "Backend", "TensorSpec", "open_backend"]
