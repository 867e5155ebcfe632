"""TensorRT backend for .engine files built by `edgeseg export --engine`, with TensorRT or TensorRT-RTX.

Every engine has a sidecar `<engine>.json` (written by edgeseg.export.engine) holding the flavour and version of
TensorRT that built it, its I/O tensors, the ModelMeta and the engine's sha256; the backend checks it before
touching the GPU. `import_trt` is the one place that picks the TensorRT flavour; the exporter uses it too.

Buffers: pinned host and device buffers are allocated once per (tensor, shape, dtype) and reused while the key
stays the same; the backend owns its CUDA stream. The array `infer` returns is a view of the pinned output
buffer: it is overwritten by the next call, so copy it if you keep it.

Device path (`predict_frames`, used by Segmenter when `frames_on_device` is True): each BGR uint8 frame is copied
into a pinned staging buffer and crosses the bus once, as uint8; edgeseg._C's CUDA kernels resize and normalise it
into the engine's input (float32 or float16, as the engine takes), the engine runs, and argmax / upsample-argmax
runs on the GPU into a uint8 mask that crosses back, all on the backend's stream with one synchronize per batch.
Engines with a uint8 NHWC input (`--uint8-input`) normalise in the graph, but there is no uint8 resize kernel: their
frames are resized with cv2 on the CPU, straight into the pinned input buffer, and uploaded at model size. Engines
with an in-graph argmax (classmap) skip the post-processing kernel. `cuda_graph=True` replays the whole device part
as one CUDA graph per (batch, frame shapes); when capture is impossible it warns once and runs without graphs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import cv2
import numpy as np

from edgeseg._optional import is_available, require
from edgeseg.config import ModelMeta
from edgeseg.errors import BackendUnavailableError, ConfigError, DataError, EdgeSegError, ModelFileError
from edgeseg.runtime import ops
from edgeseg.runtime.backends.base import Backend, TensorSpec
from edgeseg.runtime.trt_flavours import import_trt
from edgeseg.runtime.gpu import BufferCache, CudaError, EventTimer, HostDevicePair, cuda_check

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "edgeseg-engine"
SIDECAR_VERSION = 1
NEEDS_GPU = "a .engine file needs an NVIDIA GPU and TensorRT; use the .onnx with ONNX Runtime instead"


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The engine's sidecar, checked against the engine file (sha256); ModelFileError when missing or mismatched."""
    engine_path = Path(engine_path)
    side = sidecar_path(engine_path)
    if not engine_path.is_file():
        raise ModelFileError(f"engine {engine_path} does not exist")
    if not side.is_file():
        raise ModelFileError(f"engine {engine_path} has no sidecar {side.name}; rebuild it with `edgeseg export --engine`")
    try:
        data = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"sidecar {side} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ModelFileError(f"{side} is not an EdgeSeg engine sidecar (no '{SIDECAR_FORMAT}' format tag)")
    missing = [k for k in ("flavour", "inputs", "outputs", "meta", "engine_sha256") if k not in data]
    if missing:
        raise ModelFileError(f"sidecar {side} lacks {missing}")
    digest = hashlib.sha256(engine_path.read_bytes()).hexdigest()
    if digest != data["engine_sha256"]:
        raise ModelFileError(f"engine {engine_path} does not match its sidecar (sha256 differs): "
                             "the engine was rebuilt, replaced or truncated; export it again")
    return data


def _specs(entries: list[dict[str, Any]], where: Path) -> list[TensorSpec]:
    try:
        return [TensorSpec(str(e["name"]), tuple(int(d) for d in e["shape"]), np.dtype(e["dtype"])) for e in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"sidecar {where} has malformed I/O tensors: {exc!r}") from exc


_CudaError = CudaError  # the name this module used before edgeseg.runtime.gpu existed
STAGES = ("preprocess", "infer", "postprocess")
_MASK = "__edgeseg_mask__"
_MAX_GRAPHS = 8


