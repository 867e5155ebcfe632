"""ONNX Runtime backend: runs .onnx files on the CPU, CUDA or TensorRT execution provider (EP).

ONNX Runtime quietly falls back to the CPU when an EP it was asked for is missing (CPU-only wheel) or cannot start
(CUDA/cuDNN/TensorRT libraries not found). EdgeSeg never does: an explicit request for the CUDA or TensorRT EP is
checked against `get_available_providers()` before the session exists and against `session.get_providers()` after,
and fails with BackendUnavailableError. 'auto' takes the best EP available and logs which one it got.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg._optional import require
from edgeseg.config import META_KEY, ModelMeta
from edgeseg.errors import BackendUnavailableError, ConfigError, ModelFileError
from edgeseg.model_facts import ModelFacts
from edgeseg.runtime.backends.model_file import check_model_file
from edgeseg.runtime.backends.base import Backend, TensorSpec

log = logging.getLogger(__name__)

CPU_EP, CUDA_EP, TRT_EP = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"

# provider argument -> (ORT execution provider, the backend name it reports). Order = what 'auto' prefers.
PROVIDERS: dict[str, tuple[str, str]] = {
    "tensorrt": (TRT_EP, "onnxruntime-trt"),
    "cuda": (CUDA_EP, "onnxruntime-cuda"),
    "cpu": (CPU_EP, "onnxruntime"),
}
_BACKEND_NAME = {ep: name for ep, name in PROVIDERS.values()}

_GPU_HINT = (
    "pip install 'edgeseg[onnxruntime-gpu]' (it replaces the CPU-only 'onnxruntime' wheel: pip uninstall onnxruntime "
    "first; on Jetson use the onnxruntime-gpu wheel built for JetPack)"
)

# ONNX Runtime's tensor type names -> numpy dtypes (the graph I/O types EdgeSeg produces).
_ORT_TYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
}


def _spec(node) -> TensorSpec:  # node: onnxruntime.NodeArg
    if node.type not in _ORT_TYPES:
        raise ModelFileError(f"graph tensor '{node.name}' has type {node.type}, which EdgeSeg does not handle")
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorSpec(node.name, shape, _ORT_TYPES[node.type])


def select_providers(provider: str, available: Sequence[str]) -> list[str]:
    """The EP list to hand ONNX Runtime for `provider` ('auto', 'tensorrt', 'cuda' or 'cpu'), best first.

    Each GPU EP is followed by the ones below it, so nodes an EP cannot take still run (TensorRT EP -> CUDA EP ->
    CPU). 'auto' starts at the best EP in `available`; an explicit GPU EP missing from `available` is an error.
    """
    if provider != "auto" and provider not in PROVIDERS:
        raise ConfigError(f"ONNX Runtime provider must be 'auto' or one of {tuple(PROVIDERS)}, got {provider!r}")
    order = [ep for ep, _ in PROVIDERS.values()]
    if provider == "auto":
        start = next(i for i, ep in enumerate(order) if ep in available or ep == CPU_EP)
    else:
        wanted = PROVIDERS[provider][0]
        if wanted not in available:
            raise BackendUnavailableError(
                f"{PROVIDERS[provider][1]} needs ONNX Runtime's {wanted}, which this onnxruntime build does not have "
                f"(available: {', '.join(available) or 'none'}); {_GPU_HINT}"
            )
        start = order.index(wanted)
    # CUDA EP under the TensorRT EP only if present: TensorRT EP alone still works, with the CPU for the rest.
    return [ep for ep in order[start:] if ep in available or ep == CPU_EP]


def _trt_cache_dir() -> Path:
    """Where ONNX Runtime's TensorRT EP keeps built engines, so only the first session of a model pays the build."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgeseg" / "ort-trt"


