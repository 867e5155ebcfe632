"""Inference backends behind one Backend interface. Each imports its heavy dependency only when used."""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import ConfigError, ModelFileError
from edgeseg.files import model_kind
from edgeseg.runtime.backends.base import Backend, TensorSpec
from edgeseg.runtime.backends.model_file import check_model_file

# Backend names the CLI's --backend accepts. 'auto' picks by suffix: .onnx -> ONNX Runtime on the best execution
# provider available (TensorRT EP > CUDA EP > CPU), .engine -> TensorRT.
# 'triton': the model runs on a Triton Inference Server; `path` is its gRPC HOST:PORT (edgeseg.runtime.backends.triton).
BACKENDS = ("auto", "onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt", "triton")

# ONNX Runtime backend name -> the `provider` OnnxRuntimeBackend takes.
_ORT_PROVIDERS = {"onnxruntime": "cpu", "onnxruntime-cuda": "cuda", "onnxruntime-trt": "tensorrt"}


def open_backend(path: str | Path, backend: str = "auto", **options) -> Backend:
    """Open a model file with `backend`; 'auto' goes by suffix (.onnx -> ONNX Runtime, best provider; .engine -> TensorRT)."""
    if backend == "triton":  # a server address, not a file
        from edgeseg.runtime.backends.triton import TritonBackend

        return TritonBackend(str(path), **options)
    path = Path(path)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if path.is_dir():
        check_model_file(path)  # says it is a folder and names the models inside it
    kind = model_kind(path)
    if backend == "auto":
        if kind == "onnx":
            from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

            return OnnxRuntimeBackend(path, provider="auto", **options)
        if kind == "engine":
            backend = "tensorrt"
        else:
            raise ModelFileError(f"don't know how to run {path}: expected a .onnx or .engine file")
    if backend in _ORT_PROVIDERS:
        if kind == "engine":
            raise ConfigError(f"backend {backend!r} runs .onnx files; {path.name} is a TensorRT engine (--backend tensorrt)")
        from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, provider=_ORT_PROVIDERS[backend], **options)
    if kind == "onnx":
        raise ConfigError(
            f"backend 'tensorrt' runs engines; build one from {path.name} with `edgeseg export --engine`, "
            "or run the .onnx with --backend onnxruntime-trt (ONNX Runtime's TensorRT execution provider)"
        )
    from edgeseg.runtime.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(path, **options)


__all__ = ["BACKENDS", "Backend", "TensorSpec", "open_backend"]
