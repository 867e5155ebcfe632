"""The TensorRT runner's GPU pre/post-processing path: BGR uint8 frames in, uint8 masks out, one sync per batch.

It executes a ProcessingPlan (edgeseg.runtime.plan) on the GPU and takes every decision from it:
- float graphs: each frame crosses the bus once as uint8 (pinned staging -> device) and edgeseg._C's
  `preprocess_cuda` resizes, converts BGR->RGB and normalises it into the engine's input (float32 or float16);
- graphs that normalise in-graph (`plan.normalize_in_graph`, uint8 NHWC input): frames are resized by the plan on the
  CPU straight into the pinned input buffer (there is no uint8 resize kernel) and uploaded at model size;
- logits: `argmax_cuda`; low-resolution logits (`plan.output == "lowres"`): `upsample_argmax_cuda` at
  `plan.output_stride`; an in-graph argmax (`plan.argmax_in_graph`): no kernel, the engine's output is the mask.
The uint8 mask crosses back and is copied out: the masks returned are new arrays the caller owns.
With a GraphCache the whole device part is captured once per batch key and replayed as one launch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.errors import ConfigError, CudaError, EdgeSegError, ModelFileError
from edgeseg.runtime.backends.base import TensorSpec
from edgeseg.runtime.backends.cuda_graphs import GraphCache
from edgeseg.runtime.gpu.api import CudaApi
from edgeseg.runtime.gpu.buffers import BufferCache, EventTimer, HostDevicePair
from edgeseg.runtime.plan import STAGES, ProcessingPlan

_MASK = "__edgeseg_mask__"
_FRAME = "__edgeseg_frame__"


class CudaKernels:
    """edgeseg._C's CUDA kernels with their errors as CudaError. Tests pass a host-memory stand-in instead."""

    def __init__(self, module: ModuleType | None = None) -> None:
        self._module = module

    @property
    def module(self) -> ModuleType:
        if self._module is None:
            from edgeseg import _C

            self._module = _C
        return self._module

    def _launch(self, what: str, call: Callable[..., None], *args: Any) -> None:
        try:
            call(*args)
        except EdgeSegError:
            raise
        except RuntimeError as exc:  # edgeseg._C reports CUDA failures as RuntimeError subclasses
            raise CudaError(f"{what} kernel failed: {exc}") from exc

    def preprocess(self, src: int, height: int, width: int, pitch: int, dst: int, out_h: int, out_w: int,
                   mean: Sequence[float], std: Sequence[float], fp16: bool, stream: int) -> None:
        self._launch("preprocess", self.module.preprocess_cuda, src, height, width, pitch, dst, out_h, out_w,
                     list(mean), list(std), fp16, stream)

    def argmax(self, src: int, fp16: bool, classes: int, h: int, w: int, dst: int, stream: int) -> None:
        self._launch("argmax", self.module.argmax_cuda, src, fp16, classes, h, w, dst, False, stream)

    def upsample_argmax(self, src: int, fp16: bool, classes: int, h: int, w: int, stride: int, dst: int,
                        out_h: int, out_w: int, stream: int) -> None:
        self._launch("upsample_argmax", self.module.upsample_argmax_cuda, src, fp16, classes, h, w, stride, dst,
                     out_h, out_w, stream)


@dataclass
class _Batch:
    """What one batch runs on: buffers from the cache, fixed while the graph key stays the same."""

    frames: list[np.ndarray]
    key: tuple
    inp: HostDevicePair
    out: HostDevicePair
    out_shape: tuple[int, ...]
    staging: list[HostDevicePair]  # empty when the graph normalises (frames resized on the host)
    mask: HostDevicePair | None  # None when the graph ends in argmax: its output is the mask


