"""Writing EdgeSeg's metadata into models made by other tools (`edgeseg annotate`), so they run without flags.

The metadata written is exactly what the runtime would use with the same ModelFacts: each function opens the model
with its backend (which reads the graph, the stored metadata and the facts, and checks them against each other)
and writes the result. Neither ever writes over its input unless asked to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeseg.config import ModelMeta
from edgeseg.errors import OutputPathError
from edgeseg.model_facts import ModelFacts
from edgeseg.sidecar import EngineSidecar


def annotate_onnx(model: str | Path, out: str | Path, facts: ModelFacts) -> tuple[Path, ModelMeta]:
    """Write `model` with its resolved ModelMeta in metadata_props to `out` (atomically; `out` may be the model's
    own real path for an in-place update, which the caller must have asked for explicitly)."""
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    with OnnxRuntimeBackend(model, provider="cpu", model_facts=facts) as backend:
        meta = backend.meta
    from edgeseg.export.onnx_io import load_onnx, save_onnx, set_meta

    target = Path(out)
    if target.exists() and os.path.samefile(target, model):
        target = Path(os.path.realpath(target))  # replace the real file, not a symlink to it
    return save_onnx(set_meta(load_onnx(model), meta), target), meta


def annotate_engine(engine: str | Path, facts: ModelFacts, *, force: bool = False, **backend_options: Any
                    ) -> tuple[Path, EngineSidecar]:
    """Write the sidecar of a TensorRT engine built elsewhere: its I/O tensors as TensorRT reads them here (this
    needs TensorRT and a GPU) and the ModelMeta from `facts`. An existing sidecar is replaced only with `force`."""
    from edgeseg.runtime.backends.tensorrt import TensorRTBackend
    from edgeseg.sidecar import sidecar_path, write_sidecar

    side = sidecar_path(engine)
    if side.exists() and not force:
        raise OutputPathError(f"{side} already exists; pass --force to replace it")
    backend_options.setdefault("device_frames", False)
    with TensorRTBackend(engine, model_facts=facts, **backend_options) as backend:
        sidecar = backend.sidecar
    return write_sidecar(engine, sidecar), sidecar
