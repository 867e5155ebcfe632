"""Type stub for edgeseg._C, the private compiled kernels (cpp_ext/). Use edgeseg.runtime.ops instead: it validates
arguments, allocates outputs and picks CPU or CUDA. CPU functions take C-contiguous numpy arrays and write into
`out`/`mask`; they raise ValueError on arrays of the wrong dtype, rank, shape or layout. CUDA functions (present only
when has_cuda() is True) take device pointers and a cudaStream_t as ints, run asynchronously on that stream and raise
edgeseg.errors.CudaError (also reachable as _C.CudaError: the same class) if the launch fails. Resize sides are at
most 32767 and strides at most 4096 (int32 coordinate maths); larger values raise ValueError."""

from typing import Sequence

import numpy as np
import numpy.typing as npt

from edgeseg.errors import CudaError as CudaError

threading: str  # "std::thread pool"
build_info: dict[str, object]  # {"cxx": ..., "cuda": "13.0" | None, "cuda_architectures": "87,86,89,90" | None}

def has_cuda() -> bool: ...
def cuda_device_count() -> int: ...
def num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...

# ---- CPU --------------------------------------------------------------------------------------------------------
def preprocess(frame: npt.NDArray[np.uint8], out: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> None: ...
# confidence: an (H, W) uint8 plane for the highest softmax probability, round(255 p), or None (not computed).
def argmax(logits: np.ndarray, out: np.ndarray, confidence: npt.NDArray[np.uint8] | None = None) -> None: ...
def upsample_argmax(
    logits: np.ndarray, stride: int, out: npt.NDArray[np.uint8], confidence: npt.NDArray[np.uint8] | None = None
) -> None: ...
def colorize(mask: npt.NDArray[np.uint8], palette: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8]) -> None: ...
def overlay(
    frame: npt.NDArray[np.uint8],
    mask: npt.NDArray[np.uint8],
    palette: npt.NDArray[np.uint8],
    alpha: float,
    out: npt.NDArray[np.uint8],
) -> None: ...
def upsample_argmax_overlay(
    logits: np.ndarray,
    stride: int,
    mask: npt.NDArray[np.uint8],
    frame: npt.NDArray[np.uint8],
    palette: npt.NDArray[np.uint8],
    alpha: float,
    out: npt.NDArray[np.uint8],
) -> None: ...

# ---- CUDA (only when has_cuda()) --------------------------------------------------------------------------------
def preprocess_cuda(
    src_ptr: int, H: int, W: int, src_stride: int, dst_ptr: int, h: int, w: int,
    mean: Sequence[float], std: Sequence[float], fp16: bool, stream: int,
) -> None: ...
# confidence_ptr: a device (H, W) uint8 buffer for the confidence, or 0 (not computed).
def argmax_cuda(
    logits_ptr: int, fp16: bool, C: int, H: int, W: int, out_ptr: int, out_int32: bool, stream: int,
    confidence_ptr: int = 0,
) -> None: ...
def upsample_argmax_cuda(
    logits_ptr: int, fp16: bool, C: int, h: int, w: int, stride: int, out_ptr: int, H: int, W: int, stream: int,
    confidence_ptr: int = 0,
) -> None: ...
def colorize_cuda(mask_ptr: int, H: int, W: int, palette: bytes, out_ptr: int, stream: int) -> None: ...
def overlay_cuda(
    frame_ptr: int, H: int, W: int, mask_ptr: int, h: int, w: int, palette: bytes, alpha: float, out_ptr: int,
    stream: int,
) -> None: ...
def upsample_argmax_overlay_cuda(
    logits_ptr: int, fp16: bool, C: int, h: int, w: int, stride: int, mask_ptr: int, Hm: int, Wm: int,
    frame_ptr: int, H: int, W: int, palette: bytes, alpha: float, out_ptr: int, stream: int,
) -> None: ...
