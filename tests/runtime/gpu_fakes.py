"""Recorded fakes of cuda-python's runtime, pycuda, TensorRT and edgeseg._C's CUDA kernels, on host memory.

"Device" memory is host memory here, so the TensorRT runner's orchestration (buffers, addresses, batches, streams,
graph capture and replay) runs and is checked on a CPU. Work is enqueued per stream and runs at once, except while
a stream captures: then it is recorded into the graph and runs at each launch, as CUDA would.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import itertools
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeseg.config import make_meta
from edgeseg.files import sha256_file
from edgeseg.runtime import ops
from edgeseg.runtime.backends.tensorrt_device import CudaKernels
from edgeseg.sidecar import EngineSidecar, TensorInfo, write_sidecar

from .onnx_graphs import CLASSES, pixel_classifier_weights


def view(ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A numpy view of `shape` `dtype` at address `ptr` (host memory standing in for device memory)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = (ctypes.c_byte * max(count * dtype.itemsize, 1)).from_address(ptr)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


class _Err(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorStreamCaptureInvalidated = 901


@dataclass
class _Props:
    name: bytes
    major: int
    minor: int
    totalGlobalMem: int = 8 << 30


class FakeCudart(types.ModuleType):
    """cuda.bindings.runtime as EdgeSeg calls it. `calls` records (function, args, thread name)."""

    cudaError_t = _Err
    cudaStreamNonBlocking = 1
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeGlobal=0, cudaStreamCaptureModeThreadLocal=1,
                                                  cudaStreamCaptureModeRelaxed=2)

    def __init__(self, devices=(("NVIDIA GeForce RTX 4090", 8, 9),), fail: dict[str, _Err] | None = None) -> None:
        super().__init__("cuda.bindings.runtime")
        self.devices = [_Props(name.encode(), major, minor) for name, major, minor in devices]
        self.fail = dict(fail or {})
        self.calls: list[tuple[str, tuple, str]] = []
        self.memory: dict[int, Any] = {}  # address -> ctypes block (device and pinned alike)
        self.pinned: set[int] = set()
        self.freed: list[int] = []
        self.current_device: dict[str, int] = {}
        self._ids = itertools.count(1)
        self.capturing: dict[int, list[Callable[[], None]]] = {}
        self.graphs: dict[int, list[Callable[[], None]]] = {}
        self.launches = 0

    def _record(self, name: str, *args: Any) -> _Err | None:
        self.calls.append((name, args, threading.current_thread().name))
        return self.fail.get(name)

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def cudaGetErrorString(self, err):
        return _Err.cudaSuccess, f"fake error {_Err(err).name}".encode()

    def cudaGetLastError(self):
        self._record("cudaGetLastError")
        return (_Err.cudaSuccess,)

    # devices
    def cudaGetDeviceCount(self):
        err = self._record("cudaGetDeviceCount")
        return (err, None) if err else (_Err.cudaSuccess, len(self.devices))

    def cudaGetDeviceProperties(self, device):
        self._record("cudaGetDeviceProperties", device)
        return _Err.cudaSuccess, self.devices[device]

    def cudaSetDevice(self, device):
        self._record("cudaSetDevice", device)
        self.current_device[threading.current_thread().name] = device
        return (_Err.cudaSuccess,)

    # memory
    def _alloc(self, nbytes: int) -> int:
        block = ctypes.create_string_buffer(int(nbytes))
        ptr = ctypes.addressof(block)
        self.memory[ptr] = block
        return ptr

    def cudaMalloc(self, nbytes):
        err = self._record("cudaMalloc", nbytes)
        return (err, None) if err else (_Err.cudaSuccess, self._alloc(nbytes))

    def cudaMallocHost(self, nbytes):
        err = self._record("cudaMallocHost", nbytes)
        if err:
            return err, None
        ptr = self._alloc(nbytes)
        self.pinned.add(ptr)
        return _Err.cudaSuccess, ptr

    def cudaFree(self, ptr):
        self._record("cudaFree", ptr)
        self.freed.append(ptr)
        self.memory.pop(ptr)
        return (_Err.cudaSuccess,)

    def cudaFreeHost(self, ptr):
        self._record("cudaFreeHost", ptr)
        self.freed.append(ptr)
        self.pinned.discard(ptr)
        self.memory.pop(ptr)
        return (_Err.cudaSuccess,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        self._record("cudaMemcpyAsync", kind, int(stream))
        self.enqueue(int(stream), lambda: ctypes.memmove(dst, src, nbytes))
        return (_Err.cudaSuccess,)

    # streams and events
    def enqueue(self, stream: int, work: Callable[[], None]) -> None:
        """Run `work` now, or record it when `stream` is capturing."""
        if stream in self.capturing:
            self.capturing[stream].append(work)
        else:
            work()

    def cudaStreamCreateWithFlags(self, flags):
        self._record("cudaStreamCreateWithFlags", flags)
        return _Err.cudaSuccess, next(self._ids)

    def cudaStreamCreate(self):
        self._record("cudaStreamCreate")
        return _Err.cudaSuccess, next(self._ids)

    def cudaStreamSynchronize(self, stream):
        self._record("cudaStreamSynchronize", int(stream))
        return (_Err.cudaSuccess,)

    def cudaStreamDestroy(self, stream):
        self._record("cudaStreamDestroy", int(stream))
        return (_Err.cudaSuccess,)

    def cudaEventCreate(self):
        self._record("cudaEventCreate")
        return _Err.cudaSuccess, next(self._ids)

    def cudaEventRecord(self, event, stream):
        self._record("cudaEventRecord", event, int(stream))
        return (_Err.cudaSuccess,)

    def cudaEventElapsedTime(self, start, end):
        self._record("cudaEventElapsedTime", start, end)
        return _Err.cudaSuccess, 0.25

    def cudaEventDestroy(self, event):
        self._record("cudaEventDestroy", event)
        return (_Err.cudaSuccess,)

    # graphs
    def cudaStreamBeginCapture(self, stream, mode):
        err = self._record("cudaStreamBeginCapture", int(stream), mode)
        if err:
            return (err,)
        self.capturing[int(stream)] = []
        return (_Err.cudaSuccess,)

    def cudaStreamEndCapture(self, stream):
        self._record("cudaStreamEndCapture", int(stream))
        work = self.capturing.pop(int(stream))
        graph = next(self._ids)
        self.graphs[graph] = work
        return _Err.cudaSuccess, graph

    def cudaGraphInstantiate(self, graph, flags):
        self._record("cudaGraphInstantiate", graph)
        return _Err.cudaSuccess, graph

    def cudaGraphLaunch(self, graph_exec, stream):
        self._record("cudaGraphLaunch", graph_exec, int(stream))
        self.launches += 1
        for work in self.graphs[graph_exec]:
            work()
        return (_Err.cudaSuccess,)

    def cudaGraphExecDestroy(self, graph_exec):
        self._record("cudaGraphExecDestroy", graph_exec)
        return (_Err.cudaSuccess,)

    def cudaGraphDestroy(self, graph):
        self._record("cudaGraphDestroy", graph)
        self.graphs.pop(graph, None)
        return (_Err.cudaSuccess,)


class HostKernels(CudaKernels):
    """edgeseg._C's CUDA kernels, computed with edgeseg.runtime.ops' CPU kernels on host 'device' memory."""

    def __init__(self, rt: FakeCudart) -> None:
        super().__init__(module=types.SimpleNamespace())
        self.rt = rt
        self.launches: list[str] = []

    def preprocess(self, src, height, width, pitch, dst, out_h, out_w, mean, std, fp16, stream):
        self.launches.append("preprocess")
        dtype = np.float16 if fp16 else np.float32

        def work():
            frame = view(src, (height, pitch), np.uint8)[:, : width * 3].reshape(height, width, 3)
            ops.preprocess(frame, (out_h, out_w), mean, std, dtype=dtype, out=view(dst, (1, 3, out_h, out_w), dtype))

        self.rt.enqueue(stream, work)

    def argmax(self, src, fp16, classes, h, w, dst, stream):
        self.launches.append("argmax")
        dtype = np.float16 if fp16 else np.float32
        self.rt.enqueue(stream, lambda: np.copyto(view(dst, (h, w), np.uint8),
                                                  ops.argmax(view(src, (classes, h, w), dtype))))

    def upsample_argmax(self, src, fp16, classes, h, w, stride, dst, out_h, out_w, stream):
        self.launches.append("upsample_argmax")
        dtype = np.float16 if fp16 else np.float32
        self.rt.enqueue(stream, lambda: np.copyto(view(dst, (out_h, out_w), np.uint8),
                                                  ops.upsample_argmax(view(src, (classes, h, w), dtype),
                                                                      (out_h, out_w), stride)))


# ----- TensorRT ---------------------------------------------------------------------------------------------------


class _Validity(enum.IntEnum):
    VALID = 0
    SUBOPTIMAL = 1
    INVALID = 2


class _Diagnostics(enum.IntEnum):
    VERSION_MISMATCH = 1
    UNSUPPORTED_CC = 2
    OLD_CUDA_DRIVER = 4
    MALFORMED_ENGINE = 32


@dataclass
class EngineSpec:
    """What the fake engine computes: the 1x1-conv pixel classifier of onnx_graphs, as float or classmap."""

    input_name: str = "input"
    output_name: str = "logits"
    input_size: tuple[int, int] = (24, 32)
    max_batch: int = 4
    uint8_input: bool = False
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    stride: int = 1
    argmax: bool = False
    dtype: Any = np.float32

    def input_shape(self, n: int) -> tuple[int, ...]:
        h, w = self.input_size
        return (n, h, w, 3) if self.uint8_input else (n, 3, h, w)

    def output_shape(self, n: int) -> tuple[int, ...]:
        h, w = self.input_size[0] // self.stride, self.input_size[1] // self.stride
        return (n, h, w) if self.argmax else (n, 4, h, w)

    def compute(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        if self.uint8_input:  # the graph normalises: BGR uint8 NHWC -> normalised RGB NCHW
            x = (x[..., ::-1].transpose(0, 3, 1, 2) / 255.0 - np.reshape(self.mean, (1, 3, 1, 1))) / np.reshape(
                self.std, (1, 3, 1, 1))
        if self.stride > 1:
            n, c, h, w = x.shape
            s = self.stride
            x = x.reshape(n, c, h // s, s, w // s, s).mean(axis=(3, 5))
        weight, bias = pixel_classifier_weights()
        logits = np.einsum("kc,nchw->nkhw", weight[:, :, 0, 0], x) + bias[None, :, None, None]
        return logits.argmax(1).astype(np.uint8) if self.argmax else logits.astype(self.dtype)


class FakeContext:
    def __init__(self, engine: "FakeEngine", config: Any = None) -> None:
        self.engine, self.config = engine, config
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.capturable = True
        self.executions = 0
        self.fail_execute = False

    def set_input_shape(self, name, shape):
        spec = self.engine.spec
        n = shape[0]
        if tuple(shape) != spec.input_shape(n) or not 1 <= n <= spec.max_batch:
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.engine.spec.output_shape(self.shapes[self.engine.spec.input_name][0])

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = int(ptr)
        return True

    def is_stream_capturable(self, stream):
        return self.capturable

    def execute_async_v3(self, stream):
        if self.fail_execute:
            return False
        spec = self.engine.spec
        in_shape = self.shapes[spec.input_name]
        out_shape = spec.output_shape(in_shape[0])
        in_dtype = np.uint8 if spec.uint8_input else spec.dtype
        out_dtype = np.uint8 if spec.argmax else spec.dtype
        src, dst = self.addresses[spec.input_name], self.addresses[spec.output_name]
        compute = self.engine.module.compute
        if compute is not None:  # the real GPU (standin_engine.CupyCompute): device pointers, the caller's stream
            self.executions += 1
            compute.execute(spec, src, in_shape, dst, int(stream))
            return True

        def work():
            self.executions += 1
            np.copyto(view(dst, out_shape, out_dtype), spec.compute(view(src, in_shape, in_dtype)))

        self.engine.module.rt.enqueue(int(stream), work)
        return True


class FakeRuntimeCache:
    def __init__(self, module: "FakeTrt") -> None:
        self.module, self.blob = module, b""

    def deserialize(self, blob):
        self.module.events.append(("cache.deserialize", bytes(blob)))
        if not bytes(blob).startswith(b"rtx-cache:"):
            return False
        self.blob = bytes(blob)
        return True

    def serialize(self):
        # What was loaded, plus the kernels this process compiled (its first execution compiles them).
        compiled = self.module.compiled
        return (b"rtx-cache:" + b"k" * compiled) if compiled else self.blob


class FakeRuntimeConfig:
    def __init__(self, module: "FakeTrt") -> None:
        self.module, self.cache = module, None

    def create_runtime_cache(self):
        return FakeRuntimeCache(self.module)

    def set_runtime_cache(self, cache):
        self.cache = cache
        return True


class FakeEngine:
    def __init__(self, module: "FakeTrt", spec: EngineSpec) -> None:
        self.module, self.spec = module, spec
        self.num_io_tensors = 2
        self.contexts: list[FakeContext] = []

    def get_tensor_name(self, index):
        return (self.spec.input_name, self.spec.output_name)[index]

    def create_runtime_config(self):
        return FakeRuntimeConfig(self.module)

    def create_execution_context(self, config=None):
        context = FakeContext(self, config)
        self.contexts.append(context)
        original = context.execute_async_v3

        def execute(stream):  # the first run compiles kernels (what TensorRT-RTX's runtime cache keeps)
            loaded = config is not None and config.cache is not None and config.cache.blob
            if not loaded:
                self.module.compiled = 3
            return original(stream)

        context.execute_async_v3 = execute
        return context


class FakeTrt(types.ModuleType):
    """A TensorRT flavour module: Logger, Runtime, EngineValidity; engines come from `spec`."""

    EngineValidity = _Validity
    EngineInvalidityDiagnostics = _Diagnostics

    def __init__(self, name: str, version: str, rt: FakeCudart | None, spec: EngineSpec, validity=None,
                 compute: Any = None) -> None:
        """`rt`: the fake CUDA runtime whose host memory the engine computes on, or None with `compute` (an object
        with `execute(spec, src_ptr, in_shape, dst_ptr, stream)`, e.g. standin_engine.CupyCompute on a real GPU)."""
        super().__init__(name)
        self.__version__ = version
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)
        self.rt, self.spec, self.validity, self.compute = rt, spec, validity, compute
        self.events: list[tuple] = []
        self.engines: list[FakeEngine] = []
        self.compiled = 0
        module = self

        class Logger:
            WARNING = 2

            def __init__(self, severity=2):
                self.severity = severity

        class Runtime:
            def __init__(self, logger):
                self.engine_host_code_allowed = False

            def deserialize_cuda_engine(self, blob):
                module.events.append(("deserialize", self.engine_host_code_allowed))
                if not bytes(blob).startswith(b"fake-engine"):
                    return None
                engine = FakeEngine(module, module.spec)
                module.engines.append(engine)
                return engine

        if validity is not None:
            def get_engine_validity(self, blob):
                module.events.append(("get_engine_validity",))
                return module.validity

            Runtime.get_engine_validity = get_engine_validity
        self.Logger, self.Runtime = Logger, Runtime


def write_fake_engine(engine: Path, spec: EngineSpec, *, flavour: str = "tensorrt", version: str = "10.3.0",
                      engine_bytes: bytes = b"fake-engine", **fields: Any) -> Path:
    """An engine file FakeTrt deserializes, with the sidecar EdgeSeg's export would write for `spec`."""
    engine.write_bytes(engine_bytes)
    meta = make_meta("pixel", CLASSES, spec.input_size, output_stride=spec.stride,
                     input_format="uint8_nhwc_bgr" if spec.uint8_input else "float_nchw_rgb",
                     output_format="classmap" if spec.argmax else "logits")
    in_dtype = "uint8" if spec.uint8_input else np.dtype(spec.dtype).name
    out_dtype = "uint8" if spec.argmax else np.dtype(spec.dtype).name
    sidecar = EngineSidecar(
        flavour=flavour, trt_version=version, precision="fp32", meta=meta,
        inputs=(TensorInfo(spec.input_name, (-1, *spec.input_shape(1)[1:]), in_dtype),),
        outputs=(TensorInfo(spec.output_name, (-1, *spec.output_shape(1)[1:]), out_dtype),),
        engine_sha256=sha256_file(engine),
        profile=(spec.input_shape(1), spec.input_shape(2), spec.input_shape(spec.max_batch)), **fields)
    write_sidecar(engine, sidecar)
    return engine


