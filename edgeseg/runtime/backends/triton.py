"""Triton backend: the model runs on a Triton Inference Server; this side sends frames over gRPC.

It talks to any model of a repository written by edgeseg.export.triton (TensorRT, onnxruntime or Python backend):
uint8 NHWC BGR frames at the model's input size in, a uint8 class map out. The ModelMeta comes from the model's
config (parameters["edgeseg"]), so a Segmenter on this backend resizes frames exactly as it would locally.

Each frame of a batch is its own request, all in flight at once: N sources (or N clients) become N concurrent
requests and the server's dynamic batcher forms the batches (`server_batch_sizes()` reads which it formed).
`shared_memory=True` passes frames and masks through system shared memory instead of the socket (client and server
on the same host).
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

import numpy as np

from edgeseg._optional import require
from edgeseg.config import ModelMeta
from edgeseg.errors import BackendUnavailableError, ConfigError, ModelFileError
from edgeseg.runtime.backends.base import Backend, TensorSpec

META_PARAMETER = "edgeseg"  # edgeseg.export.triton.META_PARAMETER (kept here: the runtime never imports export)
_DTYPES = {"TYPE_UINT8": np.dtype(np.uint8), "TYPE_FP32": np.dtype(np.float32), "TYPE_FP16": np.dtype(np.float16)}
DEFAULT_TIMEOUT_S = 60.0


def _grpc():
    return require("tritonclient.grpc", "the Triton backend")


def triton_address(url: str) -> str:
    """HOST:PORT of a Triton gRPC endpoint (a grpc:// prefix is dropped), the port a number in 1..65535; else a
    ConfigError. gRPC itself would take port 99999 and dial another port (99999 mod 65536)."""
    address = str(url).removeprefix("grpc://")
    host, _, port = address.rpartition(":")
    if not host or "/" in address or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"--url must be HOST:PORT of a Triton gRPC endpoint, with PORT in 1..65535 (e.g. "
                          f"127.0.0.1:8001), got {url!r}")
    return address


def _server_error(url: str, what: str, exc: Exception) -> BackendUnavailableError:
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    return BackendUnavailableError(f"Triton server {url}: {what}: {message}")


class TritonBackend(Backend):
    """A model on a Triton server at `url` (HOST:PORT of its gRPC endpoint).

    model_name: the model to use; None picks the server's only ready EdgeSeg model (an error lists them when there
    are several). timeout_s bounds each request. The output array is new on every call (the caller owns it).
    """

    name = "triton"

    def __init__(self, url: str, *, model_name: str | None = None, shared_memory: bool = False,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = triton_address(url)
        if not timeout_s > 0:
            raise ConfigError(f"Triton request timeout must be > 0 s, got {timeout_s}")
        self.model_name = model_name
        self.shared_memory = shared_memory
        self.timeout_s = float(timeout_s)
        self._max_batch = 0
        self._regions: dict[tuple[int, str], tuple[str, Any, int]] = {}  # (slot, in|out) -> (name, handle, bytes)
        super().__init__(self.url)

    # ----- loading -----------------------------------------------------------------------------------------------
    def _load_impl(self) -> None:
        grpc = _grpc()
        try:
            self._client = grpc.InferenceServerClient(self.url)
            live = self._client.is_server_live()
        except Exception as exc:  # grpc raises InferenceServerException, or ValueError on a malformed address
            raise _server_error(self.url, "cannot connect", exc) from exc
        if not live:
            raise BackendUnavailableError(f"Triton server {self.url} is not live")
        self.model_name = self.model_name or self._only_edgeseg_model()
        config = self._model_config(self.model_name)
        parameters = dict(config.parameters)
        if META_PARAMETER not in parameters:
            raise ModelFileError(f"Triton model {self.model_name!r} on {self.url} has no EdgeSeg metadata (config "
                                 f"parameters['{META_PARAMETER}']); write the repository with `edgeseg export --triton`")
        self.meta = ModelMeta.from_json(parameters[META_PARAMETER].string_value,
                                        f"Triton model {self.model_name!r} on {self.url}")
        self._max_batch = int(config.max_batch_size)
        batch = (-1,) if self._max_batch > 0 else ()
        config_pb2 = require("tritonclient.grpc.model_config_pb2", "the Triton backend")
        self.inputs = [self._spec(t, batch, config_pb2) for t in config.input]
        self.outputs = [self._spec(t, batch, config_pb2) for t in config.output]

    def _model_config(self, name: str) -> Any:
        try:
            ready = self._client.is_model_ready(name)
        except Exception as exc:
            raise _server_error(self.url, f"cannot query model {name!r}", exc) from exc
        if not ready:
            raise ConfigError(f"Triton server {self.url} has no ready model {name!r}; ready: "
                              f"{', '.join(self._ready_models()) or 'none'} (--triton-model)")
        return self._client.get_model_config(name).config

    def _ready_models(self) -> list[str]:
        index = self._client.get_model_repository_index().models
        return sorted(m.name for m in index if m.state == "READY")

    def _only_edgeseg_model(self) -> str:
        ready = self._ready_models()
        ours = [name for name in ready if META_PARAMETER in self._client.get_model_config(name).config.parameters]
        if len(ours) != 1:
            raise ConfigError(f"Triton server {self.url} has {len(ours)} ready EdgeSeg models "
                              f"({', '.join(ours) or 'none'}; all ready: {', '.join(ready) or 'none'}): name one "
                              "with --triton-model")
        return ours[0]

    @staticmethod
    def _spec(tensor: Any, batch: tuple[int, ...], config_pb2: Any) -> TensorSpec:
        type_name = config_pb2.DataType.Name(tensor.data_type)
        if type_name not in _DTYPES:
            raise ModelFileError(f"Triton tensor '{tensor.name}' has type {type_name}, which EdgeSeg does not handle")
        return TensorSpec(tensor.name, batch + tuple(int(d) for d in tensor.dims), _DTYPES[type_name])

    @property
    def max_batch(self) -> int | None:
        return self._max_batch or None

    # ----- inference ---------------------------------------------------------------------------------------------
    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """One request per frame, all in flight together; the masks come back in order."""
        grpc = _grpc()
        results: list[Any] = [None] * len(batch)
        errors: list[Exception] = []
        pending = threading.Semaphore(0)

        def done(index: int):
            def callback(result: Any, error: Exception | None) -> None:
                if error is not None:
                    errors.append(error)
                results[index] = result
                pending.release()
            return callback

        for index in range(len(batch)):
            inputs, outputs = self._request(grpc, index, batch[index : index + 1])
            self._client.async_infer(self.model_name, inputs, done(index), outputs=outputs,
                                     client_timeout=self.timeout_s)
        for _ in range(len(batch)):
            if not pending.acquire(timeout=self.timeout_s + 5.0):
                raise BackendUnavailableError(f"Triton server {self.url}: no answer within {self.timeout_s:g} s")
        if errors:
            raise _server_error(self.url, f"model {self.model_name!r} failed", errors[0])
        return np.concatenate([self._output(index, result) for index, result in enumerate(results)])

    def _request(self, grpc: Any, slot: int, frame: np.ndarray) -> tuple[list, list]:
        spec, out_spec = self.inputs[0], self.outputs[0]
        request_input = grpc.InferInput(spec.name, list(frame.shape), "UINT8" if frame.dtype == np.uint8 else
                                        {np.float32: "FP32", np.float16: "FP16"}[frame.dtype.type])
        output = grpc.InferRequestedOutput(out_spec.name)
        if not self.shared_memory:
            request_input.set_data_from_numpy(frame)
            return [request_input], [output]
        shm = require("tritonclient.utils.shared_memory", "the Triton backend's shared memory")
        name, handle, size = self._region(slot, "in", frame.nbytes)
        shm.set_shared_memory_region(handle, [frame])
        request_input.set_shared_memory(name, frame.nbytes)
        out_bytes = int(np.prod(out_spec.shape[1:])) * out_spec.dtype.itemsize
        out_name, _, _ = self._region(slot, "out", out_bytes)
        output.set_shared_memory(out_name, out_bytes)
        return [request_input], [output]

    def _output(self, slot: int, result: Any) -> np.ndarray:
        out_spec = self.outputs[0]
        if not self.shared_memory:
            return result.as_numpy(out_spec.name)
        shm = require("tritonclient.utils.shared_memory", "the Triton backend's shared memory")
        _, handle, _ = self._regions[(slot, "out")]
        shape = result.get_output(out_spec.name).shape
        return np.array(shm.get_contents_as_numpy(handle, out_spec.dtype, list(shape)), copy=True)

    def _region(self, slot: int, kind: str, size: int) -> tuple[str, Any, int]:
        """The shared-memory region of one in-flight request slot, created and registered on first use."""
        key = (slot, kind)
        if key in self._regions and self._regions[key][2] >= size:
            return self._regions[key]
        shm = require("tritonclient.utils.shared_memory", "the Triton backend's shared memory")
        self._drop_region(key)
        name = f"edgeseg_{os.getpid()}_{uuid.uuid4().hex[:8]}_{slot}_{kind}"
        handle = shm.create_shared_memory_region(name, "/" + name, size)
        try:
            self._client.register_system_shared_memory(name, "/" + name, size)
        except Exception as exc:
            shm.destroy_shared_memory_region(handle)
            raise _server_error(self.url, "cannot register shared memory (is the server on this host?)", exc) from exc
        self._regions[key] = (name, handle, size)
        return self._regions[key]

    def _drop_region(self, key: tuple[int, str]) -> None:
        if key not in self._regions:
            return
        name, handle, _ = self._regions.pop(key)
        shm = require("tritonclient.utils.shared_memory", "the Triton backend's shared memory")
        try:
            self._client.unregister_system_shared_memory(name)
        finally:
            shm.destroy_shared_memory_region(handle)

    # ----- server facts --------------------------------------------------------------------------------------------
    def server_batch_sizes(self) -> dict[int, int]:
        """{batch size: executions} the server formed for this model since it loaded (its statistics endpoint)."""
        stats = self._client.get_inference_statistics(self.model_name)
        sizes: dict[int, int] = {}
        for model in stats.model_stats:
            for entry in model.batch_stats:
                sizes[int(entry.batch_size)] = sizes.get(int(entry.batch_size), 0) + int(entry.compute_infer.count)
        return dict(sorted(sizes.items()))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url, "model_name": self.model_name,
                "shared_memory": self.shared_memory, "max_batch": self._max_batch}

    def _close_impl(self) -> None:
        for key in list(self._regions):
            self._drop_region(key)
        self._client.close()


__all__ = ["TritonBackend", "DEFAULT_TIMEOUT_S"]
