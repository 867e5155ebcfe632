"""Tiny fixtures made by the tests themselves: a 2-stage conv FCN with a ConvTranspose head, its meta and files."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgeseg.config import make_meta  # noqa: E402

SIZE = (64, 64)
NUM_CLASSES = 4


class TinyFCN(torch.nn.Module):
    """conv(s2) -> conv(s2) -> 1x1 classifier at stride 4 -> ConvTranspose x2 -> bilinear x2 (fixed upsampling)."""

    output_stride = 2

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        )
        self.classifier = torch.nn.Conv2d(16, num_classes, 1)
        self.up = torch.nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1)

    def forward_lowres(self, x):
        return self.up(self.classifier(self.body(x)))

    def forward(self, x):
        return torch.nn.functional.interpolate(self.forward_lowres(x), scale_factor=2, mode="bilinear", align_corners=False)


def make_tiny_model(seed: int = 0) -> TinyFCN:
    torch.manual_seed(seed)
    model = TinyFCN()
    with torch.no_grad():  # a non-trivial BatchNorm so folding is exercised
        bn = model.body[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_meta():
    return make_meta("tiny_fcn", [f"class{i}" for i in range(NUM_CLASSES)], SIZE)


@pytest.fixture(scope="session")
def frames():
    from edgeseg.data import synthetic_frames

    return [frame for i, frame in enumerate(synthetic_frames(36, (90, 120), seed=1)) if i % 6 == 0]


@pytest.fixture(scope="session")
def fp32_onnx(tmp_path_factory, tiny_model, tiny_meta):
    from edgeseg.export.onnx_export import onnx_from_torch

    return onnx_from_torch(tiny_model, tiny_meta, tmp_path_factory.mktemp("fp32") / "model.onnx")


def _run_onnx(model, x: np.ndarray) -> np.ndarray:
    from edgeseg.export.onnx_io import ort_session

    session = ort_session(model)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="session")
def run_onnx():
    """run_onnx(path_or_model, batch) -> first output, with ONNX Runtime CPU."""
    return _run_onnx


TINY_NAME = "test_tiny_fcn"


@pytest.fixture(scope="module")  # module scope: the test model leaves the registry after each module
def tiny_ckpt(tmp_path_factory, tiny_model, tiny_meta):
    """A real EdgeSeg checkpoint of TinyFCN, registered under TINY_NAME so load_model can rebuild it."""
    from edgeseg.models.registry import registered_model
    from edgeseg.training.checkpoint import save_checkpoint

    with registered_model(TINY_NAME, lambda *, num_classes, pretrained_backbone=None: TinyFCN(num_classes)):
        yield save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tiny_model,
                              tiny_meta.replace(model_name=TINY_NAME))


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory, frames):
    """A folder dataset (val split, 4 classes) of synthetic frames with blocky labels; its images calibrate INT8."""
    import json

    import cv2

    root = tmp_path_factory.mktemp("data")
    (root / "val" / "images").mkdir(parents=True)
    (root / "val" / "labels").mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(root / "val" / "images" / f"f{i}.png"), frame)
        label = (np.arange(frame.shape[1])[None, :] * NUM_CLASSES // frame.shape[1]).repeat(frame.shape[0], 0)
        cv2.imwrite(str(root / "val" / "labels" / f"f{i}.png"), label.astype(np.uint8))
    (root / "classes.json").write_text(json.dumps({"classes": [f"class{i}" for i in range(NUM_CLASSES)]}))
    return root
