"""Checks on output paths made before any work starts, so a bad --masks/--stats/--out fails at once, not after
the video has been read: each says which option, what is wrong, and leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgeseg.errors import OutputPathError


def check_output_file(path: str | os.PathLike[str], flag: str) -> Path:
    """`path` can be written as a file (a new file, a regular file to replace, or a symlink/device to write through)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} {path} is a folder; {flag} takes a file name")
    if path.exists() and not path.is_file():  # a device, FIFO or symlink to one: written through, in place
        if not os.access(path, os.W_OK):
            raise OutputPathError(f"{flag} {path} is not writable")
        return path
    _check_can_create_in(path, flag, "file")
    return path


def check_output_folder(path: str | os.PathLike[str], flag: str) -> Path:
    """`path` is a folder files can be written in, or one that can be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path} is a file; {flag} takes a folder (it is created if missing)")
    if path.is_dir():
        _probe(path, flag, path)
        return path
    _check_can_create_in(path, flag, "folder")
    return path


def _check_can_create_in(path: Path, flag: str, kind: str) -> None:
    """The nearest existing ancestor of `path` is a folder we can write in (so the rest can be created)."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"{flag} {path}: cannot create this {kind}, {ancestor} is a file, not a folder")
    _probe(ancestor, flag, path)


def _probe(folder: Path, flag: str, path: Path) -> None:
    """Create and remove a temporary file in `folder`: the one test that also holds for root and read-only mounts."""
    try:
        fd, name = tempfile.mkstemp(prefix=".edgeseg-probe-", dir=folder)
    except OSError as exc:
        raise OutputPathError(f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc})") from exc
    os.close(fd)
    os.unlink(name)
