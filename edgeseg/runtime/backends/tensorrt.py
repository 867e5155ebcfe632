"""TensorRT backend for .engine files built by `edgeseg export --engine`, with TensorRT or TensorRT-RTX.

Every engine has a sidecar `<engine>.json` (written by edgeseg.export.engine) holding the flavour and version of
TensorRT that built it, its I/O tensors, the ModelMeta and the engine's sha256; the backend checks it before
touching the GPU. `import_trt` is the one place that picks the TensorRT flavour; the exporter uses it too.

Buffers: pinned host and device buffers are allocated once per (tensor, shape, dtype) and reused while the key
stays the same; the backend owns its CUDA stream. The array `infer` returns is a view of the pinned output
buffer: it is overwritten by the next call, so copy it if you keep it.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeseg._optional import is_available, require
from edgeseg.config import ModelMeta
from edgeseg.errors import BackendUnavailableError, ConfigError, EdgeSegError, ModelFileError
from edgeseg.runtime.backends.base import Backend, TensorSpec

FLAVOURS = ("tensorrt", "tensorrt_rtx")
SIDECAR_FORMAT = "edgeseg-engine"
SIDECAR_VERSION = 1
NEEDS_GPU = "a .engine file needs an NVIDIA GPU and TensorRT; use the .onnx with ONNX Runtime instead"


def import_trt(flavour: str = "auto") -> tuple[ModuleType, str]:
    """(module, flavour name): `tensorrt` when importable, else `tensorrt_rtx` for 'auto'; or exactly the one asked."""
    if flavour not in ("auto",) + FLAVOURS:
        raise ConfigError(f"TensorRT flavour must be 'auto' or one of {FLAVOURS}, got {flavour!r}")
    if flavour == "auto":
        found = [f for f in FLAVOURS if is_available(f)]
        if not found:
            raise BackendUnavailableError(
                "neither 'tensorrt' nor 'tensorrt_rtx' is importable: install TensorRT (JetPack ships it) "
                "or `pip install tensorrt-rtx-cu13`"
            )
        flavour = found[0]
    return require(flavour, f"TensorRT ({flavour})"), flavour


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The engine's sidecar, checked against the engine file (sha256); ModelFileError when missing or mismatched."""
    engine_path = Path(engine_path)
    side = sidecar_path(engine_path)
    if not engine_path.is_file():
        raise ModelFileError(f"engine {engine_path} does not exist")
    if not side.is_file():
        raise ModelFileError(f"engine {engine_path} has no sidecar {side.name}; rebuild it with `edgeseg export --engine`")
    try:
        data = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"sidecar {side} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ModelFileError(f"{side} is not an EdgeSeg engine sidecar (no '{SIDECAR_FORMAT}' format tag)")
    missing = [k for k in ("flavour", "inputs", "outputs", "meta", "engine_sha256") if k not in data]
    if missing:
        raise ModelFileError(f"sidecar {side} lacks {missing}")
    digest = hashlib.sha256(engine_path.read_bytes()).hexdigest()
    if digest != data["engine_sha256"]:
        raise ModelFileError(f"engine {engine_path} does not match its sidecar (sha256 differs): "
                             "the engine was rebuilt, replaced or truncated; export it again")
    return data


def _specs(entries: list[dict[str, Any]], where: Path) -> list[TensorSpec]:
    try:
        return [TensorSpec(str(e["name"]), tuple(int(d) for d in e["shape"]), np.dtype(e["dtype"])) for e in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"sidecar {where} has malformed I/O tensors: {exc!r}") from exc


