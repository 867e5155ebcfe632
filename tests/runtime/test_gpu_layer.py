"""The GPU layer without a GPU: the buffer cache's reuse rule, and both CudaApi implementations checked against
recorded fakes of cuda-python's runtime and of pycuda."""

from __future__ import annotations

import gc
import sys
import threading

import numpy as np
import pytest

from edgeseg.errors import BackendUnavailableError, ConfigError, CudaError
from edgeseg.runtime.gpu import BufferCache, CudaPythonApi, EventTimer, HostDevicePair, choose_cuda_api, cuda_api
from edgeseg.runtime.gpu.buffers import pair_cache

from .gpu_fakes import FakeCudart, _Err, fake_pycuda_modules

# ----- BufferCache -----------------------------------------------------------------------------------------------


class _Fake:
    def __init__(self, shape, dtype, serial):
        self.shape, self.dtype, self.serial, self.freed = shape, dtype, serial, False


def _fake_cache(max_entries=32):
    made, released = [], []

    def allocate(shape, dtype):
        made.append(_Fake(shape, dtype, len(made)))
        return made[-1]

    def release(buffer):
        buffer.freed = True
        released.append(buffer)

    return BufferCache(allocate, release, max_entries), made, released


def test_buffer_cache_keys_on_name_shape_and_dtype():
    cache, made, released = _fake_cache()
    a = cache.get("input", (2, 3, 8, 8), np.float32)
    assert cache.get("input", [2, 3, 8, 8], "float32") is a  # same key in other spellings: reused
    assert cache.get(("frame", 0), (480, 640, 3), np.uint8) is not a
    b = cache.get("input", (2, 3, 8, 8), np.float16)  # dtype differs: another buffer, `a` is kept
    c = cache.get("input", (1, 3, 8, 8), np.float32)  # shape differs: another buffer
    assert len({id(a), id(b), id(c)}) == 3 and released == [] and cache.allocations == 4
    assert cache.get("input", (2, 3, 8, 8), np.float32) is a
    cache.clear()
    assert all(m.freed for m in made) and len(cache) == 0


def test_alternating_batch_sizes_allocate_once_per_size():
    """Two sources batched (2) and a last partial batch (1), over and over: one allocation per (tensor, size)."""
    cache, made, released = _fake_cache(max_entries=8)
    for step in range(50):
        n = (2, 2, 1)[step % 3]
        cache.begin_round()
        cache.get("input", (n, 3, 16, 16), np.float32)
        cache.get("logits", (n, 4, 16, 16), np.float32)
        cache.get("__mask__", (n, 16, 16), np.uint8)
    assert cache.allocations == 6 and released == []


def test_the_bound_evicts_least_recently_used_but_never_the_current_round():
    cache, made, released = _fake_cache(max_entries=3)
    cache.begin_round()
    first = [cache.get("t", (i,), np.uint8) for i in (1, 2, 3)]
    cache.begin_round()
    cache.get("t", (1,), np.uint8)  # touched: now the most recent
    cache.get("t", (4,), np.uint8)  # over the bound: (2,) is the least recently used
    assert released == [first[1]]
    cache.begin_round()
    batch = [cache.get("u", (i,), np.uint8) for i in range(5)]  # one batch needs 5 > 3 buffers: all kept alive
    assert not any(b.freed for b in batch) and len(cache) == 5
    cache.begin_round()
    cache.get("v", (0,), np.uint8)  # the next batch trims back to the bound
    assert len(cache) == 3


def test_buffer_cache_rejects_a_zero_bound():
    with pytest.raises(ValueError, match="max_entries"):
        BufferCache(lambda s, d: None, lambda b: None, max_entries=0)


# ----- cuda-python ------------------------------------------------------------------------------------------------


