"""TensorRT backend for .engine files built by `edgeseg export --engine` (TensorRT, TensorRT-RTX, lean/dispatch).

The runner: it loads an engine and runs numpy batches (`infer`) or BGR frames (`predict_frames`, the GPU
pre/post-processing path in `tensorrt_device`). The other jobs live next to it:
- `edgeseg.sidecar`: the sidecar `<engine>.json`, checked against the engine (sha256) before the GPU is touched;
- `edgeseg.runtime.trt_flavours`: which TensorRT flavour may run the engine (option `flavour=`, default 'auto');
- `tensorrt_compat`: refusing an engine built for another TensorRT version or GPU, saying how to rebuild it;
- `rtx_runtime_cache`: TensorRT-RTX's JIT kernels kept next to the engine, so the second start is fast;
- `cuda_graphs`: CUDA-graph capture and replay of predict_frames (`cuda_graph=True`);
- `edgeseg.runtime.gpu`: CUDA through cuda-python or pycuda (option `cuda_api=`, or $EDGESEG_CUDA_API).

Ownership (Backend.output_reused): by default `infer` returns an array the caller owns. `zero_copy=True` returns a
view of the pinned output buffer instead, valid until the next `infer`; its memory is never freed under the view.
Buffers are cached on the full (name, shape, dtype) with an LRU bound, so alternating batch sizes reuse them.
Threads: the GPU device is made current at the start of every call, on whichever thread makes it, and calls are
serialised (one stream, one set of buffers).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg._optional import require
from edgeseg.errors import BackendUnavailableError, ConfigError, CudaError, EdgeSegError, ModelFileError
from edgeseg.model_facts import ModelFacts
from edgeseg.runtime import ops
from edgeseg.runtime.backends.base import Backend, TensorSpec
from edgeseg.runtime.backends.cuda_graphs import GraphCache
from edgeseg.runtime.backends.engine_io import engine_tensors
from edgeseg.runtime.backends.model_file import check_model_file
from edgeseg.runtime.backends.rtx_runtime_cache import RuntimeCacheFile
from edgeseg.runtime.backends.tensorrt_compat import check_placement, check_validity, this_machine
from edgeseg.runtime.backends.tensorrt_device import CudaKernels, DevicePath
from edgeseg.runtime.gpu import CudaApi, cuda_api, pair_cache
from edgeseg.runtime.plan import STAGES, ProcessingPlan, check_frame
from edgeseg.runtime.trt_flavours import choose_runtime_flavour, import_trt
from edgeseg.sidecar import EngineSidecar, foreign_sidecar, read_sidecar, sidecar_path

log = logging.getLogger(__name__)

NEEDS_GPU = "a .engine file needs an NVIDIA GPU and TensorRT; use the .onnx with ONNX Runtime instead"


def _specs(tensors: Sequence[Any]) -> list[TensorSpec]:
    return [TensorSpec(t.name, tuple(t.shape), t.np_dtype) for t in tensors]


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT / TensorRT-RTX engine on one GPU (see the module docstring)."""

    name = "tensorrt"

    def __init__(self, path, *, device: int = 0, device_frames: bool = True, cuda_graph: bool = False,
                 flavour: str = "auto", cuda_api: str | CudaApi | None = None, zero_copy: bool = False,
                 runtime_cache: str | Path | bool | None = None, max_buffers: int = 32,
                 kernels: CudaKernels | None = None, model_facts: ModelFacts | None = None) -> None:
        """`device_frames=False` keeps Segmenter on the CPU pre/post-processing path; `cuda_graph=True` replays
        predict_frames' device work as CUDA graphs; `flavour` picks the TensorRT runtime ('auto': from what is
        importable and what the sidecar allows); `cuda_api` 'cuda-python' or 'pycuda' (default: $EDGESEG_CUDA_API,
        else whichever is importable); `zero_copy` makes `infer` return its reused pinned buffer; `runtime_cache`
        overrides the sidecar's TensorRT-RTX cache file (a path, or False for none); `max_buffers` bounds the
        buffer cache; `kernels` replaces edgeseg._C's CUDA kernels (tests); `model_facts` completes or overrides the
        sidecar's ModelMeta, and lets an engine without a sidecar (trtexec) run (edgeseg.model_facts)."""
        self._device = int(device)
        self._device_frames = bool(device_frames)
        self._cuda_graph = bool(cuda_graph)
        self._flavour_request = flavour
        self._api_request = cuda_api
        self.output_reused = bool(zero_copy)
        self._runtime_cache_request = runtime_cache
        self._max_buffers = max_buffers
        self._kernels = kernels
        self._lock = threading.RLock()
        self._stream: Any = None
        self._api: CudaApi | None = None
        self._runtime_cache: RuntimeCacheFile | None = None
        self._device_path: DevicePath | None = None
        self._inferred = False
        self.flavour = ""
        self.stage_ms: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        super().__init__(path, model_facts)

    # ----- loading ------------------------------------------------------------------------------------
    def _load_impl(self) -> None:
        check_model_file(self.path, "engine")
        # File checks first: they need no GPU. An engine from another tool (no sidecar) run with the user's model
        # facts gets its sidecar from the engine itself once deserialized (foreign_sidecar).
        foreign = not sidecar_path(self.path).is_file() and bool(self.model_facts)
        if not foreign:
            self._adopt(read_sidecar(self.path))
        trt = self._import_flavour(foreign)
        api = self._open_device()
        info = api.device_info(self._device)
        here = this_machine(self.flavour, trt.__version__, info)
        if not foreign:
            check_placement(self.sidecar, self.path.name, self.flavour, trt.__version__, info)
            self._check_graph_request(api)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        # (A foreign engine has no sidecar hash to vouch for it: its host code is never allowed.)
        if not foreign and self.sidecar.version_compatible and self.flavour in ("tensorrt", "tensorrt_dispatch"):
            # A version-compatible plan carries the lean runtime as host code; the sha256 check above ties it to the
            # sidecar this EdgeSeg export wrote, which is the trust TensorRT asks for.
            self._runtime.engine_host_code_allowed = True
        blob = self.path.read_bytes()
        if not foreign:
            check_validity(trt, self._runtime, blob, self.path.name, self.sidecar, here)
        self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            if foreign:
                built = "built by another tool, for another TensorRT or GPU?"
            else:
                built = f"built for {self.sidecar.flavour} {self.sidecar.trt_version}"
            raise ModelFileError(f"{self.flavour} could not deserialize {self.path} ({built}; this is {here}; see the "
                                 "TensorRT log above): rebuild it with `edgeseg export CKPT --out DIR --engine` on "
                                 "this machine")
        if foreign:
            inputs, outputs, profile = engine_tensors(trt, self._engine, self.path.name)
            self.inputs, self.outputs = _specs(inputs), _specs(outputs)
            meta = self._resolve_meta(None, f"engine {self.path.name} has no sidecar {sidecar_path(self.path).name}")
            self._adopt(foreign_sidecar(self.path, runtime_flavour=self.flavour, trt_version=trt.__version__,
                                        inputs=inputs, outputs=outputs, meta=meta, profile=profile,
                                        gpu_name=info.name, compute_capability=info.compute_capability),
                        resolved=True)
            self._check_graph_request(api)
        self._check_tensors()
        self._context = self._create_context()
        self._stream = api.stream_create()
        self._buffers = pair_cache(api, self._max_buffers)

    def _adopt(self, sidecar: EngineSidecar, resolved: bool = False) -> None:
        """Take the engine's sidecar, its ModelMeta checked against its tensors and overridden by model_facts
        (`resolved`: that was done already)."""
        self.inputs, self.outputs = _specs(sidecar.inputs), _specs(sidecar.outputs)
        meta = sidecar.meta if resolved else self._resolve_meta(sidecar.meta, f"engine {self.path.name}'s sidecar")
        self.sidecar = sidecar if meta == sidecar.meta else dataclasses.replace(sidecar, meta=meta)
        self.meta = meta
        self.plan = ProcessingPlan.from_meta(self.meta, self.inputs[0].dtype)

    def _import_flavour(self, foreign: bool = False) -> Any:
        """The TensorRT module to run with: one the sidecar allows, or for a foreign engine (no sidecar) the one
        asked for, else the first importable builder flavour (which must be the one that built it)."""
        try:
            if foreign:
                trt, self.flavour = import_trt(self._flavour_request)
                return trt
            self.flavour = choose_runtime_flavour(self.sidecar.flavour, self.sidecar.version_compatible,
                                                  self._flavour_request)
            return require(self.flavour, f"TensorRT ({self.flavour})")
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"{NEEDS_GPU} ({exc})") from exc

    def _open_device(self) -> CudaApi:
        try:
            api = self._api = cuda_api(self._api_request)
            count = api.device_count()
        except (BackendUnavailableError, CudaError) as exc:
            raise BackendUnavailableError(f"{NEEDS_GPU} (CUDA: {exc})") from exc
        if count < 1:
            raise BackendUnavailableError(f"{NEEDS_GPU} (CUDA: no CUDA device found)")
        if self._device >= count:
            raise ConfigError(f"CUDA device {self._device} requested, but only {count} device(s) are visible")
        api.set_device(self._device)
        return api

    def _check_graph_request(self, api: CudaApi) -> None:
        if not self._cuda_graph:
            return
        if not api.supports_graphs:
            raise ConfigError(f"cuda_graph=True needs CUDA graph capture, which the {api.name} binding lacks; use "
                              "cuda_api='cuda-python' (or EDGESEG_CUDA_API=cuda-python), or run without cuda_graph")
        if self.sidecar.flavour == "tensorrt_rtx" and not self.sidecar.cuda_graph_ready:
            raise ConfigError(f"{self.path.name} is a TensorRT-RTX engine built without REQUIRE_USER_ALLOCATION "
                              "(sidecar cuda_graph_ready is false), so its stream can never be captured: rebuild it "
                              "with `edgeseg export CKPT --out DIR --engine`, or run without cuda_graph")

    def _check_tensors(self) -> None:
        names = {self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)}
        expected = {s.name for s in self.inputs + self.outputs}
        if names != expected:
            raise ModelFileError(f"engine tensors {sorted(names)} differ from its sidecar's {sorted(expected)}")

    def _create_context(self) -> Any:
        cache_path = self._runtime_cache_path()
        if cache_path is not None and hasattr(self._engine, "create_runtime_config"):
            self._runtime_cache = RuntimeCacheFile(cache_path)
            context = self._engine.create_execution_context(self._runtime_cache.attach(self._engine))
        else:
            context = self._engine.create_execution_context()
        if context is None:
            raise BackendUnavailableError(f"{self.flavour} could not create an execution context for {self.path} "
                                          "(out of GPU memory?)")
        return context

    def _runtime_cache_path(self) -> Path | None:
        request = self._runtime_cache_request
        if request is False or self.flavour != "tensorrt_rtx":
            return None
        if request not in (None, True):
            return Path(request)  # type: ignore[arg-type]
        return self.path.parent / self.sidecar.runtime_cache if self.sidecar.runtime_cache else None

    @property
    def runtime_cache(self) -> RuntimeCacheFile | None:
        """TensorRT-RTX's runtime cache file (None for other flavours or when there is none)."""
        return self._runtime_cache

    # ----- inference -----------------------------------------------------------------------------------
    def _enter(self) -> CudaApi:
        """Make this backend's device current on the calling thread (cheap; CUDA's current device is per thread)."""
        assert self._api is not None  # set by _load_impl, which succeeded if we are open
        self._api.set_device(self._device)
        return self._api

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            api = self._enter()
            spec = self.inputs[0]
            if not self._context.set_input_shape(spec.name, tuple(batch.shape)):
                raise ConfigError(f"shape {batch.shape} is outside the engine's optimisation profile "
                                  f"(sidecar 'profile': {self.sidecar.profile})")
            self._buffers.begin_round()
            inp = self._buffers.get(spec.name, batch.shape, batch.dtype)
            np.copyto(inp.host.array, batch)
            api.memcpy_htod_async(inp.device.ptr, inp.host.array, self._stream)
            self._context.set_tensor_address(spec.name, inp.device.ptr)
            outputs = []
            for out in self.outputs:
                pair = self._buffers.get(out.name, tuple(self._context.get_tensor_shape(out.name)), out.dtype)
                self._context.set_tensor_address(out.name, pair.device.ptr)
                outputs.append(pair)
            if not self._context.execute_async_v3(api.stream_handle(self._stream)):
                raise CudaError(f"TensorRT execution of {self.path.name} failed (see the TensorRT log above)")
            for pair in outputs:
                api.memcpy_dtoh_async(pair.host.array, pair.device.ptr, self._stream)
            api.stream_synchronize(self._stream)
            self._after_first_inference()
            result = outputs[0].host.array
            return result if self.output_reused else np.array(result, copy=True)

    def _after_first_inference(self) -> None:
        if not self._inferred:
            self._inferred = True
            if self._runtime_cache is not None:
                self._runtime_cache.save()  # the kernels compiled by this first run

    # ----- device path: frames in, masks out --------------------------------------------------------------
    @property
    def frames_on_device(self) -> bool:
        """True when predict_frames can run: the backend is open, device_frames was not turned off, and the CUDA
        kernels are there (edgeseg._C with CUDA and a visible GPU, or kernels given to the constructor)."""
        return self._open and self._device_frames and (self._kernels is not None or ops.cuda_available())

    @property
    def graphs(self) -> GraphCache | None:
        """The CUDA-graph cache of predict_frames (None without cuda_graph=True or before the first call)."""
        return self._device_path.graphs if self._device_path is not None else None

    def predict_frames(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """BGR uint8 (H, W, 3) frames of any size -> uint8 masks at the model's input resolution (logits engines
        with output_stride 1: at the logits' resolution), pre- and post-processed on the GPU (tensorrt_device).

        Batches of up to the engine's largest batch; one stream synchronize per batch. The masks are new arrays the
        caller owns. `stage_ms` gets the batches' summed stage times (CUDA events plus host timers); with a CUDA
        graph the device work is one launch, timed as 'infer'."""
        if not self._open:
            raise EdgeSegError(f"{self.name} backend for {self.path} is closed")
        if not self.frames_on_device:
            raise BackendUnavailableError(
                "predict_frames needs edgeseg._C built with its CUDA kernels (reinstall with nvcc on PATH) and "
                "device_frames=True; Segmenter falls back to the CPU path by itself")
        frames = [check_frame(frame, index) for index, frame in enumerate(frames)]
        with self._lock:
            self._enter()
            start = time.perf_counter()
            masks, self.stage_ms = self._frames_path().run(frames, self._batch_limit() or max(len(frames), 1))
            self.last_infer_ms = (time.perf_counter() - start) * 1e3
            self._after_first_inference()
        return masks

    def _frames_path(self) -> DevicePath:
        if self._device_path is None:
            assert self._api is not None
            graphs = GraphCache(self._api, self._stream, self.path.name) if self._cuda_graph else None
            self._device_path = DevicePath(
                api=self._api, stream=self._stream, context=self._context, plan=self.plan, input_spec=self.inputs[0],
                outputs=self.outputs, buffers=self._buffers, engine_name=self.path.name, profile=self.sidecar.profile,
                graphs=graphs, kernels=self._kernels)
        return self._device_path

    def _batch_limit(self) -> int | None:
        if self.max_batch is not None:
            return self.max_batch
        profile = self.sidecar.profile
        return int(profile[-1][0]) if profile else None

    # ----- closing ----------------------------------------------------------------------------------------
    def _close_impl(self) -> None:
        with self._lock:
            api = self._api
            if api is None:
                return
            self._enter()
            if self._stream is not None:
                api.stream_synchronize(self._stream)
            if self._device_path is not None:
                self._device_path.close()
                self._device_path = None
            self._buffers.clear()  # pinned memory a zero-copy caller still views is freed with its last view
            if self._runtime_cache is not None:
                self._runtime_cache.save()
            self._context = self._engine = None
            if self._stream is not None:
                api.stream_destroy(self._stream)
                self._stream = None
            api.release()
