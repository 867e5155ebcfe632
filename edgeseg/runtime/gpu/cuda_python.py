"""CudaApi on cuda-python's runtime binding (`cuda.bindings.runtime`), the default implementation.

The binding returns `(cudaError_t, *values)` from every call; `cuda_check` unwraps that and raises CudaError naming
the call. The module is passed in (tests give a fake that records calls) or imported on first use.
"""

from __future__ import annotations

import ctypes
import weakref
from types import ModuleType
from typing import Any

import numpy as np

from edgeseg._optional import require
from edgeseg.errors import CudaError
from edgeseg.runtime.gpu.api import CudaApi, DeviceInfo


def cudart() -> ModuleType:
    """`cuda.bindings.runtime`, or BackendUnavailableError saying how to install cuda-python."""
    return require("cuda.bindings.runtime", "running on an NVIDIA GPU")


def cuda_check(result: Any, what: str, rt: ModuleType | None = None) -> Any:
    """Unwrap a cuda.bindings return value `(err, *values)`; CudaError naming `what` unless err is cudaSuccess.

    Returns None, the one value, or the tuple of values."""
    rt = rt or cudart()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise CudaError(f"{what} failed: {_error_string(rt, err)}")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)


def _error_string(rt: ModuleType, err: Any) -> str:
    text = rt.cudaGetErrorString(err)[1]
    return text.decode() if isinstance(text, bytes) else str(text)


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return max(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, 1)


class CudaPythonApi(CudaApi):
    name = "cuda-python"
    supports_graphs = True

    def __init__(self, runtime_module: ModuleType | None = None) -> None:
        self._rt = runtime_module

    @property
    def rt(self) -> ModuleType:
        if self._rt is None:
            self._rt = cudart()
        return self._rt

    def _call(self, what: str, result: Any) -> Any:
        return cuda_check(result, what, self.rt)

    # ----- devices -------------------------------------------------------------------------------------------
    def device_count(self) -> int:
        return int(self._call("cudaGetDeviceCount", self.rt.cudaGetDeviceCount()))

    def device_info(self, device: int) -> DeviceInfo:
        props = self._call("cudaGetDeviceProperties", self.rt.cudaGetDeviceProperties(device))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return DeviceInfo(device, name.rstrip("\x00").strip(), f"{props.major}.{props.minor}",
                          int(getattr(props, "totalGlobalMem", 0)) >> 20)

    def set_device(self, device: int) -> None:
        self._call("cudaSetDevice", self.rt.cudaSetDevice(device))

    # ----- memory ----------------------------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", self.rt.cudaMalloc(int(nbytes))))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", self.rt.cudaFree(ptr))

    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        nbytes = _nbytes(shape, dtype)
        ptr = int(self._call("cudaMallocHost", self.rt.cudaMallocHost(nbytes)))
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        # The ctypes block is the base of every numpy view: cudaFreeHost runs when the last view is gone.
        weakref.finalize(raw, _free_host, self.rt, ptr)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync H2D", self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream))

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync D2H", self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream))

    # ----- streams and events ------------------------------------------------------------------------------
    def stream_create(self) -> Any:
        return self._call("cudaStreamCreateWithFlags",
                          self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_synchronize(self, stream: Any) -> None:
        self._call("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))

    def stream_destroy(self, stream: Any) -> None:
        self._call("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    def event_create(self) -> Any:
        return self._call("cudaEventCreate", self.rt.cudaEventCreate())

    def event_record(self, event: Any, stream: Any) -> None:
        self._call("cudaEventRecord", self.rt.cudaEventRecord(event, stream))

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("cudaEventElapsedTime", self.rt.cudaEventElapsedTime(start, end)))

    def event_destroy(self, event: Any) -> None:
        self._call("cudaEventDestroy", self.rt.cudaEventDestroy(event))

    # ----- CUDA graphs -----------------------------------------------------------------------------------------
    def begin_capture(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call("cudaStreamBeginCapture", self.rt.cudaStreamBeginCapture(stream, mode))

    def end_capture(self, stream: Any) -> Any:
        graph = self._call("cudaStreamEndCapture", self.rt.cudaStreamEndCapture(stream))
        if graph is None or not int(graph):
            raise CudaError("cudaStreamEndCapture returned no graph: the capture was invalidated")
        return graph

    def graph_instantiate(self, graph: Any) -> Any:
        return self._call("cudaGraphInstantiate", self.rt.cudaGraphInstantiate(graph, 0))

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        self._call("cudaGraphLaunch", self.rt.cudaGraphLaunch(graph_exec, stream))

    def graph_destroy(self, graph: Any, graph_exec: Any) -> None:
        if graph_exec is not None:
            self.rt.cudaGraphExecDestroy(graph_exec)
        if graph is not None:
            self.rt.cudaGraphDestroy(graph)

    def clear_error(self) -> None:
        self.rt.cudaGetLastError()


def _free_host(rt: ModuleType, ptr: int) -> None:
    # Runs from a finaliser, maybe at interpreter exit after the driver is gone: there is no one to report to.
    rt.cudaFreeHost(ptr)
