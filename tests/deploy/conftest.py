"""Tiny fixtures for the deployment tests: a small FCN checkpoint and its export with a Triton repository."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgeseg.config import make_meta  # noqa: E402

from .tiny_model import CLASSES, MAX_BATCH, SIZE, TINY_NAME, TinyFCN  # noqa: E402


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """An EdgeSeg checkpoint of TinyFCN, registered under TINY_NAME for the module's lifetime."""
    from edgeseg.models.registry import registered_model
    from edgeseg.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = TinyFCN().eval()
    with torch.no_grad():  # large weights: masks with several classes, so agreement is not trivially all one class
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.normal_(module.weight, std=1.0)
                torch.nn.init.normal_(module.bias, std=0.5)
    meta = make_meta(TINY_NAME, CLASSES, SIZE)
    with registered_model(TINY_NAME, lambda *, num_classes, pretrained_backbone=None: TinyFCN(num_classes)):
        yield save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, meta)


@pytest.fixture(scope="module")
def triton_export(tmp_path_factory, tiny_ckpt):
    """export_model(..., triton=REPO) with the Triton contract: {'out': DIR, 'repo': REPO, 'result': ...}."""
    from edgeseg.export.pipeline import export_model

    root = tmp_path_factory.mktemp("triton_export")
    result = export_model(tiny_ckpt, root / "export", progress=False, uint8_input=True, argmax=True,
                          max_batch=MAX_BATCH, triton=str(root / "repo"), triton_name="tiny")
    return {"out": root / "export", "repo": root / "repo", "result": result}