# ----- pycuda ----------------------------------------------------------------------------------------------------


class FakePycudaDriver(types.ModuleType):
    """pycuda.driver as EdgeSeg calls it; `calls` records (function, args, thread name)."""

    class Error(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pycuda.driver")
        self.__spec__ = importlib.machinery.ModuleSpec("pycuda.driver", None)
        self.calls: list[tuple[str, tuple, str]] = []
        driver = self

        def record(name, *args):
            driver.calls.append((name, args, threading.current_thread().name))

        self._record = record

        class Device:
            @staticmethod
            def count():
                record("Device.count")
                return 1

            def __init__(self, index):
                record("Device", index)
                self.index = index

            def name(self):
                return "NVIDIA H100 80GB HBM3"

            def compute_capability(self):
                return (9, 0)

            def total_memory(self):
                return 80 << 30

            def retain_primary_context(self):
                record("retain_primary_context", self.index)
                return Context(self.index)

        class Context:
            def __init__(self, index):
                self.index = index

            def push(self):
                record("Context.push", self.index)

            def detach(self):
                record("Context.detach", self.index)

            @staticmethod
            def pop():
                record("Context.pop")

        class DeviceAllocation:
            def __init__(self, nbytes):
                self.block = ctypes.create_string_buffer(nbytes)

            def __int__(self):
                return ctypes.addressof(self.block)

            def free(self):
                record("DeviceAllocation.free", int(self))

        class Stream:
            def __init__(self, flags=0):
                record("Stream", flags)
                self.handle = 4242

            def synchronize(self):
                record("Stream.synchronize")

        class Event:
            def __init__(self, flags=0):
                record("Event")

            def record(self, stream=None):
                record("Event.record", stream)
                return self

            def time_since(self, other):
                record("Event.time_since", other)
                return 1.5

        self.Device, self.Context, self.Stream, self.Event = Device, Context, Stream, Event
        self._DeviceAllocation = DeviceAllocation

    def init(self, flags=0):
        self._record("init")

    def mem_alloc(self, nbytes):
        self._record("mem_alloc", nbytes)
        if nbytes > 1 << 40:
            raise self.Error("cuMemAlloc failed: out of memory")
        return self._DeviceAllocation(nbytes)

    def pagelocked_empty(self, shape, dtype, order="C", mem_flags=0):
        self._record("pagelocked_empty", shape, np.dtype(dtype))
        return np.zeros(shape, dtype)

    def memcpy_htod_async(self, dest, src, stream=None):
        self._record("memcpy_htod_async", dest, src.nbytes, stream)
        ctypes.memmove(dest, src.ctypes.data, src.nbytes)

    def memcpy_dtoh_async(self, dest, src, stream=None):
        self._record("memcpy_dtoh_async", src, dest.nbytes, stream)
        ctypes.memmove(dest.ctypes.data, src, dest.nbytes)


def fake_pycuda_modules() -> dict[str, types.ModuleType]:
    """sys.modules entries for `import pycuda.driver`."""
    package = types.ModuleType("pycuda")
    package.__spec__ = importlib.machinery.ModuleSpec("pycuda", None, is_package=True)
    package.__path__ = []  # type: ignore[attr-defined]
    driver = FakePycudaDriver()
    package.driver = driver  # type: ignore[attr-defined]
    return {"pycuda": package, "pycuda.driver": driver}
