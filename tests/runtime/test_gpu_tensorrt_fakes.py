"""TensorRTBackend end to end on a CPU: recorded fakes of TensorRT, cuda-python's runtime and the CUDA kernels
(tests/runtime/gpu_fakes.py) on host memory. What is checked is the runner's own behaviour: who owns what `infer`
returns, which thread sets the device, how often buffers are allocated, which engines are refused and how, which
TensorRT flavour runs an engine, the TensorRT-RTX runtime cache, and predict_frames (with and without CUDA graphs)
against the CPU executor of the same plan and against ONNX Runtime."""

from __future__ import annotations

import gc
import sys
import threading

import numpy as np
import pytest

from edgeseg.errors import BackendUnavailableError, ConfigError, CudaError, EdgeSegError, ModelFileError
from edgeseg.runtime.backends.tensorrt import TensorRTBackend
from edgeseg.runtime.gpu import CudaPythonApi
from edgeseg.runtime.segmenter import Segmenter

from .gpu_fakes import (EngineSpec, FakeCudart, FakeTrt, HostKernels, _Diagnostics, _Validity, fake_pycuda_modules,
                        write_fake_engine)
from .onnx_graphs import random_scene

FLAVOUR_MODULES = ("tensorrt", "tensorrt_rtx", "tensorrt_dispatch", "tensorrt_lean")
RTX_4090 = ("NVIDIA GeForce RTX 4090", 8, 9)
H100 = ("NVIDIA H100 80GB HBM3", 9, 0)


@pytest.fixture
def rig(monkeypatch, tmp_path):
    """make(spec, flavour=..., version=..., modules={flavour: version}, devices=..., **sidecar fields) -> options
    for TensorRTBackend(path, **options); only the fake flavours given are importable."""
    state = {}

    def make(spec=None, *, flavour="tensorrt", version="10.3.0", modules=None, devices=(RTX_4090,), validity=None,
             engine_bytes=b"fake-engine", **fields):
        spec = spec or EngineSpec()
        rt = FakeCudart(devices=devices)
        for name in FLAVOUR_MODULES:
            monkeypatch.setitem(sys.modules, name, None)  # nothing real: only the fakes below are importable
        fakes = {}
        for name, ver in (modules or {flavour: version}).items():
            fakes[name] = FakeTrt(name, ver, rt, spec, validity=validity)
            monkeypatch.setitem(sys.modules, name, fakes[name])
        engine = write_fake_engine(tmp_path / "model.engine", spec, flavour=flavour, version=version,
                                   engine_bytes=engine_bytes, **fields)
        state.update(rt=rt, fakes=fakes, engine=engine, spec=spec)
        return dict(cuda_api=CudaPythonApi(rt), kernels=HostKernels(rt))

    state["make"] = make
    return state


def _frames(n, seed=0, size=(30, 40)):
    rng = np.random.default_rng(seed)
    return [random_scene(rng, *size) for _ in range(n)]


# ----- ownership (issue: masks alias a reused buffer / use-after-free) -------------------------------------------


def test_infer_returns_arrays_the_caller_owns(rig):
    options = rig["make"]()
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((2, 3, 24, 32)).astype(np.float32) for _ in range(2))
    with TensorRTBackend(rig["engine"], **options) as backend:
        assert backend.output_reused is False
        first = backend.infer(x1)
        kept = first.copy()
        second = backend.infer(x2)
        np.testing.assert_array_equal(first, kept)  # not overwritten by the next call
        np.testing.assert_allclose(second, rig["spec"].compute(x2), rtol=1e-6)
    np.testing.assert_array_equal(first, kept)  # nor freed by close()


def test_zero_copy_views_stay_readable_after_shape_changes_and_close(rig):
    options = rig["make"]()
    rt = rig["rt"]
    x = np.ones((1, 3, 24, 32), np.float32)
    backend = TensorRTBackend(rig["engine"], zero_copy=True, max_buffers=2, **options)
    assert backend.output_reused is True
    view = backend.infer(x)
    ptr = view.ctypes.data
    backend.infer(np.ones((3, 3, 24, 32), np.float32))  # other shapes: with max_buffers=2 the first are evicted
    backend.close()
    assert ptr in rt.pinned and ptr not in rt.freed  # the caller's view still owns the memory
    np.testing.assert_allclose(view, rig["spec"].compute(x), rtol=1e-6)
    del view
    gc.collect()
    assert ptr in rt.freed


