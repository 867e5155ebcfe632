"""Loading torch files we did not write ourselves: weights_only=True always, one clear error for any failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg._optional import require
from edgeseg.errors import ModelFileError


def load_torch_file(path: str | Path, what: str, missing_hint: str = "") -> Any:
    """torch.load(path, weights_only=True) on the CPU; ModelFileError naming `what` and the path on any problem.

    weights_only refuses pickled code, so an untrusted checkpoint cannot run anything while it is read.
    """
    torch = require("torch", f"loading {what}")
    path = Path(path)
    if path.is_dir():
        example = f" (e.g. {path / 'best.pt'})" if (path / "best.pt").is_file() else ""  # a training run's folder
        raise ModelFileError(f"{what} {path} is a folder, not a file; give the file itself{example}")
    if not path.is_file():
        raise ModelFileError(f"{what} {path} does not exist{missing_hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated, corrupt or unsafe (pickled code) files
        raise ModelFileError(
            f"{what} {path} could not be loaded safely (weights_only=True): {type(exc).__name__}: {exc}"
        ) from exc
