"""One rule for model file names (edgeseg.files.model_kind): the suffix decides, whatever its case, and every
command agrees. Before, `bench` lower-cased the suffix and `open_backend` did not, so `bench MODEL.ONNX` passed its
check and was then refused when the model was opened."""

from __future__ import annotations

import json
import shutil

import pytest

from edgeseg.files import model_kind

pytest.importorskip("onnxruntime")

from edgeseg.cli import main  # noqa: E402
from tests.runtime.onnx_graphs import write_pixel_classifier  # noqa: E402


@pytest.mark.parametrize("name, kind", [
    ("m.onnx", "onnx"), ("MODEL.ONNX", "onnx"), ("m.Onnx", "onnx"), ("m.engine", "engine"), ("M.ENGINE", "engine"),
    ("m.plan", "engine"), ("m.PLAN", "engine"), ("m.trt", "engine"), ("m.pt", None), ("m.onnx.json", None),
    ("onnx", None), ("m.engine.cache", None),
])
def test_model_kind_by_suffix_in_any_case(name, kind):
    assert model_kind(name) == kind


@pytest.fixture(scope="module")
def upper_model(tmp_path_factory):
    """The pixel classifier saved as MODEL.ONNX."""
    folder = tmp_path_factory.mktemp("upper")
    lower = write_pixel_classifier(folder / "lower.onnx")
    return shutil.move(lower, folder / "MODEL.ONNX")


def test_bench_runs_an_upper_case_onnx(upper_model, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", str(upper_model), "--json", str(out), "--min-seconds", "0", "--min-iters", "2",
                 "--warmup", "1", "--frames", "2", "--frame-size", "40", "56"]) == 0, capsys.readouterr().err
    (row,) = json.loads(out.read_text())["rows"]
    assert (row["format"], row["status"]) == ("onnx", "ok") and row["fps"] > 0


def test_run_and_the_segmenter_open_an_upper_case_onnx(upper_model, tmp_path, capsys):
    from edgeseg.runtime.segmenter import Segmenter

    with Segmenter(upper_model) as seg:
        assert seg.backend.name.startswith("onnxruntime")
    out = tmp_path / "out.mp4"
    assert main(["run", str(upper_model), "--source", "synthetic:3", "--out", str(out)]) == 0, capsys.readouterr().err
    assert out.stat().st_size > 0


def test_a_folder_names_the_upper_case_model_inside_it(upper_model, capsys):
    code = main(["run", str(upper_model.parent), "--source", "synthetic:1", "--out", "unused.mp4"])
    err = capsys.readouterr().err
    assert code == 2 and "is a folder, not a model file" in err and "MODEL.ONNX" in err
