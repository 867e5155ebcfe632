"""CUDA kernels against the CPU kernels and the numpy reference. Needs a GPU, CUDA kernels in edgeseg._C, and
CuPy or torch with CUDA; skipped with the reason otherwise."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from .ops_cases import MEAN, RESIZE_CASES, STD, UPSAMPLE_CASES, check_upsample_argmax, frame, mask, palette

from edgeseg.runtime import ops
from edgeseg.runtime import ops_reference as ref


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
    return "neither CuPy nor torch with CUDA can see a GPU"


_LIB = _array_library()
if not ops.cuda_available():
    _REASON = "edgeseg._C has no CUDA kernels or no CUDA device is visible"
elif isinstance(_LIB, str):
    _REASON = _LIB
else:
    _REASON = ""

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(_REASON), reason=_REASON or "ok")]


def dev(a: np.ndarray):
    return _LIB[0](a)


def host(a) -> np.ndarray:
    return _LIB[1](a)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(99)


@pytest.mark.parametrize(("src", "dst"), RESIZE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_preprocess_cuda(rng, src, dst, dtype):
    f = frame(rng, *src)
    got = host(ops.preprocess(dev(f), dst, MEAN, STD, dtype=dtype))
    assert got.dtype == dtype and got.shape == (1, 3, *dst)
    want = ref.preprocess(f, dst, MEAN, STD, np.float64)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-3 if dtype == np.float16 else 0,
                               atol=1e-3 if dtype == np.float16 else 2e-5)


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 37, 53), (19, 64, 128), (300, 3, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_argmax_cuda(rng, shape, dtype):
    logits = rng.integers(-3, 3, shape).astype(dtype)  # many ties
    logits[0, 0, 0] = np.nan
    want = np.argmax(logits, axis=0)
    assert np.array_equal(host(ops.argmax(dev(logits), out_dtype=np.int32)), want)
    if shape[0] <= 256:
        assert np.array_equal(host(ops.argmax(dev(logits))), want)


@pytest.mark.parametrize(("classes", "h", "w", "stride", "size"), UPSAMPLE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_upsample_argmax_cuda(rng, classes, h, w, stride, size, dtype):
    logits = (3 * rng.standard_normal((classes, h, w))).astype(dtype)
    got = host(ops.upsample_argmax(dev(logits), size, stride))
    check_upsample_argmax(got, logits, stride, size)


@pytest.mark.parametrize(("size", "k"), [((1, 1), 1), ((37, 53), 11), ((480, 360), 19)])
def test_colorize_cuda(rng, size, k):
    m, pal = mask(rng, *size, k), palette(rng, k)
    assert np.array_equal(host(ops.colorize(dev(m), pal)), ref.colorize(m, pal))


@pytest.mark.parametrize(("frame_size", "mask_size"), [((37, 53), (37, 53)), ((1080, 1920), (512, 1024)),
                                                        ((481, 641), (97, 33)), ((1, 1), (7, 5))])
@pytest.mark.parametrize("alpha", [0.0, 0.37, 1.0])
def test_overlay_cuda(rng, frame_size, mask_size, alpha):
    f, m, pal = frame(rng, *frame_size), mask(rng, *mask_size, 11), palette(rng, 11)
    assert np.array_equal(host(ops.overlay(dev(f), dev(m), pal, alpha)), ref.overlay(f, m, pal, alpha))


def test_fused_cuda(rng):
    logits = (3 * rng.standard_normal((19, 16, 32))).astype(np.float32)
    f, pal = frame(rng, 540, 960), palette(rng, 19)
    out, m = ops.upsample_argmax_overlay(dev(logits), dev(f), 32, pal, 0.5, mask_size=(500, 1000), return_mask=True)
    m = host(m)
    check_upsample_argmax(m, logits, 32, (500, 1000))
    assert np.array_equal(host(out), ref.overlay(f, m, pal, 0.5))


def test_explicit_stream_and_out(rng):
    logits = (3 * rng.standard_normal((11, 20, 30))).astype(np.float32)
    d = dev(logits)
    out = dev(np.zeros((160, 240), np.uint8))
    if _LIB[2] == "cupy":
        import cupy

        stream = cupy.cuda.Stream(non_blocking=True)
    else:
        import torch

        stream = torch.cuda.Stream()
    assert ops.upsample_argmax(d, (160, 240), 8, out=out, stream=stream) is out
    stream.synchronize()
    check_upsample_argmax(host(out), logits, 8, (160, 240))
