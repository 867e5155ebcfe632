"""Small ONNX helpers every export step shares: load/save, the EdgeSeg metadata, ONNX Runtime sessions.

Files are written by edgeseg.files.write_file (atomic, 0644 under the usual umask), like every EdgeSeg output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg._optional import require
from edgeseg.config import META_KEY, ModelMeta
from edgeseg.errors import ExportError, ModelFileError
from edgeseg.files import write_file


def load_onnx(source: Any) -> Any:
    """An onnx.ModelProto from a path or a ModelProto (returned as is); ModelFileError when unreadable."""
    onnx = require("onnx", "reading ONNX models")
    if isinstance(source, onnx.ModelProto):
        return source
    path = Path(source)
    if not path.is_file():
        raise ModelFileError(f"ONNX model {path} does not exist")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, onnx raises its own types for truncated/corrupt files
        raise ModelFileError(f"{path} is not a readable ONNX model (truncated or corrupt?): {type(exc).__name__}: {exc}") from exc
    if not model.graph.node:
        raise ModelFileError(f"{path} is not an ONNX model (its graph has no nodes; truncated or not ONNX?)")
    return model


def save_onnx(model: Any, path: str | Path) -> Path:
    """Write `model` to `path` with edgeseg.files.write_file; ExportError when it is too large to serialise."""
    try:
        data = model.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GiB limit: EdgeSeg's FCNs are far below it
        raise ExportError(f"cannot serialise the ONNX model for {path}: {exc}") from exc
    return write_file(path, data)


def get_meta(model: Any, where: str = "the model") -> ModelMeta:
    """The ModelMeta stored under META_KEY in metadata_props; ModelFileError when it is absent (a foreign file)."""
    for prop in model.metadata_props:
        if prop.key == META_KEY:
            return ModelMeta.from_json(prop.value)
    raise ModelFileError(
        f"{where} has no EdgeSeg metadata ('{META_KEY}' in metadata_props): export it with `edgeseg export`"
    )


def set_meta(model: Any, meta: ModelMeta) -> Any:
    """Store `meta` in the model's metadata_props (replacing any earlier copy); returns the model."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    for key, value in keep + [(META_KEY, meta.to_json())]:
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return model


def read_meta(onnx_path: str | Path) -> ModelMeta:
    """The ModelMeta embedded in an exported .onnx file; ModelFileError on a corrupt or foreign file."""
    return get_meta(load_onnx(onnx_path), where=str(onnx_path))


def ort_session(model: Any, purpose: str = "checking the exported model") -> Any:
    """A CPU ONNX Runtime session for a ModelProto or path; ExportError when ORT cannot load the graph."""
    ort = require("onnxruntime", purpose)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's Fail/InvalidGraph/NotImplemented types
        raise ExportError(f"ONNX Runtime cannot load the model for {purpose}: {exc}") from exc
