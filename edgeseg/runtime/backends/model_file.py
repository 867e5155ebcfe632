"""The model path a user gives: a file that exists, or an error saying what it is instead and what to pass."""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import ModelFileError
from edgeseg.files import ENGINE_SUFFIXES, ONNX_SUFFIXES, model_kind

_MODEL_SUFFIXES = ONNX_SUFFIXES + ENGINE_SUFFIXES


def check_model_file(path: str | Path, what: str = "model") -> Path:
    """`path` if it is a file; ModelFileError for a folder (naming the models inside it) or a missing path."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if model_kind(p) and p.is_file())
        hint = (f"pass one of the models in it: {', '.join(str(path / name) for name in inside[:6])}" if inside
                else f"it holds no {'/'.join(_MODEL_SUFFIXES)} file; pass the model file itself")
        raise ModelFileError(f"{what} {path} is a folder, not a model file: {hint}")
    if not path.exists():
        raise ModelFileError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"{what} {path} is not a regular file")
    return path
