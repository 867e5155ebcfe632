"""Test-time augmentation (multi-scale and flip) in the processing plan: plain TTA is plain inference bit for bit, the
averaged probabilities of a fixed pixel classifier equal a float64 numpy reference, and graphs that cannot take the
scales are refused naming --dynamic."""

import numpy as np
import pytest

from edgeseg.errors import ConfigError
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.tta import TTA

from .onnx_graphs import bilinear_resize, bilinear_upsample, random_scene, reference_logits, write_pixel_classifier

pytest.importorskip("onnxruntime")


def _softmax64(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _reference_probabilities(frame, input_size, views, stride=1):
    """float64: per view, the frame (mirrored by hand when flipped) resized to the view's size, classified, upsampled
    by the stride, mirrored back, resized to input_size; the softmaxes averaged."""
    total = 0.0
    for (height, width), flip in views:
        source = np.ascontiguousarray(frame[:, ::-1]) if flip else frame
        logits = reference_logits(source, (height, width), stride=stride)
        if stride > 1:
            logits = bilinear_upsample(logits, stride, (height, width))
        if flip:
            logits = logits[:, :, ::-1]
        total = total + _softmax64(bilinear_resize(logits, input_size))
    return total / len(views)


@pytest.mark.parametrize("stride", [1, 8], ids=["logits", "lowres"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_scale_one_without_flip_is_plain_inference_bit_for_bit(tmp_path, stride, dynamic):
    path = write_pixel_classifier(tmp_path / "m.onnx", input_size=(32, 48), stride=stride, dynamic_hw=dynamic)
    rng = np.random.default_rng(5)
    frames = [random_scene(rng, 64, 96), random_scene(rng, 45, 61), random_scene(rng, 32, 48)]
    with Segmenter(path) as plain, Segmenter(path, tta=TTA(scales=(1.0,), flip=False)) as tta:
        for got, expected in zip(tta.predict(frames), plain.predict(frames)):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("stride", "input_size", "scales", "view_sizes"),
    [
        # sizes rounded half up: 24 * 0.75 = 18, 32 * 1.25 = 40; written out here, not computed by the code
        (1, (24, 32), (0.75, 1.0, 1.25), [(18, 24), (24, 32), (30, 40)]),
        (8, (32, 48), (0.5, 1.0, 1.5), [(16, 24), (32, 48), (48, 72)]),  # multiples of the stride
    ],
    ids=["logits", "lowres"],
)
@pytest.mark.parametrize("flip", [False, True], ids=["scales", "scales+flip"])
def test_averaged_probabilities_equal_a_float64_reference(tmp_path, stride, input_size, scales, view_sizes, flip):
    path = write_pixel_classifier(tmp_path / "m.onnx", input_size=input_size, stride=stride, dynamic_hw=True)
    frame = random_scene(np.random.default_rng(6), 50, 70)
    views = [(size, f) for size in view_sizes for f in ((False, True) if flip else (False,))]
    expected = _reference_probabilities(frame, input_size, views, stride)
    with Segmenter(path, tta=TTA(scales=scales, flip=flip)) as seg:
        probs = seg.plan.tta_probabilities([frame], seg.backend.infer)[0]
        mask = seg.predict([frame])[0]
    assert probs.shape == (4, *input_size) and probs.dtype == np.float32
    # float32 against float64 (measured: max 5e-7); the frame resize is cv2's on these sizes, bit for bit
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)
    top2 = np.sort(expected, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 0.05
    assert clear.mean() > 0.8
    np.testing.assert_array_equal(mask[clear], expected.argmax(0)[clear])


def test_flip_alone_on_a_per_pixel_classifier_is_its_plain_softmax(tmp_path):
    """A per-pixel classifier commutes with mirroring, so once the mirrored view's logits are mirrored back both
    views agree and their average is the plain softmax; logits left mirrored would average two different maps."""
    path = write_pixel_classifier(tmp_path / "m.onnx", input_size=(24, 32), dynamic_hw=True)
    frame = random_scene(np.random.default_rng(7), 24, 32)
    with Segmenter(path, tta=TTA(flip=True)) as seg:
        probs = seg.plan.tta_probabilities([frame], seg.backend.infer)[0]
    np.testing.assert_allclose(probs, _softmax64(reference_logits(frame, (24, 32))), rtol=0, atol=1e-5)


def test_static_graph_refuses_scales_naming_dynamic_but_takes_flip(tmp_path):
    path = write_pixel_classifier(tmp_path / "m.onnx", input_size=(24, 32))
    with pytest.raises(ConfigError, match=r"18x24, 30x40.*static shape.*--dynamic 1x18x24 1x24x32 \d+x30x40"):
        Segmenter(path, tta=TTA(scales=(0.75, 1.0, 1.25)))
    frame = random_scene(np.random.default_rng(8), 24, 32)
    with Segmenter(path, tta=TTA(flip=True)) as seg:  # same size mirrored: any graph takes it
        assert seg.predict([frame])[0].shape == (24, 32)


def test_class_map_graph_refuses_tta(tmp_path):
    path = write_pixel_classifier(tmp_path / "m.onnx", argmax=True)
    with pytest.raises(ConfigError, match="--argmax"):
        Segmenter(path, tta=TTA(flip=True))


def test_engine_profile_bounds_the_scales():
    """A TensorRT engine runs only inside its optimisation profile: sizes outside it are refused before a frame."""
    from edgeseg.config import make_meta
    from edgeseg.runtime.plan import ProcessingPlan

    plan = ProcessingPlan.from_meta(make_meta("m", ["a", "b"], (240, 320)), tta=TTA(scales=(0.5, 1.0, 1.5)))
    inside = [(1, 3, 120, 160), (1, 3, 240, 320), (2, 3, 360, 480)]
    plan.check_tta_graph((-1, 3, -1, -1), inside)
    narrow = [(1, 3, 200, 300), (1, 3, 240, 320), (2, 3, 300, 400)]
    with pytest.raises(ConfigError, match=r"120x160, 360x480, outside .* 200x300 \.\. 300x400.*--dynamic 1x120x160 "
                                          r"1x240x320 2x360x480"):
        plan.check_tta_graph((-1, 3, -1, -1), narrow)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scales": ()}, "at least one scale"),
        ({"scales": (0.0, 1.0)}, r"in \(0, 4\]"),
        ({"scales": (1.0, float("nan"))}, r"in \(0, 4\]"),
        ({"scales": (10.0,)}, r"in \(0, 4\]"),
        ({"scales": (1.0, 1.0)}, "twice"),
        ({"scales": ("big",)}, "must be numbers"),
        ({"flip": "yes"}, "True or False"),
    ],
)
def test_bad_tta_is_a_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TTA(**kwargs)
