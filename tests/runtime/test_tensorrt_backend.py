"""TensorRTBackend: file checks and the no-GPU error run everywhere; running an engine needs an NVIDIA GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx (pip install tensorrt-rtx-cu13) is not importable")

from edgeseg.config import make_meta  # noqa: E402
from edgeseg.errors import BackendUnavailableError, ModelFileError  # noqa: E402
from edgeseg.runtime.backends import open_backend  # noqa: E402
from edgeseg.runtime.backends.tensorrt import TensorRTBackend  # noqa: E402

pytestmark = pytest.mark.tensorrt


def _gpu_available() -> bool:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False
    err, count = cudart.cudaGetDeviceCount()
    return err == cudart.cudaError_t.cudaSuccess and count > 0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from edgeseg.export.engine import engine_from_onnx
    from edgeseg.export.onnx_export import onnx_from_torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1)).eval()
    meta = make_meta("seq", ["a", "b", "c"], (32, 48))
    d = tmp_path_factory.mktemp("trt")
    onnx_path = onnx_from_torch(model, meta, d / "model.onnx")
    return onnx_path, engine_from_onnx(onnx_path, d / "model.engine", flavour="tensorrt_rtx")


def _copy(built, tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(built[1].read_bytes())
    (tmp_path / "model.engine.json").write_text(built[1].with_name("model.engine.json").read_text())
    return engine


@pytest.mark.skipif(_gpu_available(), reason="this machine has a GPU: the no-GPU error cannot be seen")
def test_no_gpu_gives_clear_error(built):
    with pytest.raises(BackendUnavailableError, match="needs an NVIDIA GPU and TensorRT; use the .onnx"):
        open_backend(built[1])


def test_missing_sidecar(built, tmp_path):
    engine = _copy(built, tmp_path)
    (tmp_path / "model.engine.json").unlink()
    with pytest.raises(ModelFileError, match="has no sidecar"):
        TensorRTBackend(engine)


def test_corrupt_sidecar(built, tmp_path):
    engine = _copy(built, tmp_path)
    (tmp_path / "model.engine.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        TensorRTBackend(engine)


def test_engine_does_not_match_sidecar(built, tmp_path):
    engine = _copy(built, tmp_path)
    engine.write_bytes(engine.read_bytes()[:-10])  # truncated
    with pytest.raises(ModelFileError, match="sha256 differs"):
        TensorRTBackend(engine)


def test_sidecar_with_bad_tensors(built, tmp_path):
    engine = _copy(built, tmp_path)
    side = json.loads((tmp_path / "model.engine.json").read_text())
    side["inputs"] = [{"name": "input", "shape": "1x3", "dtype": "float32"}]
    (tmp_path / "model.engine.json").write_text(json.dumps(side))
    with pytest.raises(ModelFileError, match="malformed I/O"):
        TensorRTBackend(engine)


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs an NVIDIA GPU (CUDA device) to run a TensorRT engine")
def test_engine_matches_onnxruntime(built):
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    x = np.random.default_rng(0).standard_normal((1, 3, 32, 48)).astype(np.float32)
    with OnnxRuntimeBackend(built[0]) as ort_backend, TensorRTBackend(built[1]) as trt_backend:
        want = ort_backend.infer(x)
        got = trt_backend.infer(x).copy()
        again = trt_backend.infer(x)  # buffers reused
        assert trt_backend.meta == ort_backend.meta
    np.testing.assert_allclose(got, want, atol=1e-2)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(again, got)
