"""The GPU side with everything real but TensorRT: the CUDA buffer layer and the TensorRT device path on a real GPU.

* Device path (`predict_frames`): the runner, its CUDA API, buffers, streams, events, CUDA graphs and edgeseg._C's
  CUDA kernels are real; only the engine is the stand-in of standin_engine.py (a CuPy kernel reading and writing the
  device pointers the path binds, on the path's stream). Every test here also runs on the CPU fakes of gpu_fakes.py
  (`where="fakes"`), so CI keeps covering the orchestration; `where="gpu"` skips without an NVIDIA GPU and runs in
  benchmarks/gpu_check.sh, where a skip is a failure.
* Buffer layer (`CudaPythonApi`, `PycudaApi`): pinned buffers, async copies on a non-blocking stream, events, and a CUDA
  graph of edgeseg._C kernels replayed on new input, bit for bit against the CPU kernels.

The reference for masks is the CPU path of the same engine (`device_frames=False`: the plan's CPU pre-processing,
the engine, the plan's CPU argmax), whose kernels tests/runtime/test_ops.py checks against numpy float64.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from edgeseg.runtime import ops
from edgeseg.runtime.gpu import CudaPythonApi, gpu_available
from edgeseg.runtime.segmenter import Segmenter

from .gpu_fakes import EngineSpec, FakeCudart, FakeTrt, HostKernels, write_fake_engine
from .onnx_graphs import random_scene

FLAVOUR_MODULES = ("tensorrt", "tensorrt_rtx", "tensorrt_dispatch", "tensorrt_lean")
NO_GPU = "needs an NVIDIA GPU (cuda-python sees no CUDA device)"


def _gpu_reason() -> str | None:
    if not gpu_available():
        return NO_GPU
    if not ops.cuda_available():
        return "needs edgeseg._C built with its CUDA kernels (nvcc on PATH at build time)"
    from .standin_engine import cupy_reason

    return cupy_reason()


GPU_REASON = _gpu_reason()

VARIANTS = {
    "logits": EngineSpec(input_size=(48, 64)),
    "fp16": EngineSpec(input_size=(48, 64), dtype=np.float16),
    "stride8": EngineSpec(input_size=(64, 96), stride=8),
    "classmap": EngineSpec(input_size=(48, 64), argmax=True),
    "uint8_input": EngineSpec(input_size=(48, 64), uint8_input=True, input_name="frame"),
}


class Rig:
    """Makes an engine file for an EngineSpec and the TensorRTBackend options that run it here."""

    def __init__(self, where: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
        self.where, self._monkeypatch, self._tmp = where, monkeypatch, tmp_path
        self.rt = FakeCudart() if where == "fakes" else None

    def make(self, spec: EngineSpec) -> tuple:
        compute = None
        if self.where == "gpu":
            from .standin_engine import CupyCompute

            compute = CupyCompute(spec)
        for name in FLAVOUR_MODULES:
            self._monkeypatch.setitem(sys.modules, name, None)
        self._monkeypatch.setitem(sys.modules, "tensorrt", FakeTrt("tensorrt", "10.3.0", self.rt, spec,
                                                                   compute=compute))
        engine = write_fake_engine(self._tmp / "model.engine", spec)
        if self.where == "fakes":
            return engine, dict(cuda_api=CudaPythonApi(self.rt), kernels=HostKernels(self.rt))
        return engine, dict(cuda_api=CudaPythonApi())  # edgeseg._C's CUDA kernels


@pytest.fixture(params=["fakes", "gpu"])
def rig(request, monkeypatch, tmp_path) -> Rig:
    if request.param == "gpu" and GPU_REASON:
        pytest.skip(GPU_REASON)
    return Rig(request.param, monkeypatch, tmp_path)


def _frames(n: int, seed: int, size=(90, 120)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = [random_scene(rng, *size) for _ in range(n)]
    big = random_scene(rng, 240, 320)
    return frames[:-1] + [big[17 : 17 + size[0], 29 : 29 + size[1]]] if n > 1 else frames


def _cpu_path(engine, options, frames) -> list[np.ndarray]:
    with Segmenter(engine, device_frames=False, **options) as cpu:
        assert not cpu.backend.frames_on_device
        return cpu.predict(frames)


# ----- the device path ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["stream", "graph"])
def test_predict_frames_equals_the_cpu_path(rig, variant, cuda_graph):
    spec = VARIANTS[variant]
    engine, options = rig.make(spec)
    frames = _frames(3, seed=1)
    want = _cpu_path(engine, options, frames)
    with Segmenter(engine, cuda_graph=cuda_graph, **options) as seg:
        assert seg.backend.frames_on_device
        got = seg.predict(frames)
        allocations = seg.backend._buffers.allocations
        again = [seg.predict(frames) for _ in range(3)]  # with a graph: captured after the first, then replayed
        assert seg.backend._buffers.allocations == allocations, "the same shapes must reuse every buffer"
        assert set(seg.stage_ms) == {"preprocess", "infer", "postprocess"}
        graphs = seg.backend.graphs
        if cuda_graph:
            assert graphs.failure is None, f"CUDA graph capture failed: {graphs.failure}"
            assert graphs.captures == 1 and graphs.launches == 3
        else:
            assert graphs is None
    assert len({m.tobytes() for m in want}) == len(want), "the frames must give different masks"
    for masks in [got, *again]:
        for g, w in zip(masks, want):
            assert g.shape == w.shape == spec.input_size and g.dtype == np.uint8
            np.testing.assert_array_equal(g, w)


def test_a_replayed_graph_reads_each_new_batch(rig):
    spec = VARIANTS["stride8"]
    engine, options = rig.make(spec)
    batches = [_frames(2, seed=s) for s in (10, 11, 12, 13)]  # same shapes: one graph, replayed on new pixels
    want = [_cpu_path(engine, options, frames) for frames in batches]
    with Segmenter(engine, cuda_graph=True, **options) as seg:
        got = [seg.predict(frames) for frames in batches]
        assert seg.backend.graphs.captures == 1 and seg.backend.graphs.launches == 3
    for masks, expected in zip(got, want):
        for g, w in zip(masks, expected):
            np.testing.assert_array_equal(g, w)
    assert not np.array_equal(got[1][0], got[2][0]), "different frames must give different masks"


def test_alternating_batch_sizes_reuse_their_buffers(rig):
    engine, options = rig.make(VARIANTS["logits"])
    two, one = _frames(2, seed=3), _frames(1, seed=4)
    want_two, want_one = _cpu_path(engine, options, two), _cpu_path(engine, options, one)
    with Segmenter(engine, cuda_graph=True, **options) as seg:
        for frames in (two, one):
            seg.predict(frames)
        allocations = seg.backend._buffers.allocations
        for _ in range(4):
            got_two, got_one = seg.predict(two), seg.predict(one)
            for g, w in zip(got_two + got_one, want_two + want_one):
                np.testing.assert_array_equal(g, w)
        assert seg.backend._buffers.allocations == allocations
        assert seg.backend.graphs.captures == 2  # one graph per batch shape, both kept


def test_two_threads_share_one_segmenter(rig):
    engine, options = rig.make(VARIANTS["logits"])
    inputs = {name: _frames(2, seed=seed) for name, seed in (("a", 20), ("b", 21))}
    want = {name: _cpu_path(engine, options, frames) for name, frames in inputs.items()}
    got: dict[str, list] = {}
    devices: dict[str, int] = {}
    errors: list[BaseException] = []
    with Segmenter(engine, **options) as seg:
        def work(name: str) -> None:
            try:
                got[name] = [seg.predict(inputs[name]) for _ in range(5)]
                devices[name] = _current_device(rig)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(name,), name=f"worker-{name}") for name in inputs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    for name, runs in got.items():
        for masks in runs:
            for g, w in zip(masks, want[name]):
                np.testing.assert_array_equal(g, w)
    assert devices == {"a": 0, "b": 0}


def _current_device(rig: Rig) -> int:
    """The calling thread's current CUDA device as CUDA itself reports it (fakes: as the last cudaSetDevice)."""
    if rig.rt is not None:
        return rig.rt.current_device[threading.current_thread().name]
    from cuda.bindings import runtime as cudart

    err, device = cudart.cudaGetDevice()
    assert err == cudart.cudaError_t.cudaSuccess
    return int(device)


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
@pytest.mark.parametrize("variant", ["logits", "fp16", "stride8", "uint8_input"])
def test_the_gpu_standin_computes_the_pixel_classifier(monkeypatch, tmp_path, variant):
    """The stand-in itself, against EngineSpec.compute in numpy (so the masks above come from real logits)."""
    spec = VARIANTS[variant]
    engine, options = Rig("gpu", monkeypatch, tmp_path).make(spec)
    rng = np.random.default_rng(0)
    if spec.uint8_input:
        x = rng.integers(0, 256, spec.input_shape(3), dtype=np.uint8)
    else:
        x = rng.standard_normal(spec.input_shape(3)).astype(spec.dtype)
    from edgeseg.runtime.backends.tensorrt import TensorRTBackend

    with TensorRTBackend(engine, **options) as backend:
        got = backend.infer(x)
    want = spec.compute(x).astype(np.float64)
    tolerance = 2e-2 if spec.dtype == np.float16 else 1e-5
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tolerance, atol=tolerance)