class OnnxRuntimeBackend(Backend):
    """One InferenceSession on one execution provider. The output array is freshly allocated on every call.

    provider: 'cpu' (the default for direct use, a plain reference), 'cuda', 'tensorrt' or 'auto' (what
    `open_backend` and `Segmenter` use for .onnx files: TensorRT EP > CUDA EP > CPU, whichever is available).
    `name` is the backend actually running after load: 'onnxruntime' (CPU), 'onnxruntime-cuda' or 'onnxruntime-trt'.
    """

    name = "onnxruntime"

    def __init__(self, path, *, provider: str = "cpu", device_id: int = 0, threads: int | None = None,
                 model_facts: ModelFacts | None = None) -> None:
        if provider != "auto" and provider not in PROVIDERS:
            raise ConfigError(f"ONNX Runtime provider must be 'auto' or one of {tuple(PROVIDERS)}, got {provider!r}")
        self.requested = provider
        self.provider = CPU_EP  # set to the EP the session really uses, in _load_impl
        self.session_providers: list[str] = []
        self._device_id = device_id
        self._threads = threads
        super().__init__(path, model_facts)

    def _provider_options(self, ep: str) -> tuple[str, dict[str, Any]] | str:
        if ep == CUDA_EP:
            return ep, {"device_id": self._device_id}
        if ep == TRT_EP:
            # No trt_fp16_enable: an FP32 graph stays FP32; FP16 comes from exporting an FP16 model.
            options: dict[str, Any] = {"device_id": self._device_id}
            cache = _trt_cache_dir()
            try:
                cache.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning("no TensorRT EP engine cache (%s): every session rebuilds its engines", exc)
            else:
                options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache),
                               trt_timing_cache_enable=True, trt_timing_cache_path=str(cache))
            return ep, options
        return ep

    def _load_impl(self) -> None:
        ort = require("onnxruntime", "running .onnx models")
        check_model_file(self.path, "ONNX model")
        chosen = select_providers(self.requested, ort.get_available_providers())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self._threads or (os.cpu_count() or 1)
        try:
            self._session = ort.InferenceSession(
                str(self.path), options, providers=[self._provider_options(ep) for ep in chosen]
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types for corrupt or truncated files
            raise ModelFileError(f"{self.path} is not a loadable ONNX model: {exc}") from exc
        self.session_providers = list(self._session.get_providers())
        self._check_providers(chosen[0])
        self.inputs = [_spec(node) for node in self._session.get_inputs()]
        self.outputs = [_spec(node) for node in self._session.get_outputs()]
        # EdgeSeg's exports carry their ModelMeta; other tools' models get it from their graph and the user's flags
        custom = self._session.get_modelmeta().custom_metadata_map
        stored = ModelMeta.from_json(custom[META_KEY], str(self.path)) if META_KEY in custom else None
        self.meta = self._resolve_meta(stored, f"{self.path.name} has no EdgeSeg metadata ('{META_KEY}' in its "
                                               "metadata_props: not made by `edgeseg export`)")
        self._output_name = self.outputs[0].name  # there is one: _resolve_meta checked

    def _check_providers(self, wanted: str) -> None:
        """Fail (explicit request) or warn ('auto') when the session did not get the EP it was given."""
        used = next((ep for ep in self.session_providers if ep in _BACKEND_NAME), CPU_EP)
        self.provider, self.name = used, _BACKEND_NAME[used]
        if used == wanted:
            log.info("%s: ONNX Runtime on %s (requested %s)", self.path.name, used, self.requested)
            return
        why = (
            f"ONNX Runtime could not start {wanted} for {self.path.name} and fell back to {used} (session providers: "
            f"{', '.join(self.session_providers)}): its CUDA, cuDNN or TensorRT libraries are missing or do not match "
            "this onnxruntime-gpu build (see ONNX Runtime's log above)"
        )
        if self.requested != "auto":
            del self._session
            raise BackendUnavailableError(
                f"{why}; install the CUDA/cuDNN (and TensorRT) versions this onnxruntime-gpu was built for, "
                "or run `edgeseg doctor` to see what this machine has"
            )
        log.warning("%s; running on %s", why, used)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "provider": self.provider, "session_providers": list(self.session_providers)}

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self._output_name], {self.inputs[0].name: batch})[0]

    def _close_impl(self) -> None:
        del self._session
