"""CPU kernels (edgeseg._C through edgeseg.runtime.ops) against the numpy reference and OpenCV."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from .ops_cases import (
    MEAN,
    RESIZE_CASES,
    STD,
    UPSAMPLE_CASES,
    check_upsample_argmax,
    cv2_preprocess,
    frame,
    lsb,
    mask,
    palette,
)

from edgeseg.errors import ConfigError, DataError
from edgeseg.runtime import ops
from edgeseg.runtime import ops_reference as ref

needs_cpp = pytest.mark.skipif(ops.kernel_backend() != "cpp", reason="edgeseg._C is not built (numpy fallback)")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ----- preprocess --------------------------------------------------------------------------------------------------


@needs_cpp
@pytest.mark.parametrize(("src", "dst"), RESIZE_CASES)
def test_preprocess_within_one_lsb_of_cv2(rng, src, dst):
    f = frame(rng, *src)
    got = ops.preprocess(f, dst, MEAN, STD)
    assert got.shape == (1, 3, *dst) and got.dtype == np.float32
    assert np.all(np.abs(got - cv2_preprocess(f, dst)) <= lsb() * 1.0001)  # cv2 rounds to uint8, we do not
    np.testing.assert_allclose(got, ref.preprocess(f, dst, MEAN, STD, np.float64), rtol=0, atol=2e-5)


@needs_cpp
@pytest.mark.parametrize(("src", "dst"), RESIZE_CASES[:4])
def test_preprocess_fp16(rng, src, dst):
    f = frame(rng, *src)
    got = ops.preprocess(f, dst, MEAN, STD, dtype=np.float16)
    assert got.dtype == np.float16
    want = ref.preprocess(f, dst, MEAN, STD, np.float64)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-3, atol=1e-3)  # one fp16 ulp
    assert np.array_equal(got, ops.preprocess(f, dst, MEAN, STD).astype(np.float16))  # same RNE rounding as numpy


@needs_cpp
def test_preprocess_writes_into_out_and_accepts_a_crop(rng):
    big = frame(rng, 200, 300)
    crop = big[10:110, 20:170]  # rows are strided, pixels within a row are contiguous
    batch = np.zeros((2, 3, 64, 96), np.float32)
    result = ops.preprocess(crop, (64, 96), MEAN, STD, out=batch[1:2])
    assert np.shares_memory(result, batch) and not batch[0].any()
    np.testing.assert_allclose(batch[1:2], ops.preprocess(np.ascontiguousarray(crop), (64, 96), MEAN, STD))


# ----- argmax ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 37, 53), (1, 19, 64, 128), (300, 3, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("out_dtype", [np.uint8, np.int32])
def test_argmax_matches_numpy(rng, shape, dtype, out_dtype):
    if out_dtype == np.uint8 and shape[-3] > 256:  # class ids would wrap: refused, never truncated
        with pytest.raises(ConfigError, match="do not fit uint8"):
            ops.argmax(rng.standard_normal(shape).astype(dtype), out_dtype=out_dtype)
        return
    logits = rng.standard_normal(shape).astype(dtype)
    got = ops.argmax(logits, out_dtype=out_dtype)
    assert got.dtype == out_dtype
    assert np.array_equal(got, np.argmax(logits.reshape(shape[-3:]), axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_argmax_ties_and_nan_follow_numpy(rng, dtype):
    logits = rng.integers(-2, 2, (7, 31, 45)).astype(dtype)  # many exact ties
    logits[3, :5, :5] = np.nan
    logits[5, :3, :3] = np.nan
    logits[:, 10, 10] = 1.0  # all equal: class 0
    got = ops.argmax(logits)
    assert np.array_equal(got, np.argmax(logits, axis=0))
    assert got[10, 10] == 0 and got[0, 0] == 3


def test_argmax_out_is_reused(rng):
    logits = rng.standard_normal((4, 9, 11)).astype(np.float32)
    out = np.empty((9, 11), np.uint8)
    assert ops.argmax(logits, out=out) is out


# ----- upsample_argmax ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("classes", "h", "w", "stride", "size"), UPSAMPLE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_upsample_argmax_matches_float64_reference(rng, classes, h, w, stride, size, dtype):
    logits = (3 * rng.standard_normal((classes, h, w))).astype(dtype)
    got = ops.upsample_argmax(logits, size, stride)
    assert got.shape == size and got.dtype == np.uint8
    check_upsample_argmax(got, logits, stride, size)


def test_upsample_argmax_large_frame_agreement(rng):
    logits = (3 * rng.standard_normal((19, 64, 128))).astype(np.float32)
    check_upsample_argmax(ops.upsample_argmax(logits[None], (512, 1024), 8), logits, 8, (512, 1024))


def test_upsample_reference_is_torch_bilinear(rng):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((3, 9, 13))
    want = torch.nn.functional.interpolate(
        torch.from_numpy(logits)[None], scale_factor=8, mode="bilinear", align_corners=False
    )[0].numpy()
    np.testing.assert_allclose(ref.upsample_bilinear(logits, 8, (72, 104)), want, atol=1e-12)
    np.testing.assert_allclose(ref.upsample_bilinear(logits, 8, (65, 99)), want[:, :65, :99], atol=1e-12)


# ----- colorize / overlay ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "k"), [((1, 1), 1), ((37, 53), 11), ((480, 360), 19), ((64, 64), 256)])
def test_colorize_exact(rng, size, k):
    m, pal = mask(rng, *size, k), palette(rng, k)
    got = ops.colorize(m, pal)
    assert np.array_equal(got, ref.colorize(m, pal))
    assert np.all(got[m >= k] == 0)  # void / out of range -> black
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[:k, 0] = pal
    assert np.array_equal(got, cv2.LUT(cv2.merge([m, m, m]), lut.reshape(256, 1, 3)))


@pytest.mark.parametrize(("frame_size", "mask_size"), [((37, 53), (37, 53)), ((480, 360), (128, 160)),
                                                        ((128, 160), (480, 360)), ((1, 1), (7, 5)), ((360, 480), (1, 1))])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_overlay_exact(rng, frame_size, mask_size, alpha):
    f, m, pal = frame(rng, *frame_size), mask(rng, *mask_size, 11), palette(rng, 11)
    got = ops.overlay(f, m, pal, alpha)
    assert np.array_equal(got, ref.overlay(f, m, pal, alpha))
    big = cv2.resize(m, frame_size[::-1], interpolation=cv2.INTER_NEAREST)  # our NEAREST is cv2's
    assert np.array_equal(got[big >= 11], f[big >= 11])  # void leaves the frame unchanged
    exact = f * (1 - alpha) + pal[np.minimum(big, 10)] * alpha
    assert np.all(np.abs(got[big < 11] - exact[big < 11]) <= 0.5 + 255 / 512 + 1e-9)  # alpha in 1/256 steps
    if alpha == 0.0:
        assert np.array_equal(got, f)


def test_overlay_nearest_matches_cv2(rng):
    for frame_size, mask_size in [((1080, 1920), (512, 1024)), ((481, 641), (97, 33)), ((100, 300), (333, 77))]:
        m = rng.integers(0, 200, mask_size, dtype=np.uint8)
        pal = np.arange(600, dtype=np.int64).reshape(200, 3) % 256
        f = np.zeros((*frame_size, 3), np.uint8)
        got = ops.overlay(f, m, pal, 1.0)  # alpha 1: the colour of the nearest mask pixel
        want = ops.colorize(cv2.resize(m, frame_size[::-1], interpolation=cv2.INTER_NEAREST), pal)
        assert np.array_equal(got, want)


def test_overlay_in_place(rng):
    f, m, pal = frame(rng, 40, 60), mask(rng, 20, 30, 5), palette(rng, 5)
    want = ref.overlay(f, m, pal, 0.4)
    assert ops.overlay(f, m, pal, 0.4, out=f) is f
    assert np.array_equal(f, want)


@pytest.mark.parametrize("return_mask", [False, True])
def test_fused_matches_separate_ops(rng, return_mask):
    logits = (3 * rng.standard_normal((19, 16, 32))).astype(np.float32)
    f, pal = frame(rng, 540, 960), palette(rng, 19)
    result = ops.upsample_argmax_overlay(logits, f, 32, pal, 0.5, mask_size=(500, 1000), return_mask=return_mask)
    want_mask = ops.upsample_argmax(logits, (500, 1000), 32)
    want = ops.overlay(f, want_mask, pal, 0.5)
    if return_mask:
        result, got_mask = result
        assert np.array_equal(got_mask, want_mask)
    assert np.array_equal(result, want)
    check_upsample_argmax(want_mask, logits, 32, (500, 1000))


@needs_cpp
def test_thread_count_does_not_change_results(rng):
    from edgeseg import _C

    logits = (3 * rng.standard_normal((11, 30, 40))).astype(np.float32)
    f = frame(rng, 480, 640)
    before = _C.num_threads()
    try:
        _C.set_num_threads(1)
        one = ops.upsample_argmax(logits, (240, 320), 8), ops.preprocess(f, (240, 320), MEAN, STD)
        _C.set_num_threads(3)
        three = ops.upsample_argmax(logits, (240, 320), 8), ops.preprocess(f, (240, 320), MEAN, STD)
    finally:
        _C.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(one, three))


# ----- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ops.preprocess(np.zeros((4, 4), np.uint8), (2, 2), MEAN, STD), DataError, "BGR uint8"),
        (lambda: ops.preprocess(np.zeros((4, 4, 3), np.float32), (2, 2), MEAN, STD), DataError, "BGR uint8"),
        (lambda: ops.preprocess(np.zeros((4, 8, 3), np.uint8)[:, ::2], (2, 2), MEAN, STD), DataError, "contiguous"),
        (lambda: ops.preprocess(np.zeros((4, 4, 3), np.uint8), (0, 2), MEAN, STD), ConfigError, "out_size"),
        (lambda: ops.preprocess(np.zeros((4, 4, 3), np.uint8), (2, 2), MEAN, (1, 0, 1)), ConfigError, "non-zero"),
        (lambda: ops.preprocess(np.zeros((4, 4, 3), np.uint8), (2, 2), (1, 2), STD), ConfigError, "3 finite"),
        (lambda: ops.preprocess(np.zeros((4, 4, 3), np.uint8), (2, 2), MEAN, STD, dtype=np.float64), ConfigError,
         "float32 or float16"),
        (lambda: ops.preprocess(np.zeros((4, 4, 3), np.uint8), (2, 2), MEAN, STD, out=np.empty((1, 3, 2, 3), np.float32)),
         ConfigError, r"out must have shape \(1, 3, 2, 2\)"),
        (lambda: ops.argmax(np.zeros((3, 4, 5), np.float64)), DataError, "float32 or float16"),
        (lambda: ops.argmax(np.zeros((4, 5), np.float32)), DataError, "3 dimensions"),
        (lambda: ops.argmax(np.zeros((2, 3, 4, 5), np.float32)), DataError, "batch of 2"),
        (lambda: ops.argmax(np.zeros((3, 4, 5), np.float32).transpose(0, 2, 1)), DataError, "C-contiguous"),
        (lambda: ops.argmax(np.zeros((3, 0, 5), np.float32)), DataError, "empty"),
        (lambda: ops.argmax(np.zeros((300, 4, 5), np.float32)), ConfigError, "int32"),
        (lambda: ops.argmax(np.zeros((3, 4, 5), np.float32), out_dtype=np.int64), ConfigError, "uint8 or int32"),
        (lambda: ops.argmax([[[1.0]]]), DataError, "numpy array or a CUDA array"),
        (lambda: ops.upsample_argmax(np.zeros((3, 4, 5), np.float32), (33, 40), 8), ConfigError, "larger than"),
        (lambda: ops.upsample_argmax(np.zeros((3, 4, 5), np.float32), (32, 40), 0), ConfigError, "stride"),
        (lambda: ops.upsample_argmax(np.zeros((3, 4, 5), np.float32), (32, 40), 2.5), ConfigError, "stride"),
        (lambda: ops.colorize(np.zeros((4, 4), np.int32), np.zeros((2, 3), np.uint8)), DataError, "uint8"),
        (lambda: ops.colorize(np.zeros((4, 4), np.uint8), np.zeros((2, 4), np.uint8)), ConfigError, r"\(K, 3\)"),
        (lambda: ops.colorize(np.zeros((4, 4), np.uint8), np.zeros((257, 3), np.uint8)), ConfigError, "K <= 256"),
        (lambda: ops.colorize(np.zeros((4, 4), np.uint8), [[0, 0, 300]]), ConfigError, "0..255"),
        (lambda: ops.overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), [[1, 2, 3]], 1.5),
         ConfigError, r"alpha must be in \[0, 1\]"),
        (lambda: ops.overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 1), np.uint8), [[1, 2, 3]]), DataError,
         "2 dimensions"),
        (lambda: ops.overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), [[1, 2, 3]],
                             out=np.zeros((4, 4, 3), np.uint8)[::-1]), ConfigError, "C-contiguous"),
    ],
)
def test_bad_input_raises_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


@needs_cpp
def test_extension_rejects_bad_arrays_without_crashing():
    from edgeseg import _C

    with pytest.raises(ValueError, match="C-contiguous"):
        _C.argmax(np.zeros((3, 4, 5), np.float32)[:, ::2], np.zeros((2, 5), np.uint8))
    with pytest.raises(ValueError, match="wrong shape"):
        _C.argmax(np.zeros((3, 4, 5), np.float32), np.zeros((5, 4), np.uint8))
    with pytest.raises(ValueError, match="within"):
        _C.upsample_argmax(np.zeros((3, 4, 5), np.float32), 8, np.zeros((40, 40), np.uint8))


# ----- fallback ----------------------------------------------------------------------------------------------------


def test_numpy_fallback_warns_once_and_matches(rng, monkeypatch):
    monkeypatch.setattr(ops, "_C", None)
    monkeypatch.setattr(ops, "_C_IMPORT_ERROR", ImportError("simulated"))
    monkeypatch.setattr(ops, "_warned_fallback", False)
    assert ops.kernel_backend() == "numpy" and not ops.cuda_available()
    logits = (3 * rng.standard_normal((5, 6, 7))).astype(np.float32)
    f, pal = frame(rng, 40, 50), palette(rng, 5)
    with pytest.warns(RuntimeWarning, match="numpy reference"):
        m = ops.upsample_argmax(logits, (48, 56), 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only one warning per process
        assert np.array_equal(m, ref.upsample_argmax(logits, (48, 56), 8))
        assert np.array_equal(ops.overlay(f, m, pal, 0.5), ref.overlay(f, m, pal, 0.5))
        assert np.array_equal(ops.argmax(logits), np.argmax(logits, axis=0))
        np.testing.assert_allclose(ops.preprocess(f, (8, 9), MEAN, STD), ref.preprocess(f, (8, 9), MEAN, STD))
        assert np.array_equal(ops.colorize(m, pal), ref.colorize(m, pal))
        ov, mk = ops.upsample_argmax_overlay(logits, f, 8, pal, 0.5, mask_size=(48, 56), return_mask=True)
        assert np.array_equal(mk, m) and np.array_equal(ov, ref.overlay(f, m, pal, 0.5))


def test_runtime_ops_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, edgeseg.runtime.ops, edgeseg.runtime.ops_reference; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_cpp
def test_kernels_work_after_fork(rng):
    import os

    from edgeseg import _C

    logits = (3 * rng.standard_normal((11, 60, 80))).astype(np.float32)
    before = _C.num_threads()
    _C.set_num_threads(2)  # make sure the parent has started its helper threads
    try:
        want = ops.upsample_argmax(logits, (480, 640), 8)
        pid = os.fork()
        if pid == 0:  # child: the parent's helpers do not exist here
            ok = np.array_equal(ops.upsample_argmax(logits, (480, 640), 8), want)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        _C.set_num_threads(before)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