# ----- the buffer layer on a real device ----------------------------------------------------------------------------


def _api(name: str):
    if GPU_REASON == NO_GPU or not gpu_available():
        pytest.skip(NO_GPU)
    if name == "pycuda":
        from edgeseg._optional import is_available

        if not is_available("pycuda"):
            pytest.skip("needs pycuda (opt-in in benchmarks/gpu_check.sh: EDGESEG_PYCUDA=1)")
        from edgeseg.runtime.gpu.pycuda_api import PycudaApi

        return PycudaApi()
    return CudaPythonApi()


@pytest.mark.gpu
@pytest.mark.parametrize("api_name", ["cuda-python", "pycuda"])
def test_pinned_buffers_async_copies_and_events(api_name):
    api = _api(api_name)
    api.set_device(0)
    stream = api.stream_create()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((64, 1024, 1024)).astype(np.float32)  # 256 MiB: the copy takes measurable time
    host_in = api.pinned_empty(data.shape, data.dtype)
    host_out = api.pinned_empty(data.shape, data.dtype)
    host_out[...] = 0
    np.copyto(host_in, data)
    device = api.malloc(data.nbytes)
    start, end = api.event_create(), api.event_create()
    try:
        api.event_record(start, stream)
        api.memcpy_htod_async(device, host_in, stream)
        api.memcpy_dtoh_async(host_out, device, stream)
        api.event_record(end, stream)
        api.stream_synchronize(stream)
        np.testing.assert_array_equal(host_out, data)
        elapsed = api.event_elapsed_ms(start, end)
        # 512 MiB over the bus: more than 0.01 ms at any PCIe/NVLink speed, less than 10 s
        assert 0.01 < elapsed < 10_000, elapsed
    finally:
        api.free(device)
        api.event_destroy(start)
        api.event_destroy(end)
        api.stream_destroy(stream)
        api.release()