class _CudaError(EdgeSegError):
    pass


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT / TensorRT-RTX engine with cuda-python on one GPU."""

    name = "tensorrt"

    def __init__(self, path, *, device: int = 0) -> None:
        self._device = device
        self._buffers: dict[str, tuple[tuple, np.dtype, int, int, np.ndarray]] = {}
        self._stream = None
        super().__init__(path)

    # ----- loading ------------------------------------------------------------------------------------
    def _load_impl(self) -> None:
        self.sidecar = read_sidecar(self.path)  # file checks first: they need no GPU
        side = sidecar_path(self.path)
        self.meta = ModelMeta.from_dict(self.sidecar["meta"])
        self.inputs = _specs(self.sidecar["inputs"], side)
        self.outputs = _specs(self.sidecar["outputs"], side)
        if len(self.inputs) != 1 or not self.outputs:
            raise ModelFileError(f"sidecar {side} lists {len(self.inputs)} inputs and {len(self.outputs)} outputs; "
                                 "EdgeSeg engines have one input and at least one output")
        try:
            trt, flavour = import_trt(self.sidecar["flavour"])
            self._cudart = require("cuda.bindings.runtime", "running TensorRT engines")
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"{NEEDS_GPU} ({exc})") from exc
        err, count = self._cudart.cudaGetDeviceCount()
        if err != self._cudart.cudaError_t.cudaSuccess or count < 1:
            reason = self._cudart.cudaGetErrorString(err)[1].decode() if err else "no CUDA device found"
            raise BackendUnavailableError(f"{NEEDS_GPU} (CUDA: {reason})")
        if self._device >= count:
            raise ConfigError(f"CUDA device {self._device} requested, but only {count} device(s) are visible")
        self._check(self._cudart.cudaSetDevice(self._device), "cudaSetDevice")
        built = self.sidecar.get("trt_version")
        if built and built != trt.__version__:
            raise ModelFileError(f"engine {self.path.name} was built with {flavour} {built}, this is {trt.__version__}: "
                                 "engines are tied to the TensorRT version; rebuild it on this machine")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ModelFileError(f"{flavour} could not deserialize {self.path} (corrupt, or built for another GPU or "
                                 "TensorRT version; see the TensorRT log above): rebuild it on this machine")
        names = {self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)}
        expected = {s.name for s in self.inputs + self.outputs}
        if names != expected:
            raise ModelFileError(f"engine tensors {sorted(names)} differ from its sidecar's {sorted(expected)}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendUnavailableError(f"TensorRT could not create an execution context for {self.path} (GPU memory?)")
        self._stream = self._check(self._cudart.cudaStreamCreate(), "cudaStreamCreate")

    # ----- inference -----------------------------------------------------------------------------------
    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        cudart, stream = self._cudart, self._stream
        spec = self.inputs[0]
        if not self._context.set_input_shape(spec.name, tuple(batch.shape)):
            raise ConfigError(f"shape {batch.shape} is outside the engine's optimisation profile "
                              f"(sidecar 'profile': {self.sidecar.get('profile')})")
        host, device = self._buffer(spec.name, tuple(batch.shape), batch.dtype)
        np.copyto(host, batch)
        kind = cudart.cudaMemcpyKind
        self._check(cudart.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, kind.cudaMemcpyHostToDevice, stream),
                    "cudaMemcpyAsync H2D")
        self._context.set_tensor_address(spec.name, device)
        results = []
        for out in self.outputs:
            shape = tuple(self._context.get_tensor_shape(out.name))
            out_host, out_device = self._buffer(out.name, shape, out.dtype)
            self._context.set_tensor_address(out.name, out_device)
            results.append((out_host, out_device))
        if not self._context.execute_async_v3(int(stream)):
            raise EdgeSegError(f"TensorRT execution of {self.path.name} failed (see the TensorRT log)")
        for out_host, out_device in results:
            self._check(cudart.cudaMemcpyAsync(out_host.ctypes.data, out_device, out_host.nbytes,
                                               kind.cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync D2H")
        self._check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return results[0][0]

    def _buffer(self, name: str, shape: tuple, dtype: np.dtype) -> tuple[np.ndarray, int]:
        """(pinned host array, device pointer) for `name`, reallocated only when (shape, dtype) changes."""
        dtype = np.dtype(dtype)
        cached = self._buffers.get(name)
        if cached is not None and cached[0] == shape and cached[1] == dtype:
            return cached[4], cached[3]
        if cached is not None:
            self._free(cached)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        host_ptr = self._check(self._cudart.cudaMallocHost(nbytes), "cudaMallocHost")
        device_ptr = self._check(self._cudart.cudaMalloc(nbytes), "cudaMalloc")
        raw = (ctypes.c_byte * nbytes).from_address(host_ptr)
        host = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
        self._buffers[name] = (shape, dtype, host_ptr, device_ptr, host)
        return host, device_ptr

    def _free(self, entry) -> None:
        self._cudart.cudaFreeHost(entry[2])
        self._cudart.cudaFree(entry[3])

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self._cudart.cudaError_t.cudaSuccess:
            raise _CudaError(f"{what} failed: {self._cudart.cudaGetErrorString(err)[1].decode()}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def _close_impl(self) -> None:
        if self._stream is not None:
            self._cudart.cudaStreamSynchronize(self._stream)
        for entry in self._buffers.values():
            self._free(entry)
        self._buffers.clear()
        self._context = self._engine = None
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
