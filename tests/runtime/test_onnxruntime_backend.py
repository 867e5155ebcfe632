"""ONNX Runtime backend: execution-provider selection (TensorRT EP > CUDA EP > CPU), no silent CPU fallback, and the
backend name reporting the provider really used. The provider lists are faked; the sessions are real ONNX Runtime."""

import logging

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

from edgeseg.cli import build_parser  # noqa: E402
from edgeseg.errors import BackendUnavailableError, ConfigError  # noqa: E402
from edgeseg.runtime.backends import BACKENDS, open_backend  # noqa: E402
from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend, select_providers  # noqa: E402
from edgeseg.runtime.segmenter import Segmenter  # noqa: E402
from tests.runtime.onnx_graphs import CLASSES, random_scene, reference_logits, write_pixel_classifier  # noqa: E402

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
AZURE = "AzureExecutionProvider"  # listed by ORT's CPU wheel; never an inference choice for EdgeSeg
REAL = ort.get_available_providers()


@pytest.fixture
def model(tmp_path):
    return write_pixel_classifier(tmp_path / "m.onnx")


@pytest.fixture
def fake_available(monkeypatch, tmp_path):
    """Pose as an onnxruntime-gpu build by faking get_available_providers; the real session still runs."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the TensorRT EP cache dir goes here

    def install(providers):
        monkeypatch.setattr(ort, "get_available_providers", lambda: list(providers))

    return install


@pytest.fixture
def session_spy(monkeypatch):
    """Records the providers each InferenceSession is created with (and optionally what it claims to run on)."""
    real = ort.InferenceSession
    calls = []
    claim = {}

    def spy(path, options=None, providers=None, **kw):
        calls.append([p if isinstance(p, str) else p[0] for p in providers])
        session = real(path, options, providers=[CPU])  # this machine has only the CPU EP
        if "providers" in claim:
            session.get_providers = lambda: list(claim["providers"])
        return session

    monkeypatch.setattr(ort, "InferenceSession", spy)
    return calls, claim


# ----- selection order, against the order spelled out ---------------------------------------------------------------
@pytest.mark.parametrize(
    "requested, available, expected",
    [
        ("auto", [TRT, CUDA, CPU], [TRT, CUDA, CPU]),
        ("auto", [CUDA, TRT, AZURE, CPU], [TRT, CUDA, CPU]),  # ORT's listing order does not matter
        ("auto", [CUDA, CPU], [CUDA, CPU]),
        ("auto", [TRT, CPU], [TRT, CPU]),
        ("auto", [AZURE, CPU], [CPU]),
        ("auto", [], [CPU]),
        ("tensorrt", [TRT, CUDA, CPU], [TRT, CUDA, CPU]),
        ("cuda", [TRT, CUDA, CPU], [CUDA, CPU]),
        ("cpu", [TRT, CUDA, CPU], [CPU]),
        ("cpu", [AZURE, CPU], [CPU]),
    ],
)
def test_provider_selection_order(requested, available, expected):
    assert select_providers(requested, available) == expected


@pytest.mark.parametrize("requested, missing", [("cuda", CUDA), ("tensorrt", TRT)])
def test_explicit_gpu_provider_missing_from_the_build_is_an_error(requested, missing):
    with pytest.raises(BackendUnavailableError, match=rf"{missing}.*pip install 'edgeseg\[onnxruntime-gpu\]'"):
        select_providers(requested, [AZURE, CPU])


# ----- this machine's real onnxruntime ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend, provider", [("onnxruntime-cuda", CUDA), ("onnxruntime-trt", TRT)])
def test_gpu_backend_on_the_cpu_build_says_what_to_install(model, fake_available, backend, provider):
    fake_available([AZURE, CPU])  # what the CPU wheel lists, whatever build this machine has
    with pytest.raises(BackendUnavailableError, match=rf"{backend} needs ONNX Runtime's {provider}.*onnxruntime-gpu"):
        open_backend(model, backend)


def test_auto_runs_on_the_best_real_provider_and_says_so(model, caplog):
    # The order spelled out: TensorRT EP, then CUDA EP, then the CPU.
    expected = next(ep for ep in (TRT, CUDA, CPU) if ep in REAL or ep == CPU)
    frame = random_scene(np.random.default_rng(1), 24, 32)
    with caplog.at_level(logging.INFO, logger="edgeseg.runtime.backends.onnxruntime"):
        with Segmenter(model) as seg:  # backend='auto'
            got = seg.backend.infer(seg.preprocess([frame]))[0]
            info = seg.backend.describe()
            assert seg.backend.provider == expected == seg.backend.session_providers[0]
    assert any(expected in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    assert info["provider"] == expected
    if expected == CPU:
        assert info["backend"] == "onnxruntime"
    np.testing.assert_allclose(got, reference_logits(frame, (24, 32)), atol=1e-4)  # independent float64 reference
    assert len(got) == len(CLASSES)


def test_plain_onnxruntime_is_the_cpu_provider(model):
    with open_backend(model, "onnxruntime") as backend:
        assert backend.name == "onnxruntime"
        assert backend.session_providers == [CPU]


# ----- ORT's silent fallback, caught --------------------------------------------------------------------------------
def test_explicit_cuda_that_falls_back_to_cpu_raises(model, fake_available, session_spy):
    # The build claims a CUDA EP, but the session only gets the CPU: what ORT does when CUDA libraries are missing.
    fake_available([CUDA, CPU])
    calls, _ = session_spy
    with pytest.raises(BackendUnavailableError, match=r"could not start CUDAExecutionProvider.*fell back to "
                                                      r"CPUExecutionProvider"):
        open_backend(model, "onnxruntime-cuda")
    assert calls == [[CUDA, CPU]]


def test_auto_fallback_warns_and_reports_the_cpu(model, fake_available, session_spy, caplog):
    fake_available([TRT, CUDA, CPU])
    calls, _ = session_spy
    with caplog.at_level(logging.WARNING, logger="edgeseg.runtime.backends.onnxruntime"):
        with open_backend(model, "auto") as backend:
            assert backend.name == "onnxruntime" and backend.provider == CPU
    assert calls == [[TRT, CUDA, CPU]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not start TensorrtExecutionProvider" in w and "running on CPUExecutionProvider" in w
               for w in warnings)


@pytest.mark.parametrize(
    "available, session_runs, name, provider",
    [
        ([TRT, CUDA, CPU], [TRT, CUDA, CPU], "onnxruntime-trt", TRT),
        ([TRT, CUDA, CPU], [CUDA, CPU], "onnxruntime-cuda", CUDA),  # TensorRT EP failed, CUDA EP worked
        ([CUDA, CPU], [CUDA, CPU], "onnxruntime-cuda", CUDA),
    ],
)
def test_name_and_describe_report_the_provider_used(model, fake_available, session_spy, available, session_runs,
                                                    name, provider):
    fake_available(available)
    _, claim = session_spy
    claim["providers"] = session_runs
    with open_backend(model, "auto") as backend:
        assert backend.name == name
        assert backend.describe()["backend"] == name
        assert backend.describe()["provider"] == provider
        assert backend.describe()["session_providers"] == session_runs


def test_explicit_trt_that_got_only_cuda_raises(model, fake_available, session_spy):
    fake_available([TRT, CUDA, CPU])
    _, claim = session_spy
    claim["providers"] = [CUDA, CPU]
    with pytest.raises(BackendUnavailableError, match="could not start TensorrtExecutionProvider"):
        open_backend(model, "onnxruntime-trt")


# ----- bad requests -------------------------------------------------------------------------------------------------
def test_bad_backend_requests_are_config_errors(model, tmp_path):
    with pytest.raises(ConfigError, match="unknown backend 'onnxruntime-gpu'.*onnxruntime-cuda"):
        open_backend(model, "onnxruntime-gpu")
    with pytest.raises(ConfigError, match="provider must be 'auto' or one of"):
        OnnxRuntimeBackend(model, provider="gpu")
    with pytest.raises(ConfigError, match="runs .onnx files; m.engine is a TensorRT engine"):
        open_backend(tmp_path / "m.engine", "onnxruntime-cuda")
    with pytest.raises(ConfigError, match="--backend onnxruntime-trt"):
        open_backend(model, "tensorrt")


def test_run_command_offers_exactly_the_backends(capsys):
    parser = build_parser()
    args = parser.parse_args(["run", "m.onnx", "--source", "synthetic:1", "--out", "o.mp4",
                              "--backend", "onnxruntime-trt"])
    assert args.backend == "onnxruntime-trt"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "m.onnx", "--source", "x", "--out", "o.mp4", "--backend", "cuda"])
    assert "invalid choice: 'cuda'" in capsys.readouterr().err
    assert set(BACKENDS) == {"auto", "onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt", "triton"}


# ----- a real GPU -----------------------------------------------------------------------------------------------------
def _cuda_device() -> bool:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False
    err, count = cudart.cudaGetDeviceCount()
    return err == cudart.cudaError_t.cudaSuccess and count > 0


@pytest.mark.gpu
@pytest.mark.skipif(CUDA not in REAL, reason="needs onnxruntime-gpu (CUDAExecutionProvider); this build is CPU-only")
@pytest.mark.skipif(not _cuda_device(), reason="needs an NVIDIA GPU (cudaGetDeviceCount found none)")
def test_cuda_provider_matches_cpu_on_a_gpu(model):
    x = np.random.default_rng(0).standard_normal((2, 3, 24, 32)).astype(np.float32)
    with open_backend(model, "onnxruntime") as cpu, open_backend(model, "onnxruntime-cuda") as gpu:
        assert gpu.name == "onnxruntime-cuda" and gpu.session_providers[0] == CUDA
        np.testing.assert_allclose(gpu.infer(x), cpu.infer(x), atol=1e-4)