@pytest.mark.gpu
def test_a_cuda_graph_of_the_kernels_replays_on_new_input():
    """Upload, preprocess_cuda, upsample_argmax_cuda and download captured once, replayed on new pinned input:
    bit for bit the CPU kernels' results each time."""
    from edgeseg import _C
    from edgeseg.config import IMAGENET_MEAN, IMAGENET_STD

    api = _api("cuda-python")
    if not ops.cuda_available():
        pytest.skip("needs edgeseg._C built with its CUDA kernels")
    api.set_device(0)
    stream = api.stream_create()
    handle = api.stream_handle(stream)
    frame_shape, size, classes, stride = (120, 160, 3), (64, 96), 11, 8
    low = (classes, size[0] // stride, size[1] // stride)
    host_frame = api.pinned_empty(frame_shape, np.uint8)
    host_logits = api.pinned_empty(low, np.float32)
    host_input = api.pinned_empty((1, 3, *size), np.float32)
    host_mask = api.pinned_empty(size, np.uint8)
    buffers = {name: api.malloc(a.nbytes) for name, a in
               (("frame", host_frame), ("logits", host_logits), ("input", host_input), ("mask", host_mask))}

    def enqueue():
        api.memcpy_htod_async(buffers["frame"], host_frame, stream)
        _C.preprocess_cuda(buffers["frame"], frame_shape[0], frame_shape[1], frame_shape[1] * 3, buffers["input"],
                           size[0], size[1], list(IMAGENET_MEAN), list(IMAGENET_STD), False, handle)
        api.memcpy_dtoh_async(host_input, buffers["input"], stream)
        api.memcpy_htod_async(buffers["logits"], host_logits, stream)
        _C.upsample_argmax_cuda(buffers["logits"], False, classes, low[1], low[2], stride, buffers["mask"], size[0],
                                size[1], handle)
        api.memcpy_dtoh_async(host_mask, buffers["mask"], stream)

    rng = np.random.default_rng(7)
    graph = graph_exec = None
    try:
        api.begin_capture(stream)
        try:
            enqueue()
        finally:
            graph = api.end_capture(stream)
        graph_exec = api.graph_instantiate(graph)
        masks = []
        for _ in range(3):
            frame = random_scene(rng, *frame_shape[:2])
            logits = (3 * rng.standard_normal(low)).astype(np.float32)
            np.copyto(host_frame, frame)
            np.copyto(host_logits, logits)
            api.graph_launch(graph_exec, stream)
            api.stream_synchronize(stream)
            want_input = ops.preprocess(frame, size, IMAGENET_MEAN, IMAGENET_STD)
            want_mask = ops.upsample_argmax(logits, size, stride)
            assert ops.kernel_backend() == "cpp"  # the references are the C++ CPU kernels, not the CUDA ones
            np.testing.assert_array_equal(host_input, want_input)
            np.testing.assert_array_equal(host_mask, want_mask)
            masks.append(host_mask.copy())
        assert not np.array_equal(masks[0], masks[1])
    finally:
        api.graph_destroy(graph, graph_exec)
        for ptr in buffers.values():
            api.free(ptr)
        api.stream_destroy(stream)
