"""Checkpoints: weights plus the ModelMeta that travels with them, loaded with weights_only=True.

A checkpoint is a plain dict of tensors and primitives (nothing pickled beyond what weights_only allows), so
loading an untrusted file cannot run code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from edgeseg._optional import require
from edgeseg.config import ModelMeta
from edgeseg.errors import ConfigError, ModelFileError
from edgeseg.files import write_file
from edgeseg.torch_files import load_torch_file

CHECKPOINT_FORMAT = "edgeseg-checkpoint"
CHECKPOINT_VERSION = 1
_NOT_A_CHECKPOINT = ": not an EdgeSeg checkpoint (corrupt, or an ONNX file: export needs the .pt that train wrote)"


def save_checkpoint(path: str | Path, model: Any, meta: ModelMeta, **state: Any) -> Path:
    """Write model weights, metadata and extra training state (epoch, optimizer, ...) atomically (write_file)."""
    torch = require("torch", "saving a checkpoint")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "meta": meta.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **state,
    }
    # Serialised in memory first: torch.save's zip writer turns a failed write (a full disk) into a RuntimeError
    # naming no cause. write_file then writes through a temporary file renamed into place, so a crash or a full disk
    # never leaves half a best.pt/last.pt and the previous one stays; its OutputPathError says "disk full".
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_file(path, buffer.getbuffer())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict safely (weights_only=True) and check it is ours."""
    path = Path(path)
    payload = load_torch_file(path, "checkpoint", unreadable_hint=_NOT_A_CHECKPOINT)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path} is not an EdgeSeg checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if "state_dict" not in payload or "meta" not in payload:
        raise ModelFileError(f"checkpoint {path} lacks 'state_dict' or 'meta'")
    weights = payload["state_dict"]
    if not isinstance(weights, dict) or not all(isinstance(key, str) for key in weights):
        raise ModelFileError(f"checkpoint {path}: its 'state_dict' is a {type(weights).__name__}, not a dict of named "
                             "weights; give a best.pt or last.pt that `edgeseg train` wrote")
    if not isinstance(payload["meta"], dict):
        raise ModelFileError(f"checkpoint {path}: its 'meta' is a {type(payload['meta']).__name__}, not the model "
                             "metadata `edgeseg train` writes")
    return payload


def load_model(path: str | Path) -> tuple[Any, ModelMeta]:
    """Rebuild the model named in a checkpoint, load its weights and return (model in eval mode, meta)."""
    from edgeseg.models import build_model

    payload = read_checkpoint(path)
    try:  # the messages below do not know which file they are about: name it
        meta = ModelMeta.from_dict(payload["meta"])
        model = build_model(meta.model_name, num_classes=meta.num_classes)
    except (ModelFileError, ConfigError) as exc:
        raise ModelFileError(f"checkpoint {path}: {exc}") from exc
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelFileError(f"weights in {path} do not fit model {meta.model_name}: {exc}") from exc
    model.eval()
    return model, meta
