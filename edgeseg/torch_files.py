"""Loading torch files we did not write ourselves: weights_only=True always, one clear error for any failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg._optional import require
from edgeseg.errors import ModelFileError


def load_torch_file(path: str | Path, what: str, missing_hint: str = "", unreadable_hint: str = "") -> Any:
    """torch.load(path, weights_only=True) on the CPU; ModelFileError naming `what` and the path on any problem.

    weights_only refuses pickled code, so an untrusted checkpoint cannot run anything while it is read. The error is
    one line: torch's own message suggests weights_only=False and a bug report, which is the wrong advice here.
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
        text = str(exc)
        if "GLOBAL" in text or "Unsupported global" in text:  # a pickle that would import and call code
            first = next((line.strip() for line in text.splitlines() if "GLOBAL" in line or "global" in line), "")
            raise ModelFileError(f"{what} {path} holds pickled Python objects, refused unread (weights_only=True; "
                                 f"{first}): load only files you trust, saved as plain tensors") from None
        kind = "an ONNX model, " if path.suffix.lower() == ".onnx" else ""
        raise ModelFileError(f"{what} {path} is {kind}not a readable torch file (corrupt or truncated?)"
                             f"{unreadable_hint}") from None
