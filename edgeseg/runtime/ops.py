"""Pre/post-processing kernels for the runtime: one API that runs where the data is.

* numpy arrays -> the compiled C++ kernels in ``edgeseg._C`` (multithreaded, GIL released, no allocation when
  ``out=`` is given);
* objects with ``__cuda_array_interface__`` (CuPy arrays, torch CUDA tensors) -> the CUDA kernels, asynchronous
  on ``stream`` (a raw ``cudaStream_t`` int, a CuPy/torch stream object, or None for the array library's current
  stream). The array's device must be the current device;
* if ``edgeseg._C`` cannot be imported (a pure-Python install), numpy arrays go to the numpy reference in
  :mod:`edgeseg.runtime.ops_reference` after one warning. ``kernel_backend()`` says which is in use.
  Setting ``EDGESEG_KERNELS=numpy`` forces the reference.

Every argument is checked here, before any compiled code runs; bad input raises :class:`DataError` (the
frame, logits or mask) or :class:`ConfigError` (sizes, dtypes, palette, ``out=``) saying what to change. A CUDA
kernel whose launch fails raises :class:`edgeseg.errors.CudaError`, the package's one CUDA error class.
The exact conventions (resize coordinates, NaN and tie rules, blend rounding, void classes) are documented in
:mod:`edgeseg.runtime.ops_reference`, which computes what every backend computes, bit for bit.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, NamedTuple, Sequence

import numpy as np

from edgeseg.config import size_hw
from edgeseg.errors import BackendUnavailableError, ConfigError, CudaError, DataError
from edgeseg.runtime import ops_reference as _ref

try:
    from edgeseg import _C
except ImportError as _exc:  # pure-Python install, or a build for another Python
    _C = None
    _C_IMPORT_ERROR: ImportError | None = _exc
else:
    _C_IMPORT_ERROR = None

__all__ = [
    "argmax",
    "colorize",
    "cuda_available",
    "kernel_backend",
    "overlay",
    "preprocess",
    "upsample_argmax",
    "upsample_argmax_overlay",
]

_warned_fallback = False

# The resize does its coordinate maths in int32 (cpp_ext/src/ops.h, kMaxResizeSide / kMaxStride).
MAX_RESIZE_SIDE = 32767
MAX_STRIDE = 4096


def kernel_backend() -> str:
    """'cpp' when numpy inputs run on the compiled kernels, 'numpy' when they run on the reference."""
    if _C is None or os.environ.get("EDGESEG_KERNELS", "").lower() == "numpy":
        return "numpy"
    return "cpp"


def cuda_available() -> bool:
    """True when the CUDA kernels were compiled in and a CUDA device is visible."""
    return _C is not None and bool(_C.has_cuda()) and _C.cuda_device_count() > 0


def _use_cpp() -> bool:
    global _warned_fallback
    if kernel_backend() == "cpp":
        return True
    if _C is None and not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f"edgeseg._C is not importable ({_C_IMPORT_ERROR}); pre/post-processing runs on the slow numpy "
            "reference. Reinstall edgeseg from source with a C++ compiler to get the compiled kernels.",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


# ----- argument checks ---------------------------------------------------------------------------------------------


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    return f"{type(x).__name__} shape={tuple(shape) if shape is not None else None} dtype={dtype}"


def _size2(value: Any, name: str) -> tuple[int, int]:
    return size_hw(value, name)


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be 3 numbers (R, G, B), got {value!r}") from exc
    if len(values) != 3 or not all(np.isfinite(values)):
        raise ConfigError(f"{name} must be 3 finite numbers (R, G, B), got {value!r}")
    return values  # type: ignore[return-value]


def _float_dtype(dtype: Any, name: str) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ConfigError(f"{name} must be float32 or float16, got {dtype!r}") from exc
    if dt not in (np.float32, np.float16):
        raise ConfigError(f"{name} must be float32 or float16, got {dt}")
    return dt


def _palette(palette: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(palette)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a (K, 3) array of 0..255 colours") from exc
    if arr.ndim != 2 or arr.shape[1] != 3 or not 1 <= arr.shape[0] <= 256:
        raise ConfigError(f"{name} must have shape (K, 3) with 1 <= K <= 256, got {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 255:
            raise ConfigError(f"{name} must hold integers in 0..255, got dtype {arr.dtype}")
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def _alpha(alpha: Any) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}") from exc
    if not 0.0 <= a <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {a}")
    return a


def _stride(stride: Any) -> int:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or not 1 <= stride <= MAX_STRIDE:
        raise ConfigError(f"stride must be an integer in 1..{MAX_STRIDE} (the model's output stride), got {stride!r}")
    return int(stride)


def _resize_sizes(frame_hw: tuple[int, ...], out_hw: tuple[int, int]) -> None:
    if max(frame_hw[:2]) > MAX_RESIZE_SIDE:
        raise DataError(f"frame sides must be at most {MAX_RESIZE_SIDE} pixels, got {tuple(frame_hw[:2])}")
    if max(out_hw) > MAX_RESIZE_SIDE:
        raise ConfigError(f"out_size sides must be at most {MAX_RESIZE_SIDE} pixels, got {out_hw}")


def _array(x: Any, name: str, dtypes: Sequence[Any], ndim: int, error: type = DataError) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise error(f"{name} must be a numpy array or a CUDA array, got {type(x).__name__}")
    if x.dtype not in [np.dtype(d) for d in dtypes]:
        allowed = " or ".join(np.dtype(d).name for d in dtypes)
        raise error(f"{name} must be {allowed}, got {x.dtype}")
    if x.ndim != ndim:
        raise error(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    if x.size == 0:
        raise error(f"{name} is empty (shape {x.shape})")
    if not x.flags.c_contiguous:
        raise error(f"{name} must be C-contiguous (use np.ascontiguousarray), got strides {x.strides}")
    return x


def _frame(frame: Any, rows_may_be_strided: bool = False) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise DataError(f"frame must be a BGR uint8 (H, W, 3) array, got {_describe(frame)}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise DataError(f"frame is empty (shape {frame.shape})")
    if rows_may_be_strided:  # a crop of a bigger frame is fine as long as each row is contiguous
        ok = frame.strides[2] == 1 and frame.strides[1] == 3 and frame.strides[0] >= 3 * frame.shape[1]
    else:
        ok = frame.flags.c_contiguous
    if not ok:
        raise DataError(f"frame must be C-contiguous (use np.ascontiguousarray), got strides {frame.strides}")
    return frame


def _logits(logits: Any) -> np.ndarray:
    if isinstance(logits, np.ndarray) and logits.ndim == 4:
        if logits.shape[0] != 1:
            raise DataError(f"logits must be (C, H, W) or (1, C, H, W), got batch of {logits.shape[0]}")
        logits = logits[0]
    return _array(logits, "logits", (np.float32, np.float16), 3)


def _out(out: Any, shape: tuple[int, ...], dtype: np.dtype, name: str = "out") -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise ConfigError(f"{name} must be a numpy array for numpy inputs, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ConfigError(f"{name} must have shape {shape} and dtype {dtype}, got {out.shape} {out.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ConfigError(f"{name} must be a writeable C-contiguous array")
    return out


# ----- CUDA arrays -------------------------------------------------------------------------------------------------


class _DeviceArray(NamedTuple):
    obj: Any
    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype


def _is_cuda(x: Any) -> bool:
    return hasattr(x, "__cuda_array_interface__")


def _device_array(x: Any, name: str, dtypes: Sequence[Any], ndim: int) -> _DeviceArray:
    cai = x.__cuda_array_interface__
    shape = tuple(int(s) for s in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    if dtype not in [np.dtype(d) for d in dtypes]:
        allowed = " or ".join(np.dtype(d).name for d in dtypes)
        raise DataError(f"{name} must be {allowed}, got {dtype}")
    if len(shape) == ndim + 1 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != ndim or 0 in shape:
        raise DataError(f"{name} must have {ndim} dimensions (non-empty), got shape {shape}")
    strides = cai.get("strides")
    if strides is not None:
        expected, step = [], dtype.itemsize
        for s in reversed(cai["shape"]):
            expected.append(step)
            step *= int(s)
        if tuple(int(s) for s in strides) != tuple(reversed(expected)):
            raise DataError(f"{name} must be C-contiguous on the device, got strides {tuple(strides)}")
    return _DeviceArray(x, int(cai["data"][0]), shape, dtype)


def _launch(kernel: str, *args: Any) -> None:
    """Call one of _C's CUDA entry points; a failed launch becomes edgeseg.errors.CudaError.

    The extension registers that class itself, so this is only a guard for a build that raises a RuntimeError
    subclass of its own (an older _C): the CLI and callers catch EdgeSegError and must get one."""
    native = getattr(_C, "CudaError", CudaError)
    try:
        getattr(_C, kernel)(*args)
    except native as exc:
        if isinstance(exc, CudaError):
            raise
        raise CudaError(str(exc)) from exc


def _require_cuda() -> Any:
    if _C is None or not _C.has_cuda():
        raise BackendUnavailableError(
            "a CUDA array was given but edgeseg._C was built without CUDA kernels; rebuild with nvcc on PATH "
            "(pip install -e . with the CUDA toolkit installed), or pass numpy arrays"
        )
    return _C


def _stream_handle(stream: Any, like: Any) -> int:
    if stream is None:
        module = type(like).__module__.split(".")[0]
        if module == "cupy":
            return int(sys.modules["cupy"].cuda.get_current_stream().ptr)
        if module == "torch":
            return int(sys.modules["torch"].cuda.current_stream(like.device).cuda_stream)
        return 0  # the legacy default stream: ordered with everything else on the device
    for attr in ("ptr", "cuda_stream", "handle"):
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    if isinstance(stream, (int, np.integer)):
        return int(stream)
    raise ConfigError(f"stream must be a cudaStream_t int or a CuPy/torch stream, got {type(stream).__name__}")


def _device_out(out: Any, like: Any, shape: tuple[int, ...], dtype: np.dtype, name: str = "out") -> _DeviceArray:
    if out is None:
        module = type(like).__module__.split(".")[0]
        if module == "cupy":
            out = sys.modules["cupy"].empty(shape, dtype=dtype)
        elif module == "torch":
            torch = sys.modules["torch"]
            tdtype = {"uint8": torch.uint8, "int32": torch.int32, "float16": torch.float16, "float32": torch.float32}
            out = torch.empty(shape, dtype=tdtype[dtype.name], device=like.device)
        else:
            raise ConfigError(f"pass {name}= for CUDA arrays of type {type(like).__name__} (only CuPy/torch allocate)")
    if not _is_cuda(out):
        raise ConfigError(f"{name} must be a CUDA array when the input is one, got {type(out).__name__}")
    dev = _device_array(out, name, (dtype,), len(shape))
    full = tuple(int(s) for s in out.__cuda_array_interface__["shape"])
    if full != shape:
        raise ConfigError(f"{name} must have shape {shape}, got {full}")
    return dev


# ----- the ops -----------------------------------------------------------------------------------------------------


def preprocess(
    frame_bgr: Any,
    out_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    dtype: Any = np.float32,
    out: Any = None,
    stream: Any = None,
) -> Any:
    """BGR uint8 (H, W, 3) frame -> normalised RGB NCHW (1, 3, h, w) in one pass.

    Bilinear resize with cv2.resize INTER_LINEAR's 11-bit fixed-point arithmetic to uint8 (within 1 LSB of cv2,
    equal on most sizes: cv2 rounds its coordinates in float32, we compute them exactly), then
    ``(x / 255 - mean) / std`` as one float32 fma, with mean/std in RGB order. `dtype` is float32 or float16; CPU and
    CUDA give the same bits. Frame and output sides are at most 32767. A numpy frame may be a crop (rows strided) as
    long as each row is contiguous.
    """
    h, w = _size2(out_size, "out_size")
    mean3, std3 = _triple(mean, "mean"), _triple(std, "std")
    if 0.0 in std3:
        raise ConfigError(f"std must be non-zero, got {std3}")
    dt = _float_dtype(dtype, "dtype")
    if _is_cuda(frame_bgr):
        _require_cuda()
        src = _device_array(frame_bgr, "frame", (np.uint8,), 3)
        if src.shape[2] != 3:
            raise DataError(f"frame must be (H, W, 3), got {src.shape}")
        _resize_sizes(src.shape, (h, w))
        dst = _device_out(out, frame_bgr, (1, 3, h, w), dt)
        _launch(
            "preprocess_cuda", src.ptr, src.shape[0], src.shape[1], src.shape[1] * 3, dst.ptr, h, w, mean3, std3,
            dt == np.float16, _stream_handle(stream, frame_bgr),
        )
        return dst.obj
    frame = _frame(frame_bgr, rows_may_be_strided=True)
    _resize_sizes(frame.shape, (h, w))
    result = _out(out, (1, 3, h, w), dt)
    if _use_cpp():
        _C.preprocess(frame, result, mean3, std3)
    else:
        result[...] = _ref.preprocess(frame, (h, w), mean3, std3, dt)
    return result


def _confidence_flag(confidence: Any, confidence_out: Any) -> bool:
    if not isinstance(confidence, (bool, np.bool_)):
        raise ConfigError(f"confidence must be True or False, got {confidence!r}")
    if confidence_out is not None and not confidence:
        raise ConfigError("confidence_out= is given but confidence=False: pass confidence=True to fill it")
    return bool(confidence)


def argmax(logits: Any, out: Any = None, out_dtype: Any = np.uint8, stream: Any = None, *,
           confidence: bool = False, confidence_out: Any = None) -> Any:
    """(C, H, W) or (1, C, H, W) float32/float16 logits -> (H, W) class ids (uint8 or int32).

    Ties: the first maximum wins (np.argmax). NaN: counts as larger than any number, the first NaN wins (np.argmax).
    With ``confidence=True`` returns ``(mask, confidence)``: the highest softmax probability of each pixel as uint8
    ``round(255 * p)``, computed in the same pass (0 for a pixel with a NaN logit; see ops_reference). It goes into
    `confidence_out` when given ((H, W) uint8, on the same device as the logits).
    """
    odt = np.dtype(out_dtype)
    if odt not in (np.uint8, np.int32):
        raise ConfigError(f"out_dtype must be uint8 or int32, got {odt}")
    want = _confidence_flag(confidence, confidence_out)
    if _is_cuda(logits):
        _require_cuda()
        src = _device_array(logits, "logits", (np.float32, np.float16), 3)
        classes, H, W = src.shape
        if odt == np.uint8 and classes > 256:
            raise ConfigError(f"{classes} classes do not fit uint8: use out_dtype=np.int32")
        dst = _device_out(out, logits, (H, W), odt)
        conf = _device_out(confidence_out, logits, (H, W), np.dtype(np.uint8), "confidence_out") if want else None
        _launch("argmax_cuda", src.ptr, src.dtype == np.float16, classes, H, W, dst.ptr, odt == np.int32,
                _stream_handle(stream, logits), *([conf.ptr] if conf is not None else []))
        return (dst.obj, conf.obj) if conf is not None else dst.obj
    lg = _logits(logits)
    if odt == np.uint8 and lg.shape[0] > 256:
        raise ConfigError(f"{lg.shape[0]} classes do not fit uint8: use out_dtype=np.int32")
    result = _out(out, lg.shape[1:], odt)
    conf_np = _out(confidence_out, lg.shape[1:], np.dtype(np.uint8), "confidence_out") if want else None
    if _use_cpp():
        _C.argmax(lg, result, conf_np)
    elif conf_np is not None:
        result[...], conf_np[...] = _ref.argmax_confidence(lg, odt)
    else:
        result[...] = _ref.argmax(lg, odt)
    return (result, conf_np) if conf_np is not None else result


def _check_upsample(shape: tuple[int, ...], out_size: Any, stride: Any) -> tuple[int, int, int]:
    classes, h, w = shape
    H, W = _size2(out_size, "out_size")
    s = _stride(stride)
    if classes > 256:
        raise ConfigError(f"upsample_argmax writes uint8 class ids: {classes} classes is more than 256")
    if H > h * s or W > w * s:
        raise ConfigError(
            f"out_size {(H, W)} is larger than the logits {(h, w)} times stride {s}; "
            "out_size is the model's input size, at most the upsampled logits"
        )
    return H, W, s


def upsample_argmax(logits: Any, out_size: tuple[int, int], stride: int, out: Any = None, stream: Any = None, *,
                    confidence: bool = False, confidence_out: Any = None) -> Any:
    """Bilinear upsampling of (C, h, w) logits by `stride` (torch align_corners=False; float32, vertical then
    horizontal, the same bits on CPU and CUDA), cropped to out_size (H, W) <= (h*stride, w*stride), then argmax over
    C -> uint8 (H, W). Same tie/NaN rules as argmax. ``confidence=True`` returns ``(mask, confidence)``, the
    softmax of the same upsampled logits (see argmax)."""
    want = _confidence_flag(confidence, confidence_out)
    if _is_cuda(logits):
        _require_cuda()
        src = _device_array(logits, "logits", (np.float32, np.float16), 3)
        H, W, s = _check_upsample(src.shape, out_size, stride)
        dst = _device_out(out, logits, (H, W), np.dtype(np.uint8))
        conf = _device_out(confidence_out, logits, (H, W), np.dtype(np.uint8), "confidence_out") if want else None
        _launch("upsample_argmax_cuda", src.ptr, src.dtype == np.float16, *src.shape, s, dst.ptr, H, W,
                _stream_handle(stream, logits), *([conf.ptr] if conf is not None else []))
        return (dst.obj, conf.obj) if conf is not None else dst.obj
    lg = _logits(logits)
    H, W, s = _check_upsample(lg.shape, out_size, stride)
    result = _out(out, (H, W), np.dtype(np.uint8))
    conf_np = _out(confidence_out, (H, W), np.dtype(np.uint8), "confidence_out") if want else None
    if _use_cpp():
        _C.upsample_argmax(lg, s, result, conf_np)
    elif conf_np is not None:
        result[...], conf_np[...] = _ref.upsample_argmax_confidence(lg, (H, W), s)
    else:
        result[...] = _ref.upsample_argmax(lg, (H, W), s)
    return (result, conf_np) if conf_np is not None else result


def colorize(mask: Any, palette: Any, out: Any = None, stream: Any = None) -> Any:
    """(H, W) uint8 class ids -> (H, W, 3) uint8 colours from `palette` (K, 3); ids >= K (void) are black."""
    pal = _palette(palette, "palette")
    if _is_cuda(mask):
        _require_cuda()
        m = _device_array(mask, "mask", (np.uint8,), 2)
        dst = _device_out(out, mask, (*m.shape, 3), np.dtype(np.uint8))
        _launch("colorize_cuda", m.ptr, m.shape[0], m.shape[1], pal.tobytes(), dst.ptr,
                _stream_handle(stream, mask))
        return dst.obj
    m = _array(mask, "mask", (np.uint8,), 2)
    result = _out(out, (*m.shape, 3), np.dtype(np.uint8))
    if _use_cpp():
        _C.colorize(m, pal, result)
    else:
        result[...] = _ref.colorize(m, pal)
    return result


def overlay(frame_bgr: Any, mask: Any, palette_bgr: Any, alpha: float = 0.5, out: Any = None, stream: Any = None) -> Any:
    """Blend class colours over a BGR frame. The mask (h, w) is resized NEAREST to the frame (cv2 INTER_NEAREST).

    ``out = (frame * (256 - a8) + colour * a8 + 128) >> 8`` with ``a8 = round(alpha * 256)``: round-half-up of
    ``frame * (1 - alpha) + colour * alpha`` with alpha in 1/256 steps. Class ids >= K leave the frame unchanged.
    `out` may be the frame itself (in-place).
    """
    pal, a = _palette(palette_bgr, "palette_bgr"), _alpha(alpha)
    if _is_cuda(frame_bgr):
        _require_cuda()
        f = _device_array(frame_bgr, "frame", (np.uint8,), 3)
        m = _device_array(mask, "mask", (np.uint8,), 2) if _is_cuda(mask) else None
        if m is None:
            raise DataError("mask must be a CUDA array when the frame is one")
        if f.shape[2] != 3:
            raise DataError(f"frame must be (H, W, 3), got {f.shape}")
        dst = _device_out(out, frame_bgr, f.shape, np.dtype(np.uint8))
        _launch("overlay_cuda", f.ptr, f.shape[0], f.shape[1], m.ptr, m.shape[0], m.shape[1], pal.tobytes(), a,
                dst.ptr, _stream_handle(stream, frame_bgr))
        return dst.obj
    frame = _frame(frame_bgr)
    m = _array(mask, "mask", (np.uint8,), 2)
    result = _out(out, frame.shape, np.dtype(np.uint8))
    if _use_cpp():
        _C.overlay(frame, m, pal, a, result)
    else:
        result[...] = _ref.overlay(frame, m, pal, a)
    return result


def upsample_argmax_overlay(
    logits: Any,
    frame_bgr: Any,
    stride: int,
    palette_bgr: Any,
    alpha: float = 0.5,
    mask_size: tuple[int, int] | None = None,
    out: Any = None,
    mask_out: Any = None,
    return_mask: bool = False,
    stream: Any = None,
) -> Any:
    """Fused post-processing: upsample_argmax of low-res logits to `mask_size` (the model's input size; default
    (h*stride, w*stride)), then overlay of that mask on the frame. Returns the overlay, or (overlay, mask) when
    `return_mask`. `mask_out` is an optional preallocated uint8 mask buffer (it always receives the mask)."""
    pal, a = _palette(palette_bgr, "palette_bgr"), _alpha(alpha)
    cuda = _is_cuda(logits)
    if cuda:
        _require_cuda()
        src = _device_array(logits, "logits", (np.float32, np.float16), 3)
        shape = src.shape
    else:
        lg = _logits(logits)
        shape = lg.shape
    s = _stride(stride)
    if mask_size is None:
        mask_size = (shape[1] * s, shape[2] * s)
    Hm, Wm, s = _check_upsample(shape, mask_size, s)
    if cuda:
        if not _is_cuda(frame_bgr):
            raise DataError("frame must be a CUDA array when the logits are one")
        f = _device_array(frame_bgr, "frame", (np.uint8,), 3)
        if f.shape[2] != 3:
            raise DataError(f"frame must be (H, W, 3), got {f.shape}")
        m = _device_out(mask_out, logits, (Hm, Wm), np.dtype(np.uint8), "mask_out")
        dst = _device_out(out, frame_bgr, f.shape, np.dtype(np.uint8))
        _launch(
            "upsample_argmax_overlay_cuda", src.ptr, src.dtype == np.float16, *shape, s, m.ptr, Hm, Wm, f.ptr,
            f.shape[0], f.shape[1], pal.tobytes(), a, dst.ptr, _stream_handle(stream, logits),
        )
        return (dst.obj, m.obj) if return_mask else dst.obj
    frame = _frame(frame_bgr)
    mask = _out(mask_out, (Hm, Wm), np.dtype(np.uint8)) if mask_out is not None else np.empty((Hm, Wm), np.uint8)
    result = _out(out, frame.shape, np.dtype(np.uint8))
    if _use_cpp():
        _C.upsample_argmax_overlay(lg, s, mask, frame, pal, a, result)
    else:
        ov, mk = _ref.upsample_argmax_overlay(lg, frame, s, pal, a, (Hm, Wm))
        result[...], mask[...] = ov, mk
    return (result, mask) if return_mask else result
