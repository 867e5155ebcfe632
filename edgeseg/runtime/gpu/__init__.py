"""The runtime's GPU layer: one CudaApi interface (cuda-python or pycuda, see `api`), buffers and timing on it.

Importing this package needs neither cuda-python, pycuda nor a GPU; bindings are imported on first use. No torch.
"""

from __future__ import annotations

from edgeseg._optional import is_available
from edgeseg.errors import CudaError
from edgeseg.runtime.gpu.api import CUDA_APIS, ENV_VAR, CudaApi, DeviceInfo, cc_tuple, choose_cuda_api, cuda_api
from edgeseg.runtime.gpu.buffers import BufferCache, DeviceBuffer, EventTimer, HostDevicePair, PinnedBuffer, pair_cache
from edgeseg.runtime.gpu.cuda_python import CudaPythonApi, cuda_check, cudart


def gpu_available() -> bool:
    """True when cuda-python is importable and sees at least one CUDA device (never raises)."""
    if not is_available("cuda.bindings"):
        return False
    try:
        return CudaPythonApi().device_count() > 0
    except CudaError:  # no driver, or one too old: no usable GPU
        return False


__all__ = [
    "CUDA_APIS", "ENV_VAR", "BufferCache", "CudaApi", "CudaError", "CudaPythonApi", "DeviceBuffer", "DeviceInfo",
    "EventTimer", "HostDevicePair", "PinnedBuffer", "cc_tuple", "choose_cuda_api", "cuda_api", "cuda_check",
    "cudart", "gpu_available", "pair_cache",
]
