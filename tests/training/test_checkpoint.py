"""Checkpoints: round trip, and untrusted/corrupt files refused with a clear error (weights_only=True)."""

from pathlib import Path

import pytest
import torch

from edgeseg.config import make_meta
from edgeseg.errors import ModelFileError
from edgeseg.models import build_model
from edgeseg.training.checkpoint import load_model, read_checkpoint, save_checkpoint


def _saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model("fcn32s_resnet18", num_classes=3).eval()
    meta = make_meta("fcn32s_resnet18", ["a", "b", "c"], (64, 64))
    return save_checkpoint(tmp_path / "m.pt", model, meta, epoch=3), model


def test_round_trip_gives_same_outputs(tmp_path):
    path, model = _saved(tmp_path)
    loaded, meta = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert meta.classes == ("a", "b", "c") and read_checkpoint(path)["epoch"] == 3


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "edgeseg-checkpoint", "payload": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(ModelFileError, match="weights_only=True"):
        read_checkpoint(path)
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path):
    path, _ = _saved(tmp_path)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="not a readable torch file"):
        read_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ModelFileError, match="not an EdgeSeg checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(ModelFileError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")


def test_weights_that_do_not_fit_the_model(tmp_path):
    model = build_model("fcn32s_resnet18", num_classes=3)
    meta = make_meta("fcn32s_resnet18", ["a", "b", "c", "d"], (64, 64))  # claims 4 classes
    path = save_checkpoint(tmp_path / "m.pt", model, meta)
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(path)