class DevicePath:
    """Runs a ProcessingPlan around a TensorRT execution context on the GPU (see the module docstring)."""

    def __init__(self, *, api: CudaApi, stream: Any, context: Any, plan: ProcessingPlan, input_spec: TensorSpec,
                 outputs: Sequence[TensorSpec], buffers: BufferCache[HostDevicePair], engine_name: str,
                 profile: Any = None, graphs: GraphCache | None = None, kernels: CudaKernels | None = None) -> None:
        self._api, self._stream, self._context, self.plan = api, stream, context, plan
        self._spec, self._outputs, self._buffers = input_spec, list(outputs), buffers
        self._name, self._profile, self.graphs = engine_name, profile, graphs
        self._kernels = kernels or CudaKernels()
        self._timer: EventTimer | None = None
        if plan.input_dtype != input_spec.dtype:
            raise ModelFileError(f"{engine_name}: input '{input_spec.name}' is {input_spec.dtype}, the processing "
                                 f"plan writes {plan.input_dtype}")

    def run(self, frames: list[np.ndarray], limit: int) -> tuple[list[np.ndarray], dict[str, float]]:
        """Masks for `frames` in batches of at most `limit`, and the summed stage times in ms."""
        totals = dict.fromkeys(STAGES, 0.0)
        masks: list[np.ndarray] = []
        for first in range(0, len(frames), limit):
            masks.extend(self._run_batch(frames[first : first + limit], totals))
        return masks, totals

    def close(self) -> None:
        if self.graphs is not None:
            self.graphs.clear()
        if self._timer is not None:
            self._timer.free()
            self._timer = None

    # ----- one batch ---------------------------------------------------------------------------------------------
    def _run_batch(self, frames: list[np.ndarray], totals: dict[str, float]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        self._buffers.begin_round()
        batch = self._prepare(frames)
        self._stage(batch)
        t1 = time.perf_counter()
        if self._timer is None:
            self._timer = EventTimer(self._api, self._stream)
        timer = self._timer
        timer.reset()
        replayed = self._replay(batch, timer)
        if not replayed:
            self._enqueue(batch, timer.mark)
        self._api.stream_synchronize(self._stream)
        t2 = time.perf_counter()
        masks = self._collect(batch)
        t3 = time.perf_counter()
        gpu_ms = timer.elapsed_ms()
        host_pre, host_post = (t1 - t0) * 1e3, (t3 - t2) * 1e3
        if replayed:  # one launch: the graph is timed as 'infer'
            totals["preprocess"] += host_pre
            totals["infer"] += gpu_ms["infer"]
            totals["postprocess"] += host_post
        else:
            totals["preprocess"] += host_pre + gpu_ms["preprocess"]
            totals["infer"] += gpu_ms["infer"]
            totals["postprocess"] += gpu_ms["postprocess"] + host_post
            if self.graphs is not None and self.graphs.enabled:  # after this warm-up run, as TensorRT requires
                self.graphs.capture(batch.key, lambda: self._enqueue(batch, None), self._capturable)
        return masks

    def _replay(self, batch: _Batch, timer: EventTimer) -> bool:
        if self.graphs is None or not self.graphs.enabled:
            return False
        timer.mark("start")
        if not self.graphs.launch(batch.key):
            timer.reset()
            return False
        timer.mark("infer")
        return True

    def _capturable(self) -> bool:
        probe = getattr(self._context, "is_stream_capturable", None)
        return True if probe is None else bool(probe(self._api.stream_handle(self._stream)))

    def _prepare(self, frames: list[np.ndarray]) -> _Batch:
        """Shapes, tensor addresses and buffers for this batch; allocates only for a (name, shape, dtype) not seen
        recently."""
        plan, spec, n = self.plan, self._spec, len(frames)
        height, width = plan.input_size
        in_shape = plan.input_shape(n)
        if not self._context.set_input_shape(spec.name, in_shape):
            raise ConfigError(f"shape {in_shape} is outside {self._name}'s optimisation profile ({self._profile})")
        inp = self._buffers.get(spec.name, in_shape, spec.dtype)
        self._context.set_tensor_address(spec.name, inp.device.ptr)
        outputs = []
        for out in self._outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(out.name))
            pair = self._buffers.get(out.name, shape, out.dtype)
            self._context.set_tensor_address(out.name, pair.device.ptr)
            outputs.append((pair, shape))
        out_pair, out_shape = outputs[0]
        staging = [] if plan.normalize_in_graph else [self._buffers.get((_FRAME, i), f.shape, np.uint8)
                                                      for i, f in enumerate(frames)]
        mask = None
        if plan.argmax_in_graph:
            if len(out_shape) != 3 or self._outputs[0].dtype != np.uint8:
                raise ModelFileError(f"{self._name}: a classmap engine must output uint8 (N, H, W), got "
                                     f"{self._outputs[0].dtype} {out_shape}")
        else:
            mask = self._buffers.get(_MASK, self._mask_shape(out_shape, n), np.uint8)
        # A CUDA graph bakes in shapes and addresses: it stays valid while both are unchanged.
        pairs = [inp, *(pair for pair, _ in outputs), *staging, *([mask] if mask is not None else [])]
        key = (in_shape, tuple(f.shape for f in frames), out_shape, tuple(p.device.ptr for p in pairs))
        return _Batch(frames, key, inp, out_pair, out_shape, staging, mask)

    def _mask_shape(self, out_shape: tuple[int, ...], n: int) -> tuple[int, int, int]:
        plan, out = self.plan, self._outputs[0]
        height, width = plan.input_size
        if len(out_shape) != 4 or out.dtype not in (np.float32, np.float16):
            raise ModelFileError(f"{self._name}: logits output '{out.name}' is {out.dtype} {out_shape}; the GPU "
                                 "argmax needs float32/float16 (N, C, h, w)")
        classes, h, w = out_shape[1:]
        if classes > 256:
            raise ConfigError(f"{classes} classes do not fit a uint8 mask")
        if plan.output == "lowres":
            if height > h * plan.output_stride or width > w * plan.output_stride:
                raise ModelFileError(f"{self._name}: logits {(h, w)} times output_stride {plan.output_stride} are "
                                     f"smaller than the input size {(height, width)}")
            return (n, height, width)
        return (n, h, w)

    def _stage(self, batch: _Batch) -> None:
        """Host part: frames into pinned memory (in-graph normalisation: the plan's CPU resize, at model size)."""
        if not batch.staging:
            self.plan.preprocess(batch.frames, out=batch.inp.host.array)
        else:
            for frame, pair in zip(batch.frames, batch.staging):
                np.copyto(pair.host.array, frame)

    def _enqueue(self, batch: _Batch, mark: Callable[[str], None] | None) -> None:
        """Device part, all on the stream: upload, preprocess kernels, engine, post-processing kernels, download."""
        mark = mark or (lambda name: None)
        mark("start")
        self._upload(batch)
        mark("preprocess")
        if not self._context.execute_async_v3(self._api.stream_handle(self._stream)):
            raise CudaError(f"TensorRT execution of {self._name} failed (see the TensorRT log above)")
        mark("infer")
        self._postprocess(batch)
        mark("postprocess")

    def _upload(self, batch: _Batch) -> None:
        api, stream, handle, plan = self._api, self._stream, self._api.stream_handle(self._stream), self.plan
        height, width = plan.input_size
        if not batch.staging:
            api.memcpy_htod_async(batch.inp.device.ptr, batch.inp.host.array, stream)
            return
        fp16 = batch.inp.device.dtype == np.float16
        for index, pair in enumerate(batch.staging):
            fh, fw = pair.host.shape[:2]
            api.memcpy_htod_async(pair.device.ptr, pair.host.array, stream)
            self._kernels.preprocess(pair.device.ptr, fh, fw, fw * 3, batch.inp.device.item_ptr(index), height,
                                     width, plan.mean, plan.std, fp16, handle)

    def _postprocess(self, batch: _Batch) -> None:
        api, stream, handle, plan = self._api, self._stream, self._api.stream_handle(self._stream), self.plan
        if batch.mask is None:
            api.memcpy_dtoh_async(batch.out.host.array, batch.out.device.ptr, stream)
            return
        height, width = plan.input_size
        fp16 = batch.out.device.dtype == np.float16
        classes, h, w = batch.out_shape[1:]
        for index in range(len(batch.frames)):
            src, dst = batch.out.device.item_ptr(index), batch.mask.device.item_ptr(index)
            if plan.output == "lowres":
                self._kernels.upsample_argmax(src, fp16, classes, h, w, plan.output_stride, dst, height, width,
                                              handle)
            else:
                self._kernels.argmax(src, fp16, classes, h, w, dst, handle)
        api.memcpy_dtoh_async(batch.mask.host.array, batch.mask.device.ptr, stream)

    def _collect(self, batch: _Batch) -> list[np.ndarray]:
        source = batch.out.host.array if batch.mask is None else batch.mask.host.array
        if batch.mask is None:  # an in-graph argmax: its ids are checked like the CPU path's (ProcessingPlan)
            self.plan.check_class_ids(source[: len(batch.frames)])
        return [np.array(one, dtype=np.uint8, copy=True) for one in source]