def test_segmenter_masks_survive_the_next_predict_when_the_backend_reuses_its_output(rig):
    options = rig["make"]()
    frames_a, frames_b = _frames(2, seed=1), _frames(2, seed=2)
    with Segmenter(rig["engine"], zero_copy=True, device_frames=False, **options) as seg:
        assert seg.backend.output_reused
        first = seg.predict(frames_a)
        kept = [m.copy() for m in first]
        second = seg.predict(frames_b)
    assert any((a != b).any() for a, b in zip(kept, second))  # the frames really differ
    for mask, copy in zip(first, kept):
        np.testing.assert_array_equal(mask, copy)


# ----- buffers, device and stream ---------------------------------------------------------------------------------


def test_alternating_batch_sizes_do_not_reallocate(rig):
    options = rig["make"]()
    rt = rig["rt"]
    with TensorRTBackend(rig["engine"], **options) as backend:
        for n in (2, 1) * 2:
            backend.infer(np.zeros((n, 3, 24, 32), np.float32))
        allocations = (rt.names().count("cudaMalloc"), rt.names().count("cudaMallocHost"))
        for n in (2, 1) * 20:
            backend.infer(np.zeros((n, 3, 24, 32), np.float32))
        assert (rt.names().count("cudaMalloc"), rt.names().count("cudaMallocHost")) == allocations == (4, 4)
        assert "cudaFree" not in rt.names() and backend._buffers.allocations == 4


def test_every_thread_that_runs_the_engine_sets_the_device(rig):
    options = rig["make"](devices=(RTX_4090, RTX_4090))
    rt = rig["rt"]
    frames = _frames(1)
    with TensorRTBackend(rig["engine"], device=1, **options) as backend:
        errors = []

        def work():
            try:
                backend.infer(np.zeros((1, 3, 24, 32), np.float32))
                backend.predict_frames(frames)
            except Exception as exc:  # re-raised below, on the test's thread
                errors.append(exc)

        worker = threading.Thread(target=work, name="inference")
        worker.start()
        worker.join()
        assert errors == []
        assert rt.current_device == {"MainThread": 1, "inference": 1}
        infer_calls = [c for c in rt.calls if c[2] == "inference"]
        assert infer_calls[0][:2] == ("cudaSetDevice", (1,))  # before any other CUDA call on that thread
        stream_flags = [args for name, args, _ in rt.calls if name == "cudaStreamCreateWithFlags"]
        assert stream_flags == [(rt.cudaStreamNonBlocking,)] and "cudaStreamCreate" not in rt.names()


def test_cuda_and_tensorrt_failures_are_edgeseg_errors(rig):
    options = rig["make"]()
    with TensorRTBackend(rig["engine"], **options) as backend:
        backend._context.fail_execute = True
        with pytest.raises(CudaError, match="TensorRT execution of model.engine failed"):
            backend.infer(np.zeros((1, 3, 24, 32), np.float32))
        with pytest.raises(ConfigError, match="outside the engine's optimisation profile"):
            backend.infer(np.zeros((5, 3, 24, 32), np.float32))
    assert issubclass(CudaError, EdgeSegError)


# ----- engines that refuse the wrong place ------------------------------------------------------------------------


def test_a_tensorrt_rtx_engine_is_refused_on_an_h100(rig):
    options = rig["make"](flavour="tensorrt_rtx", version="1.7.1.116", devices=(H100,),
                          compute_capabilities=("8.0", "8.6", "8.9", "12.0"))
    with pytest.raises(BackendUnavailableError) as info:
        TensorRTBackend(rig["engine"], **options)
    message = str(info.value)
    assert "built for tensorrt_rtx 1.7.1.116 for compute capabilities 8.0, 8.6, 8.9, 12.0" in message
    assert "this is tensorrt_rtx 1.7.1.116 on NVIDIA H100 80GB HBM3 (compute capability 9.0)" in message
    assert "does not run on compute capability 9.0" in message and "--flavour tensorrt" in message
    assert rig["fakes"]["tensorrt_rtx"].events == []  # refused before deserialising


def test_an_rtx_engine_outside_its_aot_list_is_refused(rig):
    options = rig["make"](flavour="tensorrt_rtx", version="1.7.1.116", devices=(("RTX A6000", 8, 6),),
                          compute_capabilities=("8.9", "12.0"))
    with pytest.raises(BackendUnavailableError, match="8.6 is not among the ones it was compiled for.*edgeseg "
                                                      "export CKPT --out DIR --engine"):
        TensorRTBackend(rig["engine"], **options)


