"""The engine sidecar `<engine>.json`: the one home of its format, written by the exporter, read by the runtime.

A serialized TensorRT engine says nothing a user can check before deserialising it. The sidecar records what it
was built from and for (TensorRT flavour and version, GPU and compute capability, compatibility flags), its I/O
tensors, the ModelMeta (pre/post-processing plan, classes, palette), the per-type counts of what each layer
computes in, and hashes tying it to its engine and ONNX file. `edgeseg.export.engine` builds one and calls
`write_sidecar`; `edgeseg.runtime.backends.tensorrt` calls `read_sidecar` before it touches the GPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.config import ModelMeta
from edgeseg.errors import ModelFileError
from edgeseg.files import sha256_file, write_file

SIDECAR_FORMAT = "edgeseg-engine"
SIDECAR_VERSION = 2
FLAVOURS = ("tensorrt", "tensorrt_rtx")
HARDWARE_COMPATIBILITY = ("none", "ampere_plus", "same_compute_capability")


@dataclass(frozen=True)
class TensorInfo:
    """One engine I/O tensor: name, shape (-1 for a dynamic axis) and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


@dataclass(frozen=True)
class EngineSidecar:
    """Everything the runtime checks about an engine before deserialising it."""

    flavour: str  # "tensorrt" or "tensorrt_rtx"
    trt_version: str
    precision: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    meta: ModelMeta
    engine_sha256: str
    onnx: str = ""
    onnx_sha256: str = ""
    strongly_typed: bool = True
    # (min, opt, max) input shapes of the optimisation profile, or None for a static engine.
    profile: tuple[tuple[int, ...], ...] | None = None
    workspace_mb: int | None = None
    # Where it may run. gpu_name/compute_capability: the GPU the builder targeted (None/[] when it built without one,
    # as TensorRT-RTX does ahead of time); compute_capabilities: the list an RTX AOT build covers.
    gpu_name: str | None = None
    compute_capability: str | None = None
    compute_capabilities: tuple[str, ...] = ()
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    # What the layers compute in: {"FLOAT": n, "HALF": n, "INT8": n, ...} counted over the parsed network's layer
    # outputs, and optionally the engine inspector's per-layer view (needs a GPU).
    layer_output_types: dict[str, int] = field(default_factory=dict)
    layer_precisions: dict[str, int] = field(default_factory=dict)
    # TensorRT-RTX: engines are built for CUDA-graph capture (REQUIRE_USER_ALLOCATION) and JIT-compiled kernels are
    # cached in this file next to the engine (None: no cache).
    cuda_graph_ready: bool = False
    runtime_cache: str | None = None
    build_seconds: float = 0.0
    built_at: str = ""

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ModelFileError(f"sidecar flavour {self.flavour!r} is not one of {FLAVOURS}")
        if self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise ModelFileError(f"sidecar hardware_compatibility {self.hardware_compatibility!r} is not one of "
                                 f"{HARDWARE_COMPATIBILITY}")
        if len(self.inputs) != 1 or not self.outputs:
            raise ModelFileError(f"sidecar lists {len(self.inputs)} inputs and {len(self.outputs)} outputs; EdgeSeg "
                                 "engines have one input and at least one output")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["meta"] = self.meta.to_dict()
        return {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, **data}

    @classmethod
    def from_dict(cls, data: Any, where: str = "sidecar") -> "EngineSidecar":
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise ModelFileError(f"{where} is not an EdgeSeg engine sidecar (no '{SIDECAR_FORMAT}' format tag)")
        if data.get("version") != SIDECAR_VERSION:
            raise ModelFileError(f"{where} is sidecar version {data.get('version')}, this EdgeSeg reads version "
                                 f"{SIDECAR_VERSION}: rebuild the engine with `edgeseg export --engine`")
        known = {f.name for f in fields(cls)}
        missing = [name for name in ("flavour", "trt_version", "precision", "inputs", "outputs", "meta",
                                     "engine_sha256") if name not in data]
        if missing:
            raise ModelFileError(f"{where} lacks {missing}")
        body = {k: v for k, v in data.items() if k in known}
        try:
            body["inputs"] = tuple(_tensor(t) for t in data["inputs"])
            body["outputs"] = tuple(_tensor(t) for t in data["outputs"])
            body["meta"] = ModelMeta.from_dict(data["meta"], where)
            if body.get("profile") is not None:
                body["profile"] = tuple(tuple(int(d) for d in s) for s in body["profile"])
            body["compute_capabilities"] = tuple(str(c) for c in body.get("compute_capabilities", ()))
            return cls(**body)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{where} is malformed: {exc!r}") from exc


def foreign_sidecar(engine_path: str | Path, *, runtime_flavour: str, trt_version: str, inputs: tuple[TensorInfo, ...],
                    outputs: tuple[TensorInfo, ...], meta: ModelMeta, profile: tuple[tuple[int, ...], ...] | None,
                    gpu_name: str | None, compute_capability: str | None) -> EngineSidecar:
    """The sidecar of an engine EdgeSeg did not build (trtexec, ...): what the runtime that deserialized it here
    read from it (flavour, version, GPU, I/O tensors, profile) plus the ModelMeta the user gave.

    Build-time facts no engine states (precision, strongly typed, compatibility flags) are recorded as unknown or
    conservative: precision from the metadata, no version or hardware compatibility, so the placement check holds it
    to this TensorRT version and this GPU's compute capability."""
    lean = runtime_flavour in ("tensorrt_dispatch", "tensorrt_lean")  # these only run version-compatible plans
    return EngineSidecar(
        flavour="tensorrt" if lean else runtime_flavour, trt_version=trt_version, precision=meta.precision,
        inputs=inputs, outputs=outputs, meta=meta, engine_sha256=sha256_file(engine_path), strongly_typed=False,
        profile=profile, gpu_name=gpu_name, compute_capability=compute_capability, version_compatible=lean,
        built_at="unknown (engine built outside EdgeSeg; sidecar written by edgeseg annotate)")


def _tensor(entry: dict[str, Any]) -> TensorInfo:
    info = TensorInfo(str(entry["name"]), tuple(int(d) for d in entry["shape"]), str(entry["dtype"]))
    info.np_dtype  # noqa: B018  (raises TypeError on an unknown dtype name)
    return info


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    return write_file(sidecar_path(engine_path), json.dumps(sidecar.to_dict(), indent=2) + "\n")


def read_sidecar(engine_path: str | Path) -> EngineSidecar:
    """The engine's sidecar, checked against the engine file (sha256); ModelFileError when missing or mismatched."""
    engine_path = Path(engine_path)
    side = sidecar_path(engine_path)
    if engine_path.is_dir():
        raise ModelFileError(f"engine {engine_path} is a folder, not an engine file")
    if not engine_path.is_file():
        raise ModelFileError(f"engine {engine_path} does not exist")
    if not side.is_file():
        raise ModelFileError(f"engine {engine_path} has no sidecar {side.name}; rebuild it with `edgeseg export "
                             "--engine`, or, for an engine built by another tool (trtexec), pass what the sidecar "
                             "would say (--classes FILE|N, --input-size H W, --mean R G B --std R G B, ...) or write "
                             "it once with `edgeseg annotate`")
    try:
        data = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"sidecar {side} is not valid JSON: {exc}") from exc
    sidecar = EngineSidecar.from_dict(data, where=str(side))
    if sha256_file(engine_path) != sidecar.engine_sha256:
        raise ModelFileError(f"engine {engine_path} does not match its sidecar (sha256 differs): "
                             "the engine was rebuilt, replaced or truncated; export it again")
    return sidecar
