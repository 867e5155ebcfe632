"""TensorRTBackend with real TensorRT flavours: file checks and the no-GPU error run everywhere an engine can be
built (TensorRT-RTX builds without a GPU); running engines needs an NVIDIA GPU. Parametrised over every importable
flavour that builds engines (`tensorrt`, `tensorrt_rtx`)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgeseg.errors import BackendUnavailableError, EdgeSegError, ModelFileError
from edgeseg.runtime.gpu import gpu_available
from edgeseg.runtime.trt_flavours import BUILD_FLAVOURS, available_flavours

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from edgeseg.config import make_meta  # noqa: E402
from edgeseg.runtime.backends import open_backend  # noqa: E402
from edgeseg.runtime.backends.tensorrt import TensorRTBackend  # noqa: E402

pytestmark = pytest.mark.tensorrt
GPU = gpu_available()


def _flavour_param(flavour):
    if flavour not in available_flavours():
        return pytest.param(flavour, marks=pytest.mark.skip(reason=f"{flavour} is not importable"))
    if flavour == "tensorrt" and not GPU:
        return pytest.param(flavour, marks=pytest.mark.skip(reason="tensorrt builds engines only on an NVIDIA GPU"))
    return flavour


@pytest.fixture(scope="module", params=[_flavour_param(f) for f in BUILD_FLAVOURS])
def built(request, tmp_path_factory):
    from edgeseg.export.engine import engine_from_onnx
    from edgeseg.export.onnx_export import onnx_from_torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1)).eval()
    meta = make_meta("seq", ["a", "b", "c"], (32, 48))
    d = tmp_path_factory.mktemp(request.param)
    onnx_path = onnx_from_torch(model, meta, d / "model.onnx")
    return onnx_path, engine_from_onnx(onnx_path, d / "model.engine", flavour=request.param)


def _copy(built, tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(built[1].read_bytes())
    (tmp_path / "model.engine.json").write_text(built[1].with_name("model.engine.json").read_text())
    return engine


@pytest.mark.skipif(GPU, reason="this machine has a GPU: the no-GPU error cannot be seen")
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
    with pytest.raises(ModelFileError, match="malformed"):
        TensorRTBackend(engine)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs an NVIDIA GPU (CUDA device) to run a TensorRT engine")
def test_engine_matches_onnxruntime_and_outputs_are_owned(built):
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((1, 3, 32, 48)).astype(np.float32) for _ in range(2))
    try:
        trt_backend = TensorRTBackend(built[1])
    except BackendUnavailableError as exc:  # e.g. TensorRT-RTX on a GPU it does not support: said clearly
        pytest.skip(f"this GPU cannot run the engine: {exc}")
    with OnnxRuntimeBackend(built[0]) as ort_backend, trt_backend:
        want = ort_backend.infer(x)
        got = trt_backend.infer(x)
        other = trt_backend.infer(y)  # buffers reused, but `got` is the caller's
        assert trt_backend.meta == ort_backend.meta and not trt_backend.output_reused
        want_other = ort_backend.infer(y)
    np.testing.assert_allclose(got, want, atol=1e-2)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(other, want_other, atol=1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs an NVIDIA GPU (CUDA device) to run a TensorRT engine")
def test_rtx_runtime_cache_makes_the_second_start_faster(built, tmp_path):
    engine = _copy(built, tmp_path)
    side = json.loads((tmp_path / "model.engine.json").read_text())
    if side["flavour"] != "tensorrt_rtx" or not side.get("runtime_cache"):
        pytest.skip("only TensorRT-RTX engines have a runtime cache")
    x = np.zeros((1, 3, 32, 48), np.float32)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        try:
            with TensorRTBackend(engine) as backend:
                backend.infer(x)
                loaded = backend.runtime_cache.loaded
        except EdgeSegError as exc:
            pytest.skip(f"this GPU cannot run the engine: {exc}")
        seconds.append(time.perf_counter() - start)
    assert (tmp_path / side["runtime_cache"]).is_file() and loaded
    print(f"first start + inference {seconds[0]:.3f} s, second {seconds[1]:.3f} s")
