"""ProcessingPlan: the one home of pre/post-processing, checked against OpenCV, PyTorch and hand-made cases."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg.config import make_meta
from edgeseg.errors import ConfigError, DataError
from edgeseg.runtime import ops
from edgeseg.runtime.backends.base import Backend, TensorSpec
from edgeseg.runtime.plan import ProcessingPlan
from edgeseg.runtime.segmenter import Segmenter

CLASSES = ["road", "car", "sky", "tree"]


def _meta(**kwargs):
    return make_meta("test", CLASSES, (12, 16), **kwargs)


def _frame(h=30, w=41, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_plan_reads_what_the_graph_already_does():
    assert ProcessingPlan.from_meta(_meta()).input_shape(2) == (2, 3, 12, 16)
    uint8 = ProcessingPlan.from_meta(_meta(input_format="uint8_nhwc_bgr"))
    assert uint8.normalize_in_graph and uint8.input_shape(2) == (2, 12, 16, 3) and uint8.input_dtype == np.uint8
    assert ProcessingPlan.from_meta(_meta(output_format="classmap")).argmax_in_graph
    lowres = ProcessingPlan.from_meta(_meta(output_stride=4))
    assert lowres.output == "lowres" and lowres.output_stride == 4
    assert ProcessingPlan.from_meta(_meta(), np.float16).input_dtype == np.float16
    with pytest.raises(ConfigError, match="does not fit"):
        ProcessingPlan.from_meta(_meta(), np.uint8)  # a uint8 input on a float_nchw_rgb graph


def _bilinear_f64(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Half-pixel-centre bilinear resize in float64 (the rule cv2.INTER_LINEAR follows), written out in numpy:
    source coordinate (dst + 0.5) * in / out - 0.5, clamped to the image."""
    def taps(out_n: int, in_n: int):
        pos = np.clip((np.arange(out_n) + 0.5) * in_n / out_n - 0.5, 0, in_n - 1)
        low = np.floor(pos).astype(int)
        return low, np.minimum(low + 1, in_n - 1), pos - low

    image = image.astype(np.float64)
    (y0, y1, wy), (x0, x1, wx) = taps(out_hw[0], image.shape[0]), taps(out_hw[1], image.shape[1])
    rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


MEAN, STD = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)  # distinct per channel, so an RGB/BGR mix-up shows


