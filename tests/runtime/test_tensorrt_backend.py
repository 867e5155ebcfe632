"""TensorRTBackend with real TensorRT flavours: file checks and the no-GPU errors (on a fake CUDA with no device)
run everywhere an engine can be built (TensorRT-RTX builds without a GPU); running engines needs an NVIDIA GPU the
flavour supports, decided up front (tests/runtime/trt_support.py). Parametrised over every importable flavour that
builds engines (`tensorrt`, `tensorrt_rtx`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.errors import BackendUnavailableError, ModelFileError
from edgeseg.runtime.gpu import CudaPythonApi, gpu_available
from edgeseg.runtime.trt_flavours import BUILD_FLAVOURS, RTX_COMPUTE_CAPABILITIES, available_flavours

from .gpu_fakes import FakeCudart, _Err
from .trt_support import engine_skip_reason, rtx_supported_capabilities

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
    return onnx_path, engine_from_onnx(onnx_path, d / "model.engine", flavour=request.param), request.param


def _needs_a_gpu_that_runs(flavour: str) -> None:
    """Skip, saying why, when this machine cannot run `flavour`'s engines (decided before trying one)."""
    reason = engine_skip_reason(flavour)
    if reason:
        pytest.skip(reason)


def _copy(built, tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(built[1].read_bytes())
    (tmp_path / "model.engine.json").write_text(built[1].with_name("model.engine.json").read_text())
    return engine


@pytest.mark.parametrize("cudart", [FakeCudart(devices=()),
                                    FakeCudart(fail={"cudaGetDeviceCount": _Err.cudaErrorInsufficientDriver})],
                         ids=["no-device", "no-driver"])
def test_no_gpu_gives_clear_error(built, cudart):
    """A machine without a usable GPU, posed by a fake CUDA runtime, so it is checked on every machine."""
    with pytest.raises(BackendUnavailableError, match="needs an NVIDIA GPU and TensorRT; use the .onnx"):
        open_backend(built[1], cuda_api=CudaPythonApi(cudart))


@pytest.mark.skipif("tensorrt_rtx" not in available_flavours(), reason="tensorrt_rtx is not importable")
def test_rtx_support_list_is_tensorrt_rtx_own():
    """The placement check refuses RTX engines outside RTX_COMPUTE_CAPABILITIES: that list must be TensorRT-RTX's."""
    import tensorrt_rtx

    assert list(RTX_COMPUTE_CAPABILITIES) == rtx_supported_capabilities(tensorrt_rtx)


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

    _needs_a_gpu_that_runs(built[2])
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((1, 3, 32, 48)).astype(np.float32) for _ in range(2))
    with OnnxRuntimeBackend(built[0]) as ort_backend, TensorRTBackend(built[1]) as trt_backend:
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
def test_rtx_runtime_cache_is_written_by_the_first_start_and_loaded_by_the_second(built, tmp_path):
    """TensorRT-RTX compiles kernels at the first start and keeps them in the file the sidecar names; the second
    start must load that file (so it skips the compiling). A TensorRT engine has no such cache and leaves no file.
    How much time the cache saves is measured by benchmarks, not here."""
    _needs_a_gpu_that_runs(built[2])
    engine = _copy(built, tmp_path)
    side = json.loads((tmp_path / "model.engine.json").read_text())
    x = np.zeros((1, 3, 32, 48), np.float32)
    if built[2] != "tensorrt_rtx":
        with TensorRTBackend(engine) as backend:
            backend.infer(x)
            assert backend.runtime_cache is None
        assert not side.get("runtime_cache") and sorted(p.name for p in tmp_path.iterdir()) == [
            "model.engine", "model.engine.json"]
        return
    cache = tmp_path / side["runtime_cache"]
    with TensorRTBackend(engine) as backend:
        assert not backend.runtime_cache.loaded and not cache.exists()  # nothing to load at the first start
        backend.infer(x)
        assert cache.is_file() and cache.stat().st_size > 0  # saved right after the first inference
    with TensorRTBackend(engine) as backend:
        assert backend.runtime_cache.loaded  # TensorRT-RTX accepted the kernels compiled by the first start
        backend.infer(x)
