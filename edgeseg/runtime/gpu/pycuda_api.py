"""CudaApi on pycuda (`pycuda.driver`, the CUDA driver API), for deployments that already use pycuda.

pycuda works with explicit contexts: `set_device` makes the device's primary context (the one the CUDA runtime,
TensorRT and edgeseg._C use) current on the calling thread, once per thread. pycuda has no stream-capture API, so
CUDA graphs are unavailable here (`supports_graphs` is False; use cuda-python for them).
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any, Callable, TypeVar

import numpy as np

from edgeseg._optional import require
from edgeseg.errors import CudaError
from edgeseg.runtime.gpu.api import CudaApi, DeviceInfo

CU_STREAM_NON_BLOCKING = 0x1  # CUstream_flags: pycuda takes the raw flag value
T = TypeVar("T")


class PycudaApi(CudaApi):
    name = "pycuda"
    supports_graphs = False

    def __init__(self, driver_module: ModuleType | None = None) -> None:
        self._drv = driver_module
        self._initialised = False
        self._contexts: dict[int, Any] = {}  # device -> retained primary context
        self._allocations: dict[int, Any] = {}  # device address -> DeviceAllocation (keeps it alive until free)
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def drv(self) -> ModuleType:
        if self._drv is None:
            self._drv = require("pycuda.driver", "running on an NVIDIA GPU with pycuda")
        if not self._initialised:
            self._guard("cuInit", self._drv.init)
            self._initialised = True
        return self._drv

    def _guard(self, what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """pycuda raises pycuda.driver.Error (and subclasses); the runtime raises CudaError naming the call."""
        drv = self._drv
        try:
            return call(*args, **kwargs)
        except drv.Error as exc:  # type: ignore[union-attr]
            raise CudaError(f"{what} failed: {exc}") from exc

    # ----- devices -------------------------------------------------------------------------------------------
    def device_count(self) -> int:
        drv = self.drv
        return int(self._guard("cuDeviceGetCount", drv.Device.count))

    def device_info(self, device: int) -> DeviceInfo:
        drv = self.drv
        dev = self._guard("cuDeviceGet", drv.Device, device)
        major, minor = self._guard("cuDeviceComputeCapability", dev.compute_capability)
        return DeviceInfo(device, str(dev.name()), f"{major}.{minor}", int(dev.total_memory()) >> 20)

    def set_device(self, device: int) -> None:
        if getattr(self._local, "device", None) == device:
            return  # this thread already has the device's primary context current
        drv = self.drv
        with self._lock:
            context = self._contexts.get(device)
            if context is None:
                context = self._guard("cuDevicePrimaryCtxRetain", drv.Device(device).retain_primary_context)
                self._contexts[device] = context
        if getattr(self._local, "device", None) is not None:
            self._guard("cuCtxPopCurrent", drv.Context.pop)
        self._guard("cuCtxPushCurrent", context.push)
        self._local.device = device

    # ----- memory ----------------------------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        allocation = self._guard("cuMemAlloc", self.drv.mem_alloc, max(int(nbytes), 1))
        ptr = int(allocation)
        self._allocations[ptr] = allocation
        return ptr

    def free(self, ptr: int) -> None:
        allocation = self._allocations.pop(int(ptr), None)
        if allocation is not None:
            self._guard("cuMemFree", allocation.free)

    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        # pycuda's page-locked arrays own their memory (freed with the last view), as the interface requires.
        return self._guard("cuMemHostAlloc", self.drv.pagelocked_empty, tuple(int(s) for s in shape), np.dtype(dtype))

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self._guard("cuMemcpyHtoDAsync", self.drv.memcpy_htod_async, dst, src, stream)

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self._guard("cuMemcpyDtoHAsync", self.drv.memcpy_dtoh_async, dst, src, stream)

    # ----- streams and events ------------------------------------------------------------------------------
    def stream_create(self) -> Any:
        return self._guard("cuStreamCreate", self.drv.Stream, CU_STREAM_NON_BLOCKING)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_synchronize(self, stream: Any) -> None:
        self._guard("cuStreamSynchronize", stream.synchronize)

    def stream_destroy(self, stream: Any) -> None:
        """pycuda destroys a stream when its Stream object is collected; dropping our reference is enough."""

    def event_create(self) -> Any:
        return self._guard("cuEventCreate", self.drv.Event)

    def event_record(self, event: Any, stream: Any) -> None:
        self._guard("cuEventRecord", event.record, stream)

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._guard("cuEventElapsedTime", end.time_since, start))

    def event_destroy(self, event: Any) -> None:
        """Events are released with their pycuda object."""

    def release(self) -> None:
        """Free what is left and release the primary contexts this object retained (call from the loading thread)."""
        for ptr in list(self._allocations):
            self.free(ptr)
        if getattr(self._local, "device", None) is not None:
            self._guard("cuCtxPopCurrent", self.drv.Context.pop)
            self._local.device = None
        for context in self._contexts.values():
            self._guard("cuDevicePrimaryCtxRelease", context.detach)
        self._contexts.clear()