@pytest.mark.parametrize("frame_hw", [(24, 32), (30, 41), (9, 7)])
def test_preprocess_float_graph_is_resized_rgb_normalised_nchw(frame_hw):
    """Against float64 numpy: bilinear resize to the model size, BGR -> RGB, (x / 255 - mean) / std, NCHW. The
    runtime resizes in uint8 fixed point (within 1 LSB of the exact value, 0.5 LSB of rounding on top), so the
    tolerance is 1.5 / 255 / min(std); a swapped channel, a missing mean or std, or NHWC is off by far more."""
    plan = ProcessingPlan.from_meta(_meta(mean=MEAN, std=STD))
    frames = [_frame(*frame_hw, seed=0), _frame(30, 41, seed=1)]
    batch = plan.preprocess(frames)
    assert batch.shape == (2, 3, 12, 16) and batch.dtype == np.float32
    for got, frame in zip(batch, frames):
        rgb = _bilinear_f64(frame, (12, 16))[..., ::-1]
        want = ((rgb / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1)
        np.testing.assert_allclose(got, want, rtol=0, atol=1.5 / 255 / min(STD))


def test_preprocess_uint8_graph_is_a_bgr_nhwc_resize_only():
    """The graph normalises: the batch is the frame resized (float64 numpy reference, rounded), still BGR uint8."""
    plan = ProcessingPlan.from_meta(_meta(input_format="uint8_nhwc_bgr"))
    frame = _frame()
    batch = plan.preprocess([frame])
    assert batch.shape == (1, 12, 16, 3) and batch.dtype == np.uint8
    difference = np.abs(batch[0].astype(np.int16) - np.rint(_bilinear_f64(frame, (12, 16))))
    assert difference.max() <= 1  # cv2's fixed point is within 1 of the exact value


def test_preprocess_refuses_a_bad_frame():
    plan = ProcessingPlan.from_meta(_meta())
    with pytest.raises(DataError, match="frame 1 must be a BGR uint8"):
        plan.preprocess([_frame(), np.zeros((4, 4), np.uint8)])


def test_lowres_postprocess_matches_pytorch_bilinear_then_argmax():
    torch = pytest.importorskip("torch")
    plan = ProcessingPlan.from_meta(_meta(output_stride=4))
    logits = np.random.default_rng(3).normal(size=(2, 4, 3, 4)).astype(np.float32)
    up = torch.nn.functional.interpolate(torch.from_numpy(logits).double(), scale_factor=4, mode="bilinear",
                                         align_corners=False)
    expected = up.argmax(1).numpy().astype(np.uint8)
    margin = up.topk(2, dim=1).values
    clear = (margin[:, 0] - margin[:, 1]).numpy() > 1e-4  # float32 vs float64 may flip only near-ties
    masks = plan.postprocess(logits)
    assert [m.shape for m in masks] == [(12, 16), (12, 16)]
    np.testing.assert_array_equal(np.stack(masks)[clear], expected[clear])
    assert clear.mean() > 0.99


def test_postprocess_returns_masks_the_caller_owns():
    plan = ProcessingPlan.from_meta(_meta(output_format="classmap"))
    output = np.random.default_rng(0).integers(0, 4, (2, 12, 16), dtype=np.uint8)
    masks = plan.postprocess(output)
    before = [m.copy() for m in masks]
    output[...] = 99  # a backend reusing its output buffer
    for mask, kept in zip(masks, before):
        np.testing.assert_array_equal(mask, kept)


def test_render_takes_the_cheap_route_and_matches_the_resize_first_route():
    plan = ProcessingPlan.from_meta(_meta())
    frame = _frame(37, 53)
    mask = np.random.default_rng(1).integers(0, 5, (12, 16), dtype=np.uint8)
    mask[mask == 4] = 255  # void: frame left as is
    full = cv2.resize(mask, (53, 37), interpolation=cv2.INTER_NEAREST)
    out = plan.render(frame, mask, ["overlay", "mask", "color"], alpha=0.4)
    # the overlay blends the model-size mask directly: identical to resizing first, as the old path did
    np.testing.assert_array_equal(out["overlay"], ops.overlay(frame, full, plan.palette_bgr, 0.4))
    np.testing.assert_array_equal(out["mask"], full)
    palette = np.zeros((256, 3), np.uint8)  # void (255) is black
    palette[: len(plan.palette_bgr)] = plan.palette_bgr
    np.testing.assert_array_equal(out["color"], palette[full])
    assert set(plan.render(frame, mask, ["overlay"])) == {"overlay"}
    with pytest.raises(ConfigError, match="unknown output"):
        plan.render(frame, mask, ["heatmap"])


class _ReusingBackend(Backend):
    """A classmap backend that returns the same output buffer on every call, as TensorRT's pinned buffers do."""

    name = "reusing"
    output_reused = True

    def __init__(self) -> None:
        super().__init__("reusing.engine")

    def _load_impl(self) -> None:
        self.meta = _meta(output_format="classmap", input_format="uint8_nhwc_bgr")
        self.inputs = [TensorSpec("frame", (-1, 12, 16, 3), np.dtype(np.uint8))]
        self.outputs = [TensorSpec("classmap", (-1, 12, 16), np.dtype(np.uint8))]
        self._out = np.zeros((1, 12, 16), np.uint8)

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        self._out[...] = batch[..., 0] % 4  # the blue channel picks the class
        return self._out


def test_segmenter_masks_survive_the_next_call_of_a_buffer_reusing_backend():
    segmenter = Segmenter(_ReusingBackend())
    first = segmenter.predict([np.full((12, 16, 3), 1, np.uint8)])[0]
    second = segmenter.predict([np.full((12, 16, 3), 2, np.uint8)])[0]
    assert (first == 1).all() and (second == 2).all()