@dataclass
class _Batch:
    """What one predict_frames batch runs on: buffers from the cache, fixed while the graph key stays the same."""

    frames: list[np.ndarray]
    key: tuple
    inp: HostDevicePair
    out: HostDevicePair
    out_shape: tuple[int, ...]
    staging: list[HostDevicePair]
    mask: HostDevicePair | None  # None for classmap engines: their output is the mask


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT / TensorRT-RTX engine with cuda-python on one GPU."""

    name = "tensorrt"

    def __init__(self, path, *, device: int = 0, device_frames: bool = True, cuda_graph: bool = False) -> None:
        """`device_frames=False` keeps Segmenter on the CPU pre/post-processing path (numpy batches through `infer`);
        `cuda_graph=True` replays predict_frames' device work as a CUDA graph (see the module docstring)."""
        self._device = device
        self._buffers: BufferCache[HostDevicePair] = BufferCache()
        self._stream = None
        self._device_frames = bool(device_frames)
        self._cuda_graph = bool(cuda_graph)
        self._graphs: dict[tuple, tuple[Any, Any]] = {}  # batch key (shapes + device addresses) -> (graph, exec)
        self._timer: EventTimer | None = None
        self.stage_ms: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        super().__init__(path)

    # ----- loading ------------------------------------------------------------------------------------
    def _load_impl(self) -> None:
        self.sidecar = read_sidecar(self.path)  # file checks first: they need no GPU
        side = sidecar_path(self.path)
        self.meta = ModelMeta.from_dict(self.sidecar["meta"])
        self.inputs = _specs(self.sidecar["inputs"], side)
        self.outputs = _specs(self.sidecar["outputs"], side)
        if len(self.inputs) != 1 or not self.outputs:
            raise ModelFileError(f"sidecar {side} lists {len(self.inputs)} inputs and {len(self.outputs)} outputs; "
                                 "EdgeSeg engines have one input and at least one output")
        try:
            trt, flavour = import_trt(self.sidecar["flavour"])
            self._cudart = require("cuda.bindings.runtime", "running TensorRT engines")
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"{NEEDS_GPU} ({exc})") from exc
        err, count = self._cudart.cudaGetDeviceCount()
        if err != self._cudart.cudaError_t.cudaSuccess or count < 1:
            reason = self._cudart.cudaGetErrorString(err)[1].decode() if err else "no CUDA device found"
            raise BackendUnavailableError(f"{NEEDS_GPU} (CUDA: {reason})")
        if self._device >= count:
            raise ConfigError(f"CUDA device {self._device} requested, but only {count} device(s) are visible")
        self._check(self._cudart.cudaSetDevice(self._device), "cudaSetDevice")
        built = self.sidecar.get("trt_version")
        if built and built != trt.__version__:
            raise ModelFileError(f"engine {self.path.name} was built with {flavour} {built}, this is {trt.__version__}: "
                                 "engines are tied to the TensorRT version; rebuild it on this machine")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ModelFileError(f"{flavour} could not deserialize {self.path} (corrupt, or built for another GPU or "
                                 "TensorRT version; see the TensorRT log above): rebuild it on this machine")
        names = {self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)}
        expected = {s.name for s in self.inputs + self.outputs}
        if names != expected:
            raise ModelFileError(f"engine tensors {sorted(names)} differ from its sidecar's {sorted(expected)}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendUnavailableError(f"TensorRT could not create an execution context for {self.path} (GPU memory?)")
        self._stream = self._check(self._cudart.cudaStreamCreate(), "cudaStreamCreate")

    # ----- inference -----------------------------------------------------------------------------------
    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        cudart, stream = self._cudart, self._stream
        spec = self.inputs[0]
        if not self._context.set_input_shape(spec.name, tuple(batch.shape)):
            raise ConfigError(f"shape {batch.shape} is outside the engine's optimisation profile "
                              f"(sidecar 'profile': {self.sidecar.get('profile')})")
        host, device = self._buffer(spec.name, tuple(batch.shape), batch.dtype)
        np.copyto(host, batch)
        kind = cudart.cudaMemcpyKind
        self._check(cudart.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, kind.cudaMemcpyHostToDevice, stream),
                    "cudaMemcpyAsync H2D")
        self._context.set_tensor_address(spec.name, device)
        results = []
        for out in self.outputs:
            shape = tuple(self._context.get_tensor_shape(out.name))
            out_host, out_device = self._buffer(out.name, shape, out.dtype)
            self._context.set_tensor_address(out.name, out_device)
            results.append((out_host, out_device))
        if not self._context.execute_async_v3(int(stream)):
            raise EdgeSegError(f"TensorRT execution of {self.path.name} failed (see the TensorRT log)")
        for out_host, out_device in results:
            self._check(cudart.cudaMemcpyAsync(out_host.ctypes.data, out_device, out_host.nbytes,
                                               kind.cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync D2H")
        self._check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return results[0][0]

    def _buffer(self, name: str, shape: tuple, dtype: np.dtype) -> tuple[np.ndarray, int]:
        """(pinned host array, device pointer) for `name`, reallocated only when (shape, dtype) changes."""
        pair = self._buffers.get(name, shape, dtype)
        return pair.host.array, pair.device.ptr

    def _check(self, result: Any, what: str) -> Any:
        return cuda_check(result, what)

    # ----- device path: frames in, masks out --------------------------------------------------------------
    @property
    def frames_on_device(self) -> bool:
        """True when predict_frames can run: the backend is open, device_frames was not turned off, and edgeseg._C
        has its CUDA kernels (a GPU is visible, or the engine could not have been loaded)."""
        return self._open and self._device_frames and ops.cuda_available()

    def predict_frames(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """BGR uint8 (H, W, 3) frames of any size -> uint8 masks at the model's input resolution (logits engines
        with output_stride 1: at the logits' resolution), pre- and post-processed on the GPU.

        Batches of up to the engine's largest batch; one stream synchronize per batch. The masks returned are
        fresh arrays (copies of the pinned mask buffer), safe to keep. `stage_ms` gets the batches' summed stage
        times: preprocess (frame staging + upload + resize/normalise kernel), infer (the engine), postprocess
        (argmax kernel + download + copy-out), from CUDA events on the backend's stream plus perf_counter for the
        host copy-out. With a CUDA graph the device work is one launch: 'infer' then times the whole graph,
        'preprocess' the host staging and 'postprocess' the host copy-out.
        """
        if not self._open:
            raise EdgeSegError(f"{self.name} backend for {self.path} is closed")
        if not self.frames_on_device:
            raise BackendUnavailableError(
                "predict_frames needs edgeseg._C built with its CUDA kernels (reinstall with nvcc on PATH) and "
                "device_frames=True; Segmenter falls back to the CPU path by itself")
        frames = list(frames)
        for index, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                got = getattr(frame, "shape", type(frame).__name__), getattr(frame, "dtype", "")
                raise DataError(f"frame {index} must be a BGR uint8 HxWx3 array, got {got}")
            if frame.shape[0] < 1 or frame.shape[1] < 1:
                raise DataError(f"frame {index} is empty (shape {frame.shape})")
        totals = dict.fromkeys(STAGES, 0.0)
        masks: list[np.ndarray] = []
        limit = self._batch_limit() or max(len(frames), 1)
        start = time.perf_counter()
        for first in range(0, len(frames), limit):
            masks.extend(self._run_batch(frames[first : first + limit], totals))
        self.stage_ms = totals
        self.last_infer_ms = (time.perf_counter() - start) * 1e3
        return masks

    def _batch_limit(self) -> int | None:
        if self.max_batch is not None:
            return self.max_batch
        profile = self.sidecar.get("profile") or {}
        return int(profile["max"][0]) if profile.get("max") else None

    def _plan(self, frames: list[np.ndarray]) -> _Batch:
        """Shapes, tensor addresses and buffers for this batch; allocates only when a (shape, dtype) key changes."""
        meta, spec, out = self.meta, self.inputs[0], self.outputs[0]
        n, (height, width) = len(frames), meta.input_size
        uint8_input = meta.input_format == "uint8_nhwc_bgr"
        if uint8_input and spec.dtype != np.uint8:
            raise ModelFileError(f"{self.path.name}: meta says uint8 NHWC input but the engine takes {spec.dtype}")
        if not uint8_input and spec.dtype not in (np.float32, np.float16):
            raise ModelFileError(f"{self.path.name}: input '{spec.name}' is {spec.dtype}; the GPU preprocess kernel "
                                 "writes float32 or float16")
        in_shape = (n, height, width, 3) if uint8_input else (n, 3, height, width)
        if not self._context.set_input_shape(spec.name, in_shape):
            raise ConfigError(f"shape {in_shape} is outside the engine's optimisation profile "
                              f"(sidecar 'profile': {self.sidecar.get('profile')})")
        # Keyed by batch size as well, so that a full batch and the remainder (4 + 1 frames) do not evict each other.
        inp = self._buffers.get((spec.name, n), in_shape, spec.dtype)
        self._context.set_tensor_address(spec.name, inp.device.ptr)
        outputs = []
        for other in self.outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(other.name))
            pair = self._buffers.get((other.name, n), shape, other.dtype)
            self._context.set_tensor_address(other.name, pair.device.ptr)
            outputs.append((pair, shape))
        out_pair, out_shape = outputs[0]
        staging = [] if uint8_input else [self._buffers.get(("frame", i), f.shape, np.uint8) for i, f in enumerate(frames)]
        mask = None
        if meta.output_format == "logits":
            if len(out_shape) != 4 or out.dtype not in (np.float32, np.float16):
                raise ModelFileError(f"{self.path.name}: logits output '{out.name}' is {out.dtype} {out_shape}; "
                                     "the GPU argmax needs float32/float16 (N, C, h, w)")
            classes, h, w = out_shape[1:]
            if classes > 256:
                raise ConfigError(f"{classes} classes do not fit a uint8 mask")
            stride = meta.output_stride
            if stride > 1 and (height > h * stride or width > w * stride):
                raise ModelFileError(f"{self.path.name}: logits {(h, w)} times output_stride {stride} are smaller "
                                     f"than the input size {(height, width)}")
            mask = self._buffers.get((_MASK, n), (n, height, width) if stride > 1 else (n, h, w), np.uint8)
        # A CUDA graph bakes in shapes and addresses: it stays valid while both are unchanged.
        pointers = tuple(b.device.ptr for b in [inp, *(pair for pair, _ in outputs), *staging, *([mask] if mask else [])])
        key = (in_shape, tuple(f.shape for f in frames), out_shape, pointers)
        return _Batch(frames, key, inp, out_pair, out_shape, staging, mask)

    def _stage(self, batch: _Batch) -> None:
        """Host part: frames into pinned memory (uint8-input engines: resized there with cv2, at model size)."""
        height, width = self.meta.input_size
        if not batch.staging:
            for index, frame in enumerate(batch.frames):
                cv2.resize(frame, (width, height), dst=batch.inp.host.array[index], interpolation=cv2.INTER_LINEAR)
        else:
            for frame, pair in zip(batch.frames, batch.staging):
                np.copyto(pair.host.array, frame)

    def _enqueue(self, batch: _Batch, timer: EventTimer | None) -> None:
        """Device part, all on self._stream: upload, preprocess kernels, engine, post-processing kernels, download."""
        from edgeseg import _C

        cudart, stream = self._cudart, self._stream
        handle, h2d, d2h = int(stream), cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        mark = timer.mark if timer is not None else (lambda name: None)
        meta = self.meta
        height, width = meta.input_size
        mark("start")
        if not batch.staging:
            cuda_check(cudart.cudaMemcpyAsync(batch.inp.device.ptr, batch.inp.host.ptr, batch.inp.host.nbytes, h2d,
                                              stream), "cudaMemcpyAsync H2D (input)")
        fp16_in = batch.inp.device.dtype == np.float16
        for index, pair in enumerate(batch.staging):
            fh, fw = pair.host.shape[:2]
            cuda_check(cudart.cudaMemcpyAsync(pair.device.ptr, pair.host.ptr, pair.host.nbytes, h2d, stream),
                       "cudaMemcpyAsync H2D (frame)")
            _C.preprocess_cuda(pair.device.ptr, fh, fw, fw * 3, batch.inp.device.item_ptr(index), height, width,
                               list(meta.mean), list(meta.std), fp16_in, handle)
        mark("preprocess")
        if not self._context.execute_async_v3(handle):
            raise EdgeSegError(f"TensorRT execution of {self.path.name} failed (see the TensorRT log)")
        mark("infer")
        if batch.mask is None:  # classmap engine: the output is the mask
            cuda_check(cudart.cudaMemcpyAsync(batch.out.host.ptr, batch.out.device.ptr, batch.out.host.nbytes, d2h,
                                              stream), "cudaMemcpyAsync D2H (classmap)")
        else:
            fp16_out = batch.out.device.dtype == np.float16
            classes, h, w = batch.out_shape[1:]
            for index in range(len(batch.frames)):
                src, dst = batch.out.device.item_ptr(index), batch.mask.device.item_ptr(index)
                if meta.output_stride > 1:
                    _C.upsample_argmax_cuda(src, fp16_out, classes, h, w, meta.output_stride, dst, height, width,
                                            handle)
                else:
                    _C.argmax_cuda(src, fp16_out, classes, h, w, dst, False, handle)
            cuda_check(cudart.cudaMemcpyAsync(batch.mask.host.ptr, batch.mask.device.ptr, batch.mask.host.nbytes, d2h,
                                              stream), "cudaMemcpyAsync D2H (mask)")
        mark("postprocess")

    def _run_batch(self, frames: list[np.ndarray], totals: dict[str, float]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        batch = self._plan(frames)
        self._stage(batch)
        t1 = time.perf_counter()
        if self._timer is None:
            self._timer = EventTimer(self._stream)
        timer = self._timer
        timer.reset()
        graph = self._graph_for(batch) if self._cuda_graph else None
        if graph is not None:
            timer.mark("start")
            cuda_check(self._cudart.cudaGraphLaunch(graph, self._stream), "cudaGraphLaunch")
            timer.mark("infer")
        else:
            self._enqueue(batch, timer)
        cuda_check(self._cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        t2 = time.perf_counter()
        if batch.mask is None:
            masks = [np.ascontiguousarray(one, dtype=np.uint8).copy() for one in batch.out.host.array]
        else:
            masks = [one.copy() for one in batch.mask.host.array]
        t3 = time.perf_counter()
        gpu_ms = timer.elapsed_ms()
        if graph is not None:
            totals["preprocess"] += (t1 - t0) * 1e3
            totals["infer"] += gpu_ms["infer"]
            totals["postprocess"] += (t3 - t2) * 1e3
        else:
            totals["preprocess"] += (t1 - t0) * 1e3 + gpu_ms["preprocess"]
            totals["infer"] += gpu_ms["infer"]
            totals["postprocess"] += gpu_ms["postprocess"] + (t3 - t2) * 1e3
        if self._cuda_graph and graph is None:
            self._capture(batch)  # after this warm-up run, as TensorRT requires before capturing enqueueV3
        return masks

    # ----- CUDA graph ---------------------------------------------------------------------------------------
    def _graph_for(self, batch: _Batch) -> Any:
        """The instantiated graph for this batch's shapes and buffers, or None (not captured yet, or capture failed)."""
        entry = self._graphs.get(batch.key)
        return entry[1] if entry is not None else None

    def _capture(self, batch: _Batch) -> None:
        cudart, stream = self._cudart, self._stream
        capturable = getattr(self._context, "is_stream_capturable", None)
        if capturable is not None and not capturable(int(stream)):
            self._graph_failed("the execution context says its stream is not capturable (TensorRT-RTX needs "
                               "engines built with REQUIRE_USER_ALLOCATION)")
            return
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        try:
            cuda_check(cudart.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")
        except CudaError as exc:
            self._graph_failed(str(exc))
            return
        failure = None
        try:
            self._enqueue(batch, None)
        except (EdgeSegError, RuntimeError) as exc:  # our CudaError / TensorRT failure, or edgeseg._C.CudaError
            failure = f"{type(exc).__name__}: {exc}"
        err, graph = cudart.cudaStreamEndCapture(stream)  # always end it, or the stream stays capturing
        if failure is None and err != cudart.cudaError_t.cudaSuccess:
            failure = f"cudaStreamEndCapture failed: {cudart.cudaGetErrorString(err)[1].decode()}"
        if failure is None:
            try:
                graph_exec = cuda_check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
            except CudaError as exc:
                failure = str(exc)
        if failure is not None:
            if graph is not None and err == cudart.cudaError_t.cudaSuccess:
                cudart.cudaGraphDestroy(graph)
            cudart.cudaGetLastError()  # clear a capture error so later calls report their own
            self._graph_failed(failure)
            return
        if len(self._graphs) >= _MAX_GRAPHS:  # shapes keep changing: drop the oldest graph
            self._drop_graph(next(iter(self._graphs)))
        self._graphs[batch.key] = (graph, graph_exec)

    def _graph_failed(self, why: str) -> None:
        log.warning("CUDA graph capture of %s failed (%s); running predict_frames without a CUDA graph",
                    self.path.name, why)
        self._cuda_graph = False

    def _drop_graph(self, key: tuple) -> None:
        graph, graph_exec = self._graphs.pop(key)
        self._cudart.cudaGraphExecDestroy(graph_exec)
        self._cudart.cudaGraphDestroy(graph)

    def _close_impl(self) -> None:
        if self._stream is not None:
            self._cudart.cudaStreamSynchronize(self._stream)
        for key in list(self._graphs):
            self._drop_graph(key)
        if self._timer is not None:
            self._timer.free()
            self._timer = None
        self._buffers.clear()
        self._context = self._engine = None
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
