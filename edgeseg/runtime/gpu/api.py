"""The one small interface the runtime's GPU code uses for CUDA: devices, streams, events, pinned/device memory,
async copies and graph capture. Two implementations: cuda-python (NVIDIA's maintained binding, the default) and
pycuda. `cuda_api()` picks one: an explicit name, else $EDGESEG_CUDA_API, else the first importable.

Every method raises edgeseg.errors.CudaError naming the call when CUDA reports an error, so a failure reaches the
CLI as an EdgeSegError, never a traceback from the binding.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg._optional import install_hint, is_available
from edgeseg.errors import BackendUnavailableError, ConfigError

CUDA_APIS = ("cuda-python", "pycuda")
ENV_VAR = "EDGESEG_CUDA_API"
# The module each implementation imports (checked with find_spec, never imported to choose).
_MODULES = {"cuda-python": "cuda.bindings", "pycuda": "pycuda"}


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine's sidecar is compared with: the GPU's name and compute capability ("8.6")."""

    index: int
    name: str
    compute_capability: str
    total_memory_mb: int = 0

    @property
    def cc_tuple(self) -> tuple[int, int]:
        return cc_tuple(self.compute_capability)


def cc_tuple(cc: str) -> tuple[int, int]:
    major, _, minor = str(cc).partition(".")
    return int(major), int(minor or 0)


class CudaApi(ABC):
    """CUDA as the runtime needs it. Handles (streams, events, graphs) are opaque objects of the implementation;
    `stream_handle(stream)` gives the integer cudaStream_t that TensorRT and edgeseg._C take."""

    name: str = "base"
    supports_graphs: bool = False

    # ----- devices -------------------------------------------------------------------------------------------
    @abstractmethod
    def device_count(self) -> int:
        """Visible CUDA devices; CudaError when the driver is missing or too old (its message says which)."""

    @abstractmethod
    def device_info(self, device: int) -> DeviceInfo: ...

    @abstractmethod
    def set_device(self, device: int) -> None:
        """Make `device` current on the calling thread (CUDA's current device is per thread)."""

    # ----- memory ----------------------------------------------------------------------------------------------
    @abstractmethod
    def malloc(self, nbytes: int) -> int:
        """Device memory; returns its address."""

    @abstractmethod
    def free(self, ptr: int) -> None: ...

    @abstractmethod
    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A page-locked host array. The array owns its memory: it is released when the last view of it is gone,
        never earlier, so a caller holding a view can never read freed memory."""

    @abstractmethod
    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None: ...

    @abstractmethod
    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None: ...

    # ----- streams and events ------------------------------------------------------------------------------
    @abstractmethod
    def stream_create(self) -> Any:
        """A non-blocking stream: it never synchronises with the legacy default stream other libraries use."""

    @abstractmethod
    def stream_handle(self, stream: Any) -> int: ...

    @abstractmethod
    def stream_synchronize(self, stream: Any) -> None: ...

    @abstractmethod
    def stream_destroy(self, stream: Any) -> None: ...

    @abstractmethod
    def event_create(self) -> Any: ...

    @abstractmethod
    def event_record(self, event: Any, stream: Any) -> None: ...

    @abstractmethod
    def event_elapsed_ms(self, start: Any, end: Any) -> float: ...

    @abstractmethod
    def event_destroy(self, event: Any) -> None: ...

    # ----- CUDA graphs (supports_graphs) ---------------------------------------------------------------------
    def begin_capture(self, stream: Any) -> None:
        """Start capturing `stream` in thread-local mode (other threads' CUDA calls do not break the capture)."""
        raise BackendUnavailableError(f"the {self.name} CUDA binding cannot capture CUDA graphs; use cuda-python "
                                      f"({ENV_VAR}=cuda-python) or run without cuda_graph")

    def end_capture(self, stream: Any) -> Any:
        """The captured graph; CudaError when the capture was invalidated (the stream is no longer capturing)."""
        raise BackendUnavailableError(f"the {self.name} CUDA binding cannot capture CUDA graphs")

    def graph_instantiate(self, graph: Any) -> Any:
        raise BackendUnavailableError(f"the {self.name} CUDA binding cannot capture CUDA graphs")

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        raise BackendUnavailableError(f"the {self.name} CUDA binding cannot capture CUDA graphs")

    def graph_destroy(self, graph: Any, graph_exec: Any) -> None:
        """Release a graph and its instantiation (either may be None)."""

    def clear_error(self) -> None:
        """Reset CUDA's sticky last-error after a failed capture, so later calls report their own errors."""

    def release(self) -> None:
        """Give back what the binding itself holds (pycuda: retained contexts); buffers are freed by their owners."""


def choose_cuda_api(name: str | None = None) -> str:
    """The implementation to use: `name`, else $EDGESEG_CUDA_API, else the first importable of CUDA_APIS."""
    wanted = name or os.environ.get(ENV_VAR) or "auto"
    if wanted not in ("auto",) + CUDA_APIS:
        where = "cuda_api=" if name else f"${ENV_VAR}"
        raise ConfigError(f"{where} must be one of {('auto',) + CUDA_APIS}, got {wanted!r}")
    if wanted != "auto":
        return wanted
    for candidate in CUDA_APIS:
        if is_available(_MODULES[candidate]):
            return candidate
    raise BackendUnavailableError("running on an NVIDIA GPU needs cuda-python or pycuda; neither is importable. "
                                  f"cuda-python: {install_hint('cuda')}; or pycuda: {install_hint('pycuda')}")


def cuda_api(name: str | CudaApi | None = None) -> CudaApi:
    """A CudaApi: an instance is returned as is; a name (or None: see choose_cuda_api) builds one."""
    if isinstance(name, CudaApi):
        return name
    chosen = choose_cuda_api(name)
    if chosen == "pycuda":
        from edgeseg.runtime.gpu.pycuda_api import PycudaApi

        return PycudaApi()
    from edgeseg.runtime.gpu.cuda_python import CudaPythonApi

    return CudaPythonApi()
