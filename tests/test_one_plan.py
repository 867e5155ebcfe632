"""One processing plan: the torch predictor, the runtime Segmenter and `bench` give the same masks for one model.

The model is a registry FCN exported with `onnx_from_torch`; every path reads the same ModelMeta, so the backend
(PyTorch vs ONNX Runtime) is the only difference between them.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from edgeseg.bench import benchmark_segmenter  # noqa: E402
from edgeseg.config import make_meta  # noqa: E402
from edgeseg.data import SyntheticScenes, synthetic_frames  # noqa: E402
from edgeseg.evaluation import evaluate_many  # noqa: E402
from edgeseg.models import build_model  # noqa: E402
from edgeseg.runtime.segmenter import Segmenter  # noqa: E402
from edgeseg.training.predictor import TorchPredictor  # noqa: E402

SIZE = (64, 80)
NUM_CLASSES = 5
# The float32 logit margin (top-1 minus top-2) above which PyTorch and ONNX Runtime must pick the same class:
# the two backends sum in different orders, so their logits differ by float32 rounding (checked below to stay
# under half this margin); where the margin is smaller the argmax is a coin toss between near-equal classes.
CLEAR_MARGIN = 1e-4


@pytest.fixture(scope="module")
def model_and_meta():
    torch.manual_seed(0)
    model = build_model("fcn8s_resnet18", num_classes=NUM_CLASSES)
    with torch.no_grad():  # the score convs start at (near) zero; larger weights give clear, varied argmaxes
        for module in model.modules():
            is_score = isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1)
            if is_score and module.out_channels == NUM_CLASSES:
                module.weight.normal_(0.0, 0.05)  # logits of a few units: float32 rounding stays far below 1e-4
    meta = make_meta("fcn8s_resnet18", [f"c{i}" for i in range(NUM_CLASSES)], SIZE)
    return model.eval(), meta


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory, model_and_meta):
    from edgeseg.export.onnx_export import onnx_from_torch

    model, meta = model_and_meta
    return onnx_from_torch(model, meta, tmp_path_factory.mktemp("plan") / "model.onnx")


@pytest.fixture(scope="module")
def frames():
    # frames larger, equal and smaller than the model's input, so the resize is exercised both ways and not at all
    big = list(synthetic_frames(3, (90, 120), seed=4))
    return big + [next(synthetic_frames(1, SIZE, seed=5)), next(synthetic_frames(1, (40, 56), seed=6))]


def _reference_batch(frames, meta) -> np.ndarray:
    """float64 numpy/OpenCV: bilinear resize (cv2 INTER_LINEAR convention), BGR -> RGB, /255, (x - mean) / std."""
    height, width = meta.input_size
    out = []
    for frame in frames:
        resized = cv2.resize(frame.astype(np.float64), (width, height), interpolation=cv2.INTER_LINEAR)
        rgb = resized[:, :, ::-1] / 255.0
        out.append(((rgb - np.array(meta.mean)) / np.array(meta.std)).transpose(2, 0, 1))
    return np.stack(out)


def test_torch_predictor_feeds_the_model_the_runtime_batch(model_and_meta, onnx_path, frames):
    model, meta = model_and_meta
    predictor = TorchPredictor(model, meta)
    with Segmenter(onnx_path) as segmenter:
        runtime_batch = segmenter.preprocess(frames).copy()
    batch = predictor.batch(frames)
    # bit for bit: the old cv2 + numpy path differed from the runtime's kernel by up to 1 LSB
    np.testing.assert_array_equal(batch, runtime_batch)
    # ... and that shared kernel is right: within 1/255 of the float64 reference, over the smallest std
    np.testing.assert_allclose(batch, _reference_batch(frames, meta), rtol=0, atol=1.01 / 255 / min(meta.std))
    with torch.no_grad():
        expected = model(torch.from_numpy(runtime_batch)).numpy()
    np.testing.assert_array_equal(predictor.logits(frames), expected)


def test_torch_segmenter_and_bench_give_the_same_masks(model_and_meta, onnx_path, frames, record_property):
    model, meta = model_and_meta
    predictor = TorchPredictor(model, meta)
    torch_logits = predictor.logits(frames)
    torch_masks = predictor.predict(frames)
    with Segmenter(onnx_path) as segmenter:
        # the export has a static batch of 1: one call per frame
        ort_logits = np.concatenate([segmenter.backend.infer(segmenter.preprocess([f])).copy() for f in frames])
        ort_masks = segmenter.predict(frames)
        recorder = _RecordingSegmenter(segmenter, frames)
        benchmark_segmenter(recorder, frames, warmup=0, min_seconds=0.0, min_iters=2 * len(frames))

    # the masks are argmaxes of each backend's own logits, at the model's input size
    np.testing.assert_array_equal(np.stack(torch_masks), torch_logits.argmax(1))
    np.testing.assert_array_equal(np.stack(ort_masks), ort_logits.argmax(1))
    assert np.abs(ort_logits - torch_logits).max() < CLEAR_MARGIN / 2  # why CLEAR_MARGIN is enough

    top2 = np.sort(torch_logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > CLEAR_MARGIN
    fraction = float(clear.mean())
    record_property("clear_margin_fraction", fraction)
    assert fraction > 0.99, f"only {fraction:.4f} of pixels have a clear margin: the check would prove little"
    torch_stack, ort_stack = np.stack(torch_masks), np.stack(ort_masks)
    np.testing.assert_array_equal(torch_stack[clear], ort_stack[clear])
    assert len(np.unique(torch_stack)) >= 3  # a model that paints everything one class would prove nothing

    # bench times the very predictions the Segmenter makes: every recorded mask is the Segmenter's
    assert sorted(recorder.masks) == list(range(len(frames)))
    for index, masks in recorder.masks.items():
        assert len(masks) == 2
        for mask in masks:
            np.testing.assert_array_equal(mask, ort_masks[index])


def test_one_evaluation_loop_scores_both_backends_alike(model_and_meta, onnx_path):
    model, meta = model_and_meta
    dataset = SyntheticScenes(3, (72, 96), seed=2, split="val")
    with Segmenter(onnx_path) as segmenter:
        comparison = evaluate_many(
            {"onnx": segmenter.predict, "torch": TorchPredictor(model, meta).predict},
            _Relabelled(dataset), meta.classes, reference="onnx", progress=False,
        )
    assert comparison.images == 3 and comparison.agreement["onnx"] == 1.0
    assert comparison.agreement["torch"] > 0.99
    assert comparison.scores["torch"].miou == pytest.approx(comparison.scores["onnx"].miou, abs=0.01)


class _RecordingSegmenter:
    """A Segmenter that remembers what predict() returned for each frame (by its index in the bench's list)."""

    def __init__(self, segmenter: Segmenter, frames: list[np.ndarray]) -> None:
        self._segmenter = segmenter
        self._frames = frames
        self.masks: dict[int, list[np.ndarray]] = {}

    def __getattr__(self, name: str):
        return getattr(self._segmenter, name)

    def predict(self, frames):
        masks = self._segmenter.predict(frames)
        for frame, mask in zip(frames, masks):
            index = next(i for i, known in enumerate(self._frames) if known is frame)
            self.masks.setdefault(index, []).append(mask.copy())
        return masks


class _Relabelled:
    """The synthetic scenes with their 8 classes folded into the model's 5 (evaluation needs equal class lists)."""

    def __init__(self, dataset) -> None:
        from edgeseg.data.base import DatasetInfo

        self._dataset = dataset
        self.info = DatasetInfo(tuple(f"c{i}" for i in range(NUM_CLASSES)))

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, index: int):
        image, label = self._dataset[index]
        return image, (label % NUM_CLASSES).astype(np.uint8)
