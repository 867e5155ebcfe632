"""CUDA kernels against the numpy reference and the CPU kernels, bit for bit.

Two layers, both skipped (with the reason) on a machine without an NVIDIA GPU:

* the raw ``_C.*_cuda(ptr, ...)`` bindings on device buffers from cuda-python (``cuda.bindings.runtime``:
  cudaMalloc / cudaMemcpy), so the parity checks need neither CuPy nor a CUDA build of torch;
* ``edgeseg.runtime.ops`` on CuPy arrays or torch CUDA tensors (``__cuda_array_interface__``, streams, ``out=``),
  when one of them is installed.

The CPU and CUDA kernels call the same functions of cpp_ext/src/ops.h, so equality is expected everywhere.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from .ops_cases import (
    MEAN,
    RESIZE_CASES,
    STD,
    UPSAMPLE_CASES,
    check_confidence,
    check_upsample_argmax,
    frame,
    logits,
    mask,
    palette,
    same_bits,
)

from edgeseg.runtime import ops
from edgeseg.runtime import ops_reference as ref

try:
    from edgeseg import _C
except ImportError:  # only with EDGESEG_ALLOW_NO_EXTENSION=1 (tests/conftest.py)
    _C = None

NO_GPU = "needs an NVIDIA GPU (CUDA device)"
NO_CUDA_PYTHON = "needs cuda-python (cuda.bindings) for device buffers"


def _raw_reason() -> str:
    if _C is None:
        return "edgeseg._C is not importable (EDGESEG_ALLOW_NO_EXTENSION=1)"
    if not _C.has_cuda():
        return "edgeseg._C was built without its CUDA kernels (no nvcc at build time)"
    if _C.cuda_device_count() == 0:
        return NO_GPU
    if importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
        return NO_CUDA_PYTHON
    return ""


def _array_library():
    """(to_device, to_host, name) for CuPy or torch CUDA, or a reason string."""
    if importlib.util.find_spec("cupy") is not None:
        import cupy

        try:
            if cupy.cuda.runtime.getDeviceCount() > 0:
                return cupy.asarray, cupy.asnumpy, "cupy"
        except cupy.cuda.runtime.CUDARuntimeError:
            pass
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return (lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()), (lambda t: t.cpu().numpy()), "torch"
    return "needs CuPy or torch with CUDA for the ops-level CUDA tests"


_RAW_REASON = _raw_reason()
raw = pytest.mark.skipif(bool(_RAW_REASON), reason=_RAW_REASON or "ok")
# The ops-level tests need the same GPU and CUDA build, but CuPy/torch instead of cuda-python.
_LIB: Any = _RAW_REASON if _RAW_REASON and _RAW_REASON != NO_CUDA_PYTHON else _array_library()
with_lib = pytest.mark.skipif(isinstance(_LIB, str), reason=_LIB if isinstance(_LIB, str) else "ok")

pytestmark = pytest.mark.gpu


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(99)


# ----- raw bindings on cuda-python buffers ---------------------------------------------------------------------------


class Device:
    """cudaMalloc'd buffers filled from / read back into numpy, all freed by close()."""

    def __init__(self) -> None:
        from cuda.bindings import runtime as rt

        self.rt = rt
        self.ptrs: list[int] = []

    def check(self, result: Any, what: str) -> Any:
        err, *rest = result
        assert err == self.rt.cudaError_t.cudaSuccess, f"{what}: {self.rt.cudaGetErrorString(err)[1].decode()}"
        return rest[0] if rest else None

    def empty(self, nbytes: int) -> int:
        ptr = int(self.check(self.rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
        self.ptrs.append(ptr)
        return ptr

    def put(self, a: np.ndarray) -> int:
        a = np.ascontiguousarray(a)
        ptr = self.empty(a.nbytes)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.check(self.rt.cudaMemcpy(ptr, a.ctypes.data, a.nbytes, kind), "cudaMemcpy H2D")
        return ptr

    def get(self, ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        self.check(self.rt.cudaDeviceSynchronize(), "kernel")  # surfaces asynchronous kernel faults here
        out = np.empty(shape, dtype)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.check(self.rt.cudaMemcpy(out.ctypes.data, ptr, out.nbytes, kind), "cudaMemcpy D2H")
        return out

    def close(self) -> None:
        for ptr in self.ptrs:
            self.rt.cudaFree(ptr)
        self.ptrs.clear()


@pytest.fixture
def gpu():
    device = Device()
    yield device
    device.close()


@raw
@pytest.mark.parametrize(("src", "dst"), RESIZE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_preprocess_cuda_raw_is_bit_exact(gpu, rng, src, dst, dtype):
    f = frame(rng, *src)
    (H, W), (h, w) = src, dst
    out = gpu.empty(3 * h * w * np.dtype(dtype).itemsize)
    _C.preprocess_cuda(gpu.put(f), H, W, W * 3, out, h, w, MEAN, STD, dtype == np.float16, 0)
    got = gpu.get(out, (1, 3, h, w), dtype)
    assert same_bits(got, ref.preprocess(f, dst, MEAN, STD, dtype))
    cpu = np.empty((1, 3, h, w), dtype)
    _C.preprocess(f, cpu, MEAN, STD)
    assert same_bits(got, cpu)


@raw
def test_preprocess_cuda_raw_reads_a_row_stride(gpu, rng):
    big = frame(rng, 61, 97)
    crop = big[5:50, 7:90]  # each row contiguous, rows 97 * 3 bytes apart
    out = gpu.empty(3 * 32 * 48 * 4)
    src = gpu.put(big) + (5 * 97 + 7) * 3
    _C.preprocess_cuda(src, 45, 83, 97 * 3, out, 32, 48, MEAN, STD, False, 0)
    assert same_bits(gpu.get(out, (1, 3, 32, 48), np.float32), ref.preprocess(np.ascontiguousarray(crop), (32, 48),
                                                                             MEAN, STD))


@raw
@pytest.mark.parametrize(("classes", "h", "w", "stride", "size"), UPSAMPLE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("values", ["normal", "ties", "nan"])
def test_upsample_argmax_cuda_raw_is_bit_exact(gpu, rng, classes, h, w, stride, size, dtype, values):
    lg = logits(rng, (classes, h, w), dtype, values)
    out = gpu.empty(size[0] * size[1])
    _C.upsample_argmax_cuda(gpu.put(lg), dtype == np.float16, classes, h, w, stride, out, *size, 0)
    got = gpu.get(out, size, np.uint8)
    want = ref.upsample_argmax(lg, size, stride)
    assert np.array_equal(got, want)
    cpu = np.empty(size, np.uint8)
    _C.upsample_argmax(lg, stride, cpu)
    assert np.array_equal(got, cpu)


@raw
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 37, 53), (19, 64, 128), (300, 3, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("values", ["ties", "nan"])
def test_argmax_cuda_raw(gpu, rng, shape, dtype, values):
    lg = logits(rng, shape, dtype, values)
    C, H, W = shape
    src = gpu.put(lg)
    out32 = gpu.empty(H * W * 4)
    _C.argmax_cuda(src, dtype == np.float16, C, H, W, out32, True, 0)
    assert np.array_equal(gpu.get(out32, (H, W), np.int32), np.argmax(lg, axis=0))


@raw
@pytest.mark.parametrize(("frame_size", "mask_size"), [((37, 53), (37, 53)), ((481, 641), (97, 33)), ((1, 1), (7, 5))])
def test_colorize_overlay_fused_cuda_raw(gpu, rng, frame_size, mask_size):
    k = 11
    f, m, pal = frame(rng, *frame_size), mask(rng, *mask_size, k), palette(rng, k)
    H, W = frame_size
    h, w = mask_size
    colours = gpu.empty(h * w * 3)
    _C.colorize_cuda(gpu.put(m), h, w, pal.tobytes(), colours, 0)
    assert np.array_equal(gpu.get(colours, (h, w, 3), np.uint8), ref.colorize(m, pal))
    blended = gpu.empty(H * W * 3)
    _C.overlay_cuda(gpu.put(f), H, W, gpu.put(m), h, w, pal.tobytes(), 0.37, blended, 0)
    assert np.array_equal(gpu.get(blended, (H, W, 3), np.uint8), ref.overlay(f, m, pal, 0.37))
    lg = logits(rng, (k, 5, 7), np.float16, "normal")
    fused_mask, fused = gpu.empty(37 * 53), gpu.empty(H * W * 3)
    _C.upsample_argmax_overlay_cuda(gpu.put(lg), True, k, 5, 7, 8, fused_mask, 37, 53, gpu.put(f), H, W,
                                    pal.tobytes(), 0.5, fused, 0)
    want_overlay, want_mask = ref.upsample_argmax_overlay(lg, f, 8, pal, 0.5, (37, 53))
    assert np.array_equal(gpu.get(fused_mask, (37, 53), np.uint8), want_mask)
    assert np.array_equal(gpu.get(fused, (H, W, 3), np.uint8), want_overlay)


# ----- edgeseg.runtime.ops on CuPy / torch arrays --------------------------------------------------------------------


def dev(a: np.ndarray):
    return _LIB[0](a)


def host(a) -> np.ndarray:
    return _LIB[1](a)


@with_lib
@pytest.mark.parametrize(("src", "dst"), RESIZE_CASES[:6])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_preprocess_cuda(rng, src, dst, dtype):
    f = frame(rng, *src)
    got = host(ops.preprocess(dev(f), dst, MEAN, STD, dtype=dtype))
    assert same_bits(got, ref.preprocess(f, dst, MEAN, STD, dtype))


@with_lib
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 37, 53), (300, 3, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_argmax_cuda(rng, shape, dtype):
    lg = rng.integers(-3, 3, shape).astype(dtype)  # many ties
    lg[0, 0, 0] = np.nan
    want = np.argmax(lg, axis=0)
    assert np.array_equal(host(ops.argmax(dev(lg), out_dtype=np.int32)), want)
    if shape[0] <= 256:
        assert np.array_equal(host(ops.argmax(dev(lg))), want)


@with_lib
@pytest.mark.parametrize(("classes", "h", "w", "stride", "size"), UPSAMPLE_CASES[:5])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_upsample_argmax_cuda(rng, classes, h, w, stride, size, dtype):
    lg = (3 * rng.standard_normal((classes, h, w))).astype(dtype)
    got = host(ops.upsample_argmax(dev(lg), size, stride))
    assert np.array_equal(got, ref.upsample_argmax(lg, size, stride))
    check_upsample_argmax(got, lg, stride, size)


@with_lib
@pytest.mark.parametrize(("frame_size", "mask_size"), [((37, 53), (37, 53)), ((1080, 1920), (512, 1024))])
@pytest.mark.parametrize("alpha", [0.0, 0.37, 1.0])
def test_overlay_cuda(rng, frame_size, mask_size, alpha):
    f, m, pal = frame(rng, *frame_size), mask(rng, *mask_size, 11), palette(rng, 11)
    assert np.array_equal(host(ops.overlay(dev(f), dev(m), pal, alpha)), ref.overlay(f, m, pal, alpha))
    assert np.array_equal(host(ops.colorize(dev(m), pal)), ref.colorize(m, pal))


@with_lib
def test_fused_cuda(rng):
    lg = (3 * rng.standard_normal((19, 16, 32))).astype(np.float32)
    f, pal = frame(rng, 540, 960), palette(rng, 19)
    out, m = ops.upsample_argmax_overlay(dev(lg), dev(f), 32, pal, 0.5, mask_size=(500, 1000), return_mask=True)
    want_overlay, want_mask = ref.upsample_argmax_overlay(lg, f, 32, pal, 0.5, (500, 1000))
    assert np.array_equal(host(m), want_mask) and np.array_equal(host(out), want_overlay)


@with_lib
def test_explicit_stream_and_out(rng):
    lg = (3 * rng.standard_normal((11, 20, 30))).astype(np.float32)
    d = dev(lg)
    out = dev(np.zeros((160, 240), np.uint8))
    if _LIB[2] == "cupy":
        import cupy

        stream = cupy.cuda.Stream(non_blocking=True)
    else:
        import torch

        stream = torch.cuda.Stream()
    assert ops.upsample_argmax(d, (160, 240), 8, out=out, stream=stream) is out
    stream.synchronize()
    assert np.array_equal(host(out), ref.upsample_argmax(lg, (160, 240), 8))


# ----- confidence (highest softmax probability) --------------------------------------------------------------------


@raw
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 37, 53), (19, 64, 128), (300, 3, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("values", ["normal", "ties", "nan"])
def test_argmax_confidence_cuda_raw_is_bit_exact(gpu, rng, shape, dtype, values):
    lg = logits(rng, shape, dtype, values)
    C, H, W = shape
    src, out32, conf = gpu.put(lg), gpu.empty(H * W * 4), gpu.empty(H * W)
    _C.argmax_cuda(src, dtype == np.float16, C, H, W, out32, True, 0, conf)
    got_mask, got = gpu.get(out32, (H, W), np.int32), gpu.get(conf, (H, W), np.uint8)
    want_mask, want = ref.argmax_confidence(lg, np.int32)
    assert np.array_equal(got_mask, np.argmax(lg, axis=0)) and np.array_equal(got_mask, want_mask)
    assert np.array_equal(got, want)
    cpu_mask, cpu = np.empty((H, W), np.int32), np.empty((H, W), np.uint8)
    _C.argmax(lg, cpu_mask, cpu)
    assert np.array_equal(got, cpu)
    check_confidence(got, lg)
    if C <= 256:  # the plain kernel is unchanged by the confidence one
        out8 = gpu.empty(H * W)
        _C.argmax_cuda(src, dtype == np.float16, C, H, W, out8, False, 0)
        assert np.array_equal(gpu.get(out8, (H, W), np.uint8), np.argmax(lg, axis=0))


@raw
@pytest.mark.parametrize(("classes", "h", "w", "stride", "size"), UPSAMPLE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("values", ["normal", "ties", "nan"])
def test_upsample_argmax_confidence_cuda_raw_is_bit_exact(gpu, rng, classes, h, w, stride, size, dtype, values):
    lg = logits(rng, (classes, h, w), dtype, values)
    out, conf = gpu.empty(size[0] * size[1]), gpu.empty(size[0] * size[1])
    _C.upsample_argmax_cuda(gpu.put(lg), dtype == np.float16, classes, h, w, stride, out, *size, 0, conf)
    got_mask, got = gpu.get(out, size, np.uint8), gpu.get(conf, size, np.uint8)
    want_mask, want = ref.upsample_argmax_confidence(lg, size, stride)
    assert np.array_equal(got_mask, want_mask) and np.array_equal(got, want)
    cpu_mask, cpu = np.empty(size, np.uint8), np.empty(size, np.uint8)
    _C.upsample_argmax(lg, stride, cpu_mask, cpu)
    assert np.array_equal(got, cpu)
    if values != "nan":
        check_confidence(got, ref.upsample_bilinear(lg, stride, size))


@with_lib
@pytest.mark.parametrize(("classes", "h", "w", "stride", "size"), UPSAMPLE_CASES[:5])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_confidence_cuda_through_ops(rng, classes, h, w, stride, size, dtype):
    lg = (3 * rng.standard_normal((classes, h, w))).astype(dtype)
    mask, conf = ops.upsample_argmax(dev(lg), size, stride, confidence=True)
    want_mask, want = ref.upsample_argmax_confidence(lg, size, stride)
    assert np.array_equal(host(mask), want_mask) and np.array_equal(host(conf), want)
    check_confidence(host(conf), ref.upsample_bilinear(lg, stride, size))
    mask, conf = ops.argmax(dev(lg), confidence=True)
    assert np.array_equal(host(mask), np.argmax(lg, axis=0))
    check_confidence(host(conf), lg)
    conf_out = dev(np.zeros((h, w), np.uint8))
    assert ops.argmax(dev(lg), confidence=True, confidence_out=conf_out)[1] is conf_out
    assert np.array_equal(host(conf_out), ref.argmax_confidence(lg)[1])