def test_cuda_python_stream_is_non_blocking_and_capture_is_thread_local():
    rt = FakeCudart()
    api = CudaPythonApi(rt)
    stream = api.stream_create()
    api.begin_capture(stream)
    api.end_capture(stream)
    calls = {name: args for name, args, _ in rt.calls}
    assert calls["cudaStreamCreateWithFlags"] == (rt.cudaStreamNonBlocking,)
    assert calls["cudaStreamBeginCapture"] == (stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    assert "cudaStreamCreate" not in calls


def test_cuda_python_errors_name_the_call():
    api = CudaPythonApi(FakeCudart(fail={"cudaMalloc": _Err.cudaErrorMemoryAllocation}))
    with pytest.raises(CudaError, match="cudaMalloc failed: fake error cudaErrorMemoryAllocation"):
        api.malloc(64)
    with pytest.raises(CudaError, match="cudaGetDeviceCount failed: .*InsufficientDriver"):
        CudaPythonApi(FakeCudart(fail={"cudaGetDeviceCount": _Err.cudaErrorInsufficientDriver})).device_count()


def test_device_info_and_round_trip_through_device_memory():
    rt = FakeCudart(devices=[("NVIDIA H100 80GB HBM3", 9, 0)])
    api = CudaPythonApi(rt)
    info = api.device_info(0)
    assert (info.name, info.compute_capability, info.cc_tuple) == ("NVIDIA H100 80GB HBM3", "9.0", (9, 0))
    pair = HostDevicePair.allocate(api, (2, 5), np.float32)
    back = HostDevicePair.allocate(api, (2, 5), np.float32)
    stream = api.stream_create()
    pair.host.array[:] = np.arange(10, dtype=np.float32).reshape(2, 5)
    api.memcpy_htod_async(pair.device.ptr, pair.host.array, stream)
    api.memcpy_dtoh_async(back.host.array, pair.device.ptr, stream)
    np.testing.assert_array_equal(back.host.array, pair.host.array)
    assert pair.device.item_ptr(1) == pair.device.ptr + 5 * 4


def test_pinned_memory_outlives_the_buffer_while_a_view_exists():
    """The use-after-free the runner used to have: free() must not release memory a caller still reads."""
    rt = FakeCudart()
    api = CudaPythonApi(rt)
    pair = HostDevicePair.allocate(api, (4,), np.int32)
    pair.host.array[:] = [1, 2, 3, 4]
    ptr, kept = pair.host.ptr, pair.host.array[1:3]  # a view, as a caller would hold
    pair.free()
    assert ptr in rt.pinned and ptr not in rt.freed and pair.device.ptr == 0
    np.testing.assert_array_equal(kept, [2, 3])
    del kept
    gc.collect()
    assert ptr in rt.freed and ptr not in rt.pinned  # released with the last view


def test_event_timer_records_on_its_stream():
    rt = FakeCudart()
    api = CudaPythonApi(rt)
    stream = api.stream_create()
    timer = EventTimer(api, stream)
    for mark in ("start", "preprocess", "infer"):
        timer.mark(mark)
    assert timer.elapsed_ms() == {"preprocess": 0.25, "infer": 0.25}
    assert {args[1] for name, args, _ in rt.calls if name == "cudaEventRecord"} == {stream}
    timer.free()
    assert rt.names().count("cudaEventDestroy") == 3


# ----- pycuda ------------------------------------------------------------------------------------------------


@pytest.fixture
def pycuda_driver(monkeypatch):
    for name, module in fake_pycuda_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    return sys.modules["pycuda.driver"]


def test_pycuda_layer_calls_the_driver_correctly(pycuda_driver):
    from edgeseg.runtime.gpu.pycuda_api import CU_STREAM_NON_BLOCKING, PycudaApi

    api = cuda_api("pycuda")
    assert isinstance(api, PycudaApi) and not api.supports_graphs
    assert api.device_count() == 1
    info = api.device_info(0)
    assert (info.name, info.compute_capability) == ("NVIDIA H100 80GB HBM3", "9.0")
    api.set_device(0)
    api.set_device(0)  # once per thread: no second push
    stream = api.stream_create()
    assert api.stream_handle(stream) == 4242
    cache = pair_cache(api)
    pair = cache.get("x", (3, 4), np.float32)
    device_ptr = pair.device.ptr
    pair.host.array[:] = 7.0
    api.memcpy_htod_async(pair.device.ptr, pair.host.array, stream)
    out = np.zeros((3, 4), np.float32)
    api.memcpy_dtoh_async(out, pair.device.ptr, stream)
    np.testing.assert_array_equal(out, 7.0)
    start, end = api.event_create(), api.event_create()
    api.event_record(start, stream)
    api.event_record(end, stream)
    assert api.event_elapsed_ms(start, end) == 1.5
    api.stream_synchronize(stream)
    cache.clear()
    api.release()
    calls = [(name, args) for name, args, _ in pycuda_driver.calls]
    names = [name for name, _ in calls]
    assert names[0] == "init"
    assert names.count("Context.push") == 1 and ("retain_primary_context", (0,)) in calls
    assert ("Stream", (CU_STREAM_NON_BLOCKING,)) in calls
    assert ("pagelocked_empty", ((3, 4), np.dtype(np.float32))) in calls and ("mem_alloc", (48,)) in calls
    assert ("memcpy_htod_async", (device_ptr, 48, stream)) in calls
    assert ("memcpy_dtoh_async", (device_ptr, 48, stream)) in calls
    assert ("Event.record", (stream,)) in calls and ("Event.time_since", (start,)) in calls
    assert names.count("DeviceAllocation.free") == 1
    assert names[-2:] == ["Context.pop", "Context.detach"]


def test_pycuda_sets_the_device_on_every_thread(pycuda_driver):
    api = cuda_api("pycuda")
    api.set_device(0)
    worker = threading.Thread(target=api.set_device, args=(0,), name="inference")
    worker.start()
    worker.join()
    pushes = [thread for name, _, thread in pycuda_driver.calls if name == "Context.push"]
    assert pushes == ["MainThread", "inference"]


def test_pycuda_errors_become_cuda_errors(pycuda_driver):
    api = cuda_api("pycuda")
    with pytest.raises(CudaError, match="cuMemAlloc failed: .*out of memory"):
        api.malloc(1 << 41)
    with pytest.raises(BackendUnavailableError, match="cannot capture CUDA graphs"):
        api.begin_capture(None)


def test_cuda_api_choice(monkeypatch, pycuda_driver):
    monkeypatch.setenv("EDGESEG_CUDA_API", "pycuda")
    assert choose_cuda_api() == "pycuda"
    assert choose_cuda_api("cuda-python") == "cuda-python"  # the option beats the environment
    monkeypatch.setenv("EDGESEG_CUDA_API", "cupy")
    with pytest.raises(ConfigError, match="EDGESEG_CUDA_API must be one of"):
        choose_cuda_api()
    monkeypatch.delenv("EDGESEG_CUDA_API")
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    assert choose_cuda_api() == "pycuda"  # cuda-python missing: the importable one
    monkeypatch.setitem(sys.modules, "pycuda", None)
    with pytest.raises(BackendUnavailableError, match="needs cuda-python .* or pycuda"):
        choose_cuda_api()
