"""The per-pixel confidence (highest softmax probability, uint8 round(255 p)) of the CPU kernels and the numpy
reference, against float64 softmax and hand-computed values; its route through the plan and the Segmenter.

The C++ kernels must equal the numpy reference bit for bit (both compute the same float32 online softmax); both must
be within 1 LSB of float64 softmax. The CUDA kernels get the same checks in test_ops_cuda.py, on a GPU."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edgeseg.errors import ConfigError
from edgeseg.runtime import ops
from edgeseg.runtime import ops_reference as ref
from edgeseg.runtime.plan import ProcessingPlan

from .ops_cases import UPSAMPLE_CASES, check_confidence, logits, softmax_confidence_f64

try:
    from edgeseg import _C
except ImportError:  # only with EDGESEG_ALLOW_NO_EXTENSION=1 (tests/conftest.py)
    _C = None

needs_ext = pytest.mark.skipif(_C is None, reason="edgeseg._C is not importable (EDGESEG_ALLOW_NO_EXTENSION=1)")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2024)


# ----- hand cases ----------------------------------------------------------------------------------------------------


def _one_pixel(values, dtype=np.float32) -> np.ndarray:
    return np.asarray(values, dtype).reshape(-1, 1, 1)


@pytest.mark.parametrize(
    ("values", "want"),
    [
        ([0.0, math.log(3.0)], 191),  # p = 3/4: 191.25
        ([1.0, 1.0, 1.0, 1.0], 64),  # p = 1/4: 63.75
        ([5.0], 255),  # one class: certain
        ([0.0, 0.0], 128),  # p = 1/2: 127.5 rounds up
        ([-3.0, 40.0, -1.0], 255),  # exp(-41) and exp(-43) vanish
        ([2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 115),  # e^2 / (e^2 + 9) = 0.4509: 114.98
        ([-100.0, -100.0, -100.0, -100.0, -100.0], 51),  # shift invariance far from 0: 1/5
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_hand_computed_probabilities(values, want, dtype):
    lg = _one_pixel(values, dtype)
    for backend in ("cpp", "numpy"):
        if backend == "cpp" and _C is None:
            continue
        mask, conf = (ops.argmax(lg, confidence=True) if backend == "cpp" else ref.argmax_confidence(lg))
        assert int(conf[0, 0]) == want, backend
        assert int(mask[0, 0]) == int(np.argmax(np.asarray(values, dtype)))


def test_nan_pixel_has_no_confidence():
    lg = np.zeros((3, 1, 4), np.float32)
    lg[1, 0, 1] = np.nan  # NaN wins the argmax (np.argmax's rule): no probability
    lg[2, 0, 2] = 1.0
    mask, conf = ops.argmax(lg, confidence=True)
    assert mask.tolist() == [[0, 1, 2, 0]]
    assert conf[0, 1] == 0 and conf[0, 0] == 85 and conf[0, 3] == 85  # 1/3: 85.0
    assert conf[0, 2] == round(255 * math.e / (math.e + 2))


def test_exp_nonpositive_is_close_to_exp():
    x = -np.linspace(0, 80, 100001).astype(np.float32)
    got = ref.exp_nonpositive(x).astype(np.float64)
    assert np.max(np.abs(got / np.exp(x.astype(np.float64)) - 1)) < 1e-4  # far below 2e-3: 1 LSB of 255 p
    assert ref.exp_nonpositive(np.float32(0)) == 1.0
    assert 0 <= ref.exp_nonpositive(np.float32(-1000)) < 1e-36  # clamped, still finite
    assert np.isfinite(ref.exp_nonpositive(np.float32(np.nan)))  # the NaN state is carried by the maximum


# ----- C++ kernels: bit exact with the reference, within 1 LSB of float64 ----------------------------------------------


@needs_ext
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 1, 1), (5, 37, 53), (19, 64, 128), (300, 3, 5), (12, 1, 1030)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("values", ["normal", "ties", "nan"])
def test_argmax_confidence_cpp_is_bit_exact_and_within_one_lsb(rng, shape, dtype, values):
    lg = logits(rng, shape, dtype, values)
    out_dtype = np.int32 if shape[0] > 256 else np.uint8
    mask, conf = ops.argmax(lg, out_dtype=out_dtype, confidence=True)
    want_mask, want_conf = ref.argmax_confidence(lg, out_dtype)
    assert np.array_equal(mask, np.argmax(lg, axis=0)) and mask.dtype == out_dtype
    assert np.array_equal(mask, want_mask)
    assert np.array_equal(conf, want_conf)
    check_confidence(conf, lg)
    if values == "nan":
        assert np.all(conf[np.isnan(lg).any(axis=0)] == 0)


@needs_ext
@pytest.mark.parametrize(("classes", "h", "w", "stride", "size"), UPSAMPLE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("values", ["normal", "ties", "nan"])
def test_upsample_argmax_confidence_cpp_is_bit_exact(rng, classes, h, w, stride, size, dtype, values):
    lg = logits(rng, (classes, h, w), dtype, values)
    mask, conf = ops.upsample_argmax(lg, size, stride, confidence=True)
    want_mask, want_conf = ref.upsample_argmax_confidence(lg, size, stride)
    assert np.array_equal(mask, ops.upsample_argmax(lg, size, stride))  # the mask is the same with or without
    assert np.array_equal(mask, want_mask)
    assert np.array_equal(conf, want_conf)


@needs_ext
@pytest.mark.parametrize(("classes", "h", "w", "stride", "size"), UPSAMPLE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("values", ["normal", "ties"])
def test_upsample_argmax_confidence_within_one_lsb_of_float64(rng, classes, h, w, stride, size, dtype, values):
    lg = logits(rng, (classes, h, w), dtype, values)
    _, conf = ops.upsample_argmax(lg, size, stride, confidence=True)
    check_confidence(conf, ref.upsample_bilinear(lg, stride, size))  # float64 upsampling, checked against torch


@needs_ext
def test_confidence_writes_into_confidence_out_and_keeps_threads_out_of_it(rng):
    lg = logits(rng, (11, 90, 120), np.float32, "normal")
    mask_buf, conf_buf = np.empty((360, 480), np.uint8), np.empty((360, 480), np.uint8)
    mask, conf = ops.upsample_argmax(lg, (360, 480), 4, out=mask_buf, confidence=True, confidence_out=conf_buf)
    assert mask is mask_buf and conf is conf_buf
    before = _C.num_threads()
    try:
        _C.set_num_threads(1)
        single = ops.upsample_argmax(lg, (360, 480), 4, confidence=True)[1]
    finally:
        _C.set_num_threads(before)
    assert np.array_equal(single, conf_buf)


def test_numpy_kernels_give_the_same_bits(rng, monkeypatch):
    lg = logits(rng, (7, 9, 11), np.float16, "normal")
    fast = ops.upsample_argmax(lg, (70, 85), 8, confidence=True), ops.argmax(lg, confidence=True)
    monkeypatch.setenv("EDGESEG_KERNELS", "numpy")
    slow = ops.upsample_argmax(lg, (70, 85), 8, confidence=True), ops.argmax(lg, confidence=True)
    for a, b in zip(fast, slow):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda lg: ops.argmax(lg, confidence_out=np.empty((4, 5), np.uint8)), "confidence=True"),
        (lambda lg: ops.argmax(lg, confidence=True, confidence_out=np.empty((5, 4), np.uint8)),
         r"confidence_out must have shape \(4, 5\)"),
        (lambda lg: ops.argmax(lg, confidence=True, confidence_out=np.empty((4, 5), np.float32)),
         "confidence_out must have shape"),
        (lambda lg: ops.upsample_argmax(lg, (8, 10), 2, confidence="yes"), "confidence must be True or False"),
    ],
)
def test_bad_confidence_arguments_raise_clear_errors(call, match):
    with pytest.raises(ConfigError, match=match):
        call(np.zeros((3, 4, 5), np.float32))


@needs_ext
def test_extension_rejects_a_bad_confidence_plane():
    lg, out = np.zeros((3, 4, 5), np.float32), np.empty((4, 5), np.uint8)
    for bad, match in (([[0] * 5] * 4, "numpy array"), (np.empty((4, 6), np.uint8), "wrong shape"),
                       (np.empty((4, 5), np.int32), "uint8"), (np.empty((4, 5), np.uint8)[:, ::-1], "contiguous")):
        with pytest.raises(ValueError, match=match):
            _C.argmax(lg, out, bad)
        with pytest.raises(ValueError, match=match):
            _C.upsample_argmax(lg, 1, out, bad)


# ----- the plan ------------------------------------------------------------------------------------------------------


def _plan(output_format: str = "logits", stride: int = 1) -> ProcessingPlan:
    from edgeseg.config import make_meta

    meta = make_meta("m", ("a", "b", "c"), (16, 24), output_stride=stride, output_format=output_format)
    return ProcessingPlan.from_meta(meta)


def test_plan_postprocess_pairs_masks_with_their_confidence(rng):
    for stride, lg_size in ((1, (16, 24)), (8, (2, 3))):
        plan = _plan(stride=stride)
        output = logits(rng, (2, 3, *lg_size), np.float32, "normal")
        pairs = plan.postprocess(output, confidence=True)
        masks = plan.postprocess(output)
        for (mask, conf), plain, one in zip(pairs, masks, output):
            assert np.array_equal(mask, plain) and conf.shape == mask.shape == (16, 24)
            values = one if stride == 1 else ref.upsample_bilinear(one, stride, (16, 24))
            check_confidence(conf, values)


def test_classmap_models_have_no_confidence():
    plan = _plan("classmap")
    with pytest.raises(ConfigError, match="without --argmax"):
        plan.postprocess(np.zeros((1, 16, 24), np.uint8), confidence=True)


def test_render_confidence_outputs_at_frame_size(rng):
    plan = _plan()
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (16, 24), dtype=np.uint8)
    conf = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    out = plan.render(frame, mask, ["confidence", "confidence_heatmap", "mask"], confidence=conf)
    full = cv2.resize(conf, (53, 37), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(out["confidence"], full)  # nearest, like the mask: each pixel keeps its class's value
    assert np.array_equal(out["mask"], cv2.resize(mask, (53, 37), interpolation=cv2.INTER_NEAREST))
    assert np.array_equal(out["confidence_heatmap"], cv2.applyColorMap(full, cv2.COLORMAP_INFERNO))
    with pytest.raises(ConfigError, match="confidence=True"):
        plan.render(frame, mask, ["confidence"])


def test_heatmap_is_dark_where_unsure_and_bright_where_sure():
    ramp = np.array([[0, 255]], np.uint8)
    unsure, sure = ProcessingPlan.heatmap(ramp)[0].astype(int)
    assert unsure.sum() < 30 and sure.sum() > 400


# ----- the Segmenter -------------------------------------------------------------------------------------------------


def test_segmenter_confidence_matches_float64_softmax(tmp_path):
    pytest.importorskip("onnxruntime")
    from edgeseg.runtime.segmenter import Segmenter

    from .onnx_graphs import bilinear_upsample, random_scene, reference_logits, write_pixel_classifier

    rng = np.random.default_rng(5)
    for stride, size in ((1, (24, 32)), (8, (32, 48))):
        path = write_pixel_classifier(tmp_path / f"m{stride}.onnx", input_size=size, stride=stride)
        frame = random_scene(rng, *size)  # at the input size: the resize is the identity, so the logits are exact
        want = reference_logits(frame, size, stride=stride)
        if stride > 1:
            want = bilinear_upsample(want, stride, size)
        with Segmenter(path) as seg:
            (mask, conf), = seg.predict([frame], confidence=True)
            assert np.array_equal(mask, seg.predict([frame])[0])
            assert np.abs(conf.astype(float) - softmax_confidence_f64(want)).max() <= 1
            big = cv2.resize(frame, (size[1] * 2 + 1, size[0] * 2 + 3), interpolation=cv2.INTER_NEAREST)
            full_mask, full_conf = seg.segment(big, confidence=True)
            (small_mask, small_conf), = seg.predict([big], confidence=True)
            nearest = (big.shape[1], big.shape[0])
            assert np.array_equal(full_mask, seg.segment(big))
            assert np.array_equal(full_conf, cv2.resize(small_conf, nearest, interpolation=cv2.INTER_NEAREST))
            assert full_conf.shape == big.shape[:2] and full_conf.dtype == np.uint8


def test_segmenter_refuses_confidence_for_an_in_graph_argmax(tmp_path):
    pytest.importorskip("onnxruntime")
    from edgeseg.runtime.segmenter import Segmenter

    from .onnx_graphs import random_scene, write_pixel_classifier

    path = write_pixel_classifier(tmp_path / "m.onnx", argmax=True)
    with Segmenter(path) as seg:
        with pytest.raises(ConfigError, match=r"ends in an argmax.*without --argmax"):
            seg.segment(random_scene(np.random.default_rng(0), 24, 32), confidence=True)


def test_device_path_backends_take_the_host_route_for_confidence(tmp_path):
    """The TensorRT device path computes masks only: a confidence request must run the engine through infer() and
    the CPU kernels, and a plain request must still take the device path."""
    pytest.importorskip("onnxruntime")
    from edgeseg.runtime.backends import open_backend
    from edgeseg.runtime.segmenter import Segmenter

    from .onnx_graphs import random_scene, reference_logits, write_pixel_classifier

    backend = open_backend(write_pixel_classifier(tmp_path / "m.onnx"), "onnxruntime")
    device_calls = []
    backend.frames_on_device = True  # as a TensorRT backend with the CUDA kernels reports
    backend.predict_frames = lambda frames: device_calls.append(len(frames)) or [np.zeros((24, 32), np.uint8)]
    backend.stage_ms = {}
    frame = random_scene(np.random.default_rng(8), 24, 32)
    with Segmenter(backend) as seg:
        (mask, conf), = seg.predict([frame], confidence=True)
        assert device_calls == []
        assert np.abs(conf.astype(float) - softmax_confidence_f64(reference_logits(frame, (24, 32)))).max() <= 1
        seg.predict([frame])
        assert device_calls == [1]