@pytest.mark.parametrize("built, here, fields, error, match", [
    ("10.3.0", "10.4.0", {}, ModelFileError, "built for tensorrt 10.3.0; this is tensorrt 10.4.0"),
    ("10.3.0", "10.3.0", {"compute_capability": "8.7", "gpu_name": "Orin"}, BackendUnavailableError,
     r"on Orin \(compute capability 8.7\).*compute capability they were built on"),
    ("10.3.0", "10.3.0", {"hardware_compatibility": "ampere_plus"}, BackendUnavailableError,
     "need compute capability 8.0 or later"),
], ids=["version", "compute-capability", "ampere-plus"])
def test_tensorrt_engines_refuse_another_version_or_gpu(rig, built, here, fields, error, match):
    options = rig["make"](version=built, modules={"tensorrt": here}, devices=(("Tesla T4", 7, 5),), **fields)
    with pytest.raises(error, match=match) as info:
        TensorRTBackend(rig["engine"], **options)
    assert "`edgeseg export CKPT --out DIR --engine` on this machine" in str(info.value)
    assert rig["fakes"]["tensorrt"].events == []


def test_same_compute_capability_other_gpu_runs_with_a_warning(rig, caplog):
    options = rig["make"](compute_capability="8.9", gpu_name="NVIDIA RTX 4000 Ada")
    with TensorRTBackend(rig["engine"], **options):
        pass
    assert "TensorRT tuned it for the other GPU" in caplog.text


def test_the_runtime_validity_check_decides_last(rig):
    invalid = (_Validity.INVALID, int(_Diagnostics.UNSUPPORTED_CC | _Diagnostics.OLD_CUDA_DRIVER))
    options = rig["make"](validity=invalid)
    with pytest.raises(BackendUnavailableError, match="cannot run here .*OLD_CUDA_DRIVER, UNSUPPORTED_CC.*this is "
                                                      "tensorrt 10.3.0 on NVIDIA GeForce RTX 4090"):
        TensorRTBackend(rig["engine"], **options)
    assert rig["fakes"]["tensorrt"].events == [("get_engine_validity",)]  # never deserialised
    options = rig["make"](validity=(_Validity.VALID, 0))
    with TensorRTBackend(rig["engine"], **options):
        assert [e[0] for e in rig["fakes"]["tensorrt"].events] == ["get_engine_validity", "deserialize"]


def test_a_corrupt_engine_is_a_model_file_error(rig):
    options = rig["make"](engine_bytes=b"not an engine")
    with pytest.raises(ModelFileError, match="could not deserialize .*rebuild it"):
        TensorRTBackend(rig["engine"], **options)


# ----- flavours ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modules, expected", [
    ({"tensorrt": "10.3.0", "tensorrt_lean": "10.3.0"}, "tensorrt"),
    ({"tensorrt_dispatch": "10.8.0"}, "tensorrt_dispatch"),  # a later dispatch runtime runs it
    ({"tensorrt_lean": "10.3.0"}, "tensorrt_lean"),
])
def test_version_compatible_engines_run_on_lean_and_dispatch_runtimes(rig, modules, expected):
    options = rig["make"](modules=modules, version_compatible=True)
    with TensorRTBackend(rig["engine"], **options) as backend:
        assert backend.flavour == expected
        host_code = rig["fakes"][expected].events[-1]
        assert host_code == ("deserialize", expected != "tensorrt_lean")  # the embedded lean runtime is trusted
        backend.infer(np.zeros((1, 3, 24, 32), np.float32))


def test_flavour_choice_is_overridable_and_checked(rig):
    options = rig["make"](modules={"tensorrt": "10.3.0", "tensorrt_lean": "10.3.0"}, version_compatible=True)
    with TensorRTBackend(rig["engine"], flavour="tensorrt_lean", **options) as backend:
        assert backend.flavour == "tensorrt_lean"
    options = rig["make"](modules={"tensorrt": "10.3.0", "tensorrt_lean": "10.3.0"})
    with pytest.raises(ConfigError, match="'tensorrt_lean' cannot run an engine built by tensorrt .it is not version-"):
        TensorRTBackend(rig["engine"], flavour="tensorrt_lean", **options)
    options = rig["make"](modules={"tensorrt_lean": "10.3.0"})
    with pytest.raises(BackendUnavailableError, match="runs on tensorrt, none of which is importable.*tensorrt_lean"):
        TensorRTBackend(rig["engine"], **options)
    options = rig["make"](modules={"tensorrt_lean": "10.4.0"}, version_compatible=True)
    with pytest.raises(ModelFileError, match="this is tensorrt_lean 10.4.0"):  # lean runs its own version only
        TensorRTBackend(rig["engine"], **options)


# ----- TensorRT-RTX runtime cache and CUDA graphs -------------------------------------------------------------------


