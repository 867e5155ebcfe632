"""Small cuda-python helpers for the runtime's device path: error checks, pinned/device buffers, a buffer cache that
reallocates only when the full (shape, dtype) key changes, and CUDA-event timing.

Everything here imports `cuda.bindings.runtime` lazily (through `cudart()`), so importing this module needs neither
cuda-python nor a GPU. No torch anywhere.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Generic, Hashable, TypeVar

import numpy as np

from edgeseg._optional import is_available, require
from edgeseg.errors import EdgeSegError


class CudaError(EdgeSegError):
    """A CUDA runtime call failed; the message names the call and CUDA's error string."""


def cudart() -> ModuleType:
    """`cuda.bindings.runtime`, or BackendUnavailableError saying how to install cuda-python."""
    return require("cuda.bindings.runtime", "running on an NVIDIA GPU")


def gpu_available() -> bool:
    """True when cuda-python is importable and cudaGetDeviceCount sees at least one device (never raises)."""
    if not is_available("cuda.bindings"):
        return False
    rt = cudart()
    err, count = rt.cudaGetDeviceCount()
    return err == rt.cudaError_t.cudaSuccess and count > 0


def cuda_check(result: Any, what: str) -> Any:
    """Unwrap a cuda.bindings return value `(err, *values)`; CudaError naming `what` unless err is cudaSuccess.

    Returns None, the one value, or the tuple of values."""
    rt = cudart()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise CudaError(f"{what} failed: {rt.cudaGetErrorString(err)[1].decode()}")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return max(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, 1)


class PinnedBuffer:
    """Page-locked host memory viewed as a numpy array of `shape` and `dtype` (`.array`); free() releases it."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.nbytes = _nbytes(self.shape, self.dtype)
        self.ptr: int = int(cuda_check(cudart().cudaMallocHost(self.nbytes), "cudaMallocHost"))
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        count = int(np.prod(self.shape, dtype=np.int64))
        self.array = np.frombuffer(raw, dtype=self.dtype, count=count).reshape(self.shape)

    def free(self) -> None:
        if self.ptr:
            self.array = None  # type: ignore[assignment]
            cudart().cudaFreeHost(self.ptr)
            self.ptr = 0


class DeviceBuffer:
    """cudaMalloc'd device memory for `shape` and `dtype`; `.ptr` is the device address as an int; free() releases it."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.nbytes = _nbytes(self.shape, self.dtype)
        self.ptr: int = int(cuda_check(cudart().cudaMalloc(self.nbytes), "cudaMalloc"))

    def item_ptr(self, index: int) -> int:
        """Device address of `buffer[index]` along the first (batch) axis."""
        per_item = self.nbytes // max(self.shape[0], 1) if self.shape else self.nbytes
        return self.ptr + index * per_item

    def free(self) -> None:
        if self.ptr:
            cudart().cudaFree(self.ptr)
            self.ptr = 0


@dataclass
class HostDevicePair:
    """A pinned host buffer and a device buffer of the same shape and dtype."""

    host: PinnedBuffer
    device: DeviceBuffer

    @staticmethod
    def allocate(shape: tuple[int, ...], dtype: Any) -> "HostDevicePair":
        host = PinnedBuffer(shape, dtype)
        try:
            return HostDevicePair(host, DeviceBuffer(shape, dtype))
        except CudaError:
            host.free()
            raise

    def free(self) -> None:
        self.host.free()
        self.device.free()


T = TypeVar("T")


@dataclass
class BufferCache(Generic[T]):
    """Buffers by name, reallocated only when the full (shape, dtype) key of that name changes.

    `allocate(shape, dtype)` makes one and `free(buffer)` releases it; the defaults make HostDevicePairs. Tests pass
    plain callables, so the reuse rule is checked without a GPU. `allocations` counts every allocation made.
    """

    allocate: Callable[[tuple[int, ...], np.dtype], T] = HostDevicePair.allocate  # type: ignore[assignment]
    release: Callable[[T], None] = lambda buffer: buffer.free()  # type: ignore[attr-defined]  # noqa: E731
    allocations: int = 0
    _entries: dict[Hashable, tuple[tuple[int, ...], np.dtype, T]] = field(default_factory=dict)

    def get(self, name: Hashable, shape: tuple[int, ...], dtype: Any) -> T:
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        cached = self._entries.get(name)
        if cached is not None and cached[0] == shape and cached[1] == dtype:
            return cached[2]
        if cached is not None:
            del self._entries[name]
            self.release(cached[2])
        buffer = self.allocate(shape, dtype)
        self.allocations += 1
        self._entries[name] = (shape, dtype, buffer)
        return buffer

    def __contains__(self, name: Hashable) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Release every buffer (the caller synchronizes its stream first)."""
        entries, self._entries = self._entries, {}
        for _, _, buffer in entries.values():
            self.release(buffer)


class EventTimer:
    """CUDA events recorded on one stream at named marks; `elapsed_ms()` (after the stream is synchronized) gives the
    GPU time between consecutive marks: {"b": t(a->b), "c": t(b->c), ...} for marks a, b, c. Events are made once."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._events: dict[str, Any] = {}
        self._order: list[str] = []

    def mark(self, name: str) -> None:
        rt = cudart()
        if name not in self._events:
            self._events[name] = cuda_check(rt.cudaEventCreate(), "cudaEventCreate")
        if name not in self._order:
            self._order.append(name)
        cuda_check(rt.cudaEventRecord(self._events[name], self._stream), "cudaEventRecord")

    def reset(self) -> None:
        self._order.clear()

    def elapsed_ms(self) -> dict[str, float]:
        rt = cudart()
        out = {}
        for first, second in zip(self._order, self._order[1:]):
            out[second] = float(cuda_check(rt.cudaEventElapsedTime(self._events[first], self._events[second]),
                                           "cudaEventElapsedTime"))
        return out

    def free(self) -> None:
        rt = cudart()
        for event in self._events.values():
            rt.cudaEventDestroy(event)
        self._events.clear()
        self._order.clear()
