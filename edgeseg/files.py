"""Files EdgeSeg reads and writes: the one home for output writing, hashing and the recognised file suffixes.

Every file EdgeSeg produces (ONNX models, engines, sidecars, reports, stats, mask PNGs) is written by `write_file`:
- a regular file (or a new path) is written through a temporary file in the same folder and renamed into place,
  so a crash never leaves half a file, with mode 0666 & ~umask (0644 under the usual umask) so other users and
  containers can read models and engines (mkstemp alone would leave them 0600);
- an existing symlink, device or FIFO is written *through* (opened and written in place), never replaced by a
  regular file: `--stats /dev/stdout` or a symlinked output keeps working, and a device node is never clobbered.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from edgeseg.errors import OutputPathError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".h264", ".h265")
# What `edgeseg run --out` writes: MP4-family containers (the writer uses an MP4 codec).
WRITABLE_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def model_kind(path: str | os.PathLike[str]) -> str | None:
    """'onnx' or 'engine' by the file's suffix, whatever its case (MODEL.ONNX, model.Engine); None for anything else.

    The one rule every command uses to tell a model file, so none accepts a name another then refuses."""
    suffix = Path(path).suffix.lower()
    return "onnx" if suffix in ONNX_SUFFIXES else "engine" if suffix in ENGINE_SUFFIXES else None


def os_error_reason(exc: OSError) -> str:
    """What went wrong, in the words a user acts on: a full disk and a file-size limit are named as such."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full ({exc.strerror})"
    if exc.errno == errno.EFBIG:
        return f"file too large ({exc.strerror}: the file system or `ulimit -f` limits its size)"
    return exc.strerror or str(exc)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write `data` to `path` (see the module docstring); OutputPathError when it cannot be written."""
    payload = data.encode() if isinstance(data, str) else bytes(data)
    return write_with(path, lambda handle: handle.write(payload))


def write_with(path: str | os.PathLike[str], writer: Callable, *, suffix: str = ".tmp") -> Path:
    """Like write_file, but `writer(handle)` writes into an open binary handle (for libraries that stream)."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        if path.is_dir():
            raise OutputPathError(f"output {path} is a folder, not a file")
        try:  # a symlink, device or FIFO: write through it, never replace it
            with open(path, "wb") as handle:
                writer(handle)
        except OSError as exc:
            raise OutputPathError(f"cannot write {path}: {os_error_reason(exc)}") from exc
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OutputPathError(f"cannot write {path}: {os_error_reason(exc)}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputPathError(f"cannot write {path}: {os_error_reason(exc)}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