def test_rtx_runtime_cache_is_saved_after_the_first_inference_and_loaded_next_start(rig):
    options = rig["make"](flavour="tensorrt_rtx", version="1.7.1.116", runtime_cache="model.engine.rtxcache")
    cache_file = rig["engine"].with_name("model.engine.rtxcache")
    x = np.zeros((1, 3, 24, 32), np.float32)
    with TensorRTBackend(rig["engine"], **options) as backend:
        assert not backend.runtime_cache.loaded and not cache_file.exists()
        backend.infer(x)
        assert cache_file.read_bytes() == b"rtx-cache:kkk"  # saved right after the first inference
    rtx = rig["fakes"]["tensorrt_rtx"]
    rtx.compiled = 0  # a new process: nothing compiled yet
    with TensorRTBackend(rig["engine"], **options) as backend:
        assert backend.runtime_cache.loaded
        backend.infer(x)
        assert rtx.compiled == 0  # the kernels came from the cache: nothing compiled at the first inference
    cache_file.write_bytes(b"from another GPU")
    with TensorRTBackend(rig["engine"], **options) as backend:
        assert not backend.runtime_cache.loaded
        backend.infer(x)
    assert cache_file.read_bytes() == b"rtx-cache:kkk"  # replaced


def test_cuda_graph_requests_that_cannot_be_met_are_errors(rig, monkeypatch):
    options = rig["make"](flavour="tensorrt_rtx", version="1.7.1.116", cuda_graph_ready=False)
    with pytest.raises(ConfigError, match="without REQUIRE_USER_ALLOCATION"):
        TensorRTBackend(rig["engine"], cuda_graph=True, **options)
    options = rig["make"]()
    for name, module in fake_pycuda_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    options["cuda_api"] = "pycuda"
    with pytest.raises(ConfigError, match="the pycuda binding lacks"):
        TensorRTBackend(rig["engine"], cuda_graph=True, **options)


# ----- predict_frames on the host-memory stand-in ---------------------------------------------------------------

VARIANTS = {
    "logits": EngineSpec(),
    "fp16": EngineSpec(dtype=np.float16),
    "stride8": EngineSpec(input_size=(32, 48), stride=8),
    "classmap": EngineSpec(argmax=True),
    "uint8_input": EngineSpec(uint8_input=True, input_name="frame"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["stream", "graph"])
def test_predict_frames_matches_the_cpu_executor(rig, variant, cuda_graph):
    spec = VARIANTS[variant]
    options = rig["make"](spec)
    rt = rig["rt"]
    frames = _frames(3, seed=3) + [random_scene(np.random.default_rng(4), 61, 47)]
    with Segmenter(rig["engine"], device_frames=False, **options) as cpu:
        assert not cpu.backend.frames_on_device
        want = cpu.predict(frames)
    with Segmenter(rig["engine"], cuda_graph=cuda_graph, **options) as seg:
        assert seg.backend.frames_on_device
        got = seg.predict(frames)
        allocations = seg.backend._buffers.allocations
        again = [seg.predict(frames) for _ in range(3)]  # with a graph: capture after the first, then replays
        assert seg.backend._buffers.allocations == allocations
        graphs = seg.backend.graphs
        if cuda_graph:
            assert graphs.failure is None and graphs.captures == 1 and graphs.launches == 3
            assert rt.launches == 3
        else:
            assert graphs is None and rt.launches == 0
    for g, w in zip(got, want):
        assert g.shape == w.shape == spec.input_size and g.dtype == np.uint8
        np.testing.assert_array_equal(g, w)
    for masks in again:
        for g, w in zip(masks, want):
            np.testing.assert_array_equal(g, w)


def test_predict_frames_agrees_with_onnxruntime(rig, tmp_path):
    pytest.importorskip("onnxruntime")
    from .onnx_graphs import write_pixel_classifier

    options = rig["make"](EngineSpec(input_size=(24, 32)))
    onnx_path = write_pixel_classifier(tmp_path / "pixel.onnx", (24, 32))
    frames = _frames(5, seed=7, size=(48, 64))  # 5 frames, max batch 4: two batches
    with Segmenter(onnx_path) as reference, Segmenter(rig["engine"], **options) as seg:
        want, got = reference.predict(frames), seg.predict(frames)
    for g, w in zip(got, want):
        assert np.mean(g == w) >= 0.999


def test_a_failed_capture_is_recorded_and_the_results_stay_right(rig, caplog):
    options = rig["make"]()
    frames = _frames(2, seed=5)
    with Segmenter(rig["engine"], cuda_graph=True, **options) as seg:
        for context in rig["fakes"]["tensorrt"].engines[0].contexts:
            context.capturable = False
        first = seg.predict(frames)
        second = seg.predict(frames)
        graphs = seg.backend.graphs
        assert not graphs.enabled and graphs.captures == 0 and graphs.launches == 0
        assert "not capturable" in graphs.failure and "CUDA graph capture of model.engine failed" in caplog.text
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
