"""The export manifest: `DIR/export_manifest.json` lists the files the last `edgeseg export` into DIR wrote.

Why a manifest rather than refusing a used `--out` (or a `--force` flag): re-exporting into the same folder is the
normal loop (`make demo` does it on every run, users re-export after each training run), so it must just work. What
must not happen is that the new model.onnx sits next to the *previous* model's model_int8.onnx or engines, which
`edgeseg run` would then load without complaint. So each export records what it wrote, and the next export into
the folder removes the files the previous one recorded and this one did not write again (each removal is logged).
A file is removed only when it is still exactly what EdgeSeg wrote (same SHA-256, a regular file, not a symlink,
inside DIR): files EdgeSeg never wrote, or that were changed since, are never touched.

`ExportRecord` is the bookkeeping around one export (a context manager):
- success: remove the previous export's stale files, write the new manifest;
- failure into a folder this export created: remove what it wrote and the folder, so nothing is left behind;
- failure into an existing folder: the manifest keeps the previous files plus what this export wrote, so the next
  export still cleans them up.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from edgeseg.errors import OutputPathError
from edgeseg.files import model_kind, sha256_file, write_file

log = logging.getLogger(__name__)

MANIFEST_NAME = "export_manifest.json"
MANIFEST_FORMAT = "edgeseg-export-manifest"
MANIFEST_VERSION = 1

_StatKey = tuple[int, int, int, int]  # (device, inode, size, mtime_ns): changes when a file is (re)written


def read_manifest(out_dir: str | Path) -> dict[str, str]:
    """{relative path: sha256} of the files the last export into `out_dir` recorded; {} without a usable manifest.

    An unreadable or foreign manifest is ignored with a warning: without it nothing is known to be ours, so nothing
    is removed (the safe side)."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, not {MANIFEST_FORMAT!r}")
        return {str(name): str(entry["sha256"]) for name, entry in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring %s (%s): files of earlier exports into %s are not removed", path, exc, out_dir)
        return {}


def write_manifest(out_dir: str | Path, files: Mapping[str, str], **info: Any) -> Path:
    """Write the manifest: {relative path: sha256} plus `info` (checkpoint, precisions) for people reading it."""
    payload = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **info,
               "files": {name: {"sha256": files[name]} for name in sorted(files)}}
    return write_file(Path(out_dir) / MANIFEST_NAME, json.dumps(payload, indent=2) + "\n")


class ExportRecord:
    """Tracks the files one export writes into `out_dir` (see the module docstring).

    `planned`: the paths the export may write; the ones it (re)wrote are what it recorded.
    `inputs`: paths never removed, whatever a manifest says (the checkpoint, calibration and report data).
    """

    def __init__(self, out_dir: str | Path, planned: Iterable[Path], inputs: Iterable[Path] = (),
                 **info: Any) -> None:
        self.out_dir = Path(out_dir)
        self.planned = [Path(p) for p in planned]
        self.inputs = [Path(p).resolve() for p in inputs if Path(p).exists()]
        self.info = info
        self.previous: dict[str, str] = {}
        self._before: dict[Path, _StatKey | None] = {}
        self._created: list[Path] = []  # folders this export creates, deepest first

    def __enter__(self) -> "ExportRecord":
        self._created = [p for p in (self.out_dir, *self.out_dir.parents) if not p.exists()]
        self.previous = read_manifest(self.out_dir)
        self._before = {p: _stat_key(p) for p in self.planned}
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        written = self._written()
        if exc_type is None:
            self._finish(written)
        elif self._created:
            self._roll_back(written)
        elif written or self.previous:
            kept = dict(self.previous, **self._hashes(written))
            try:
                write_manifest(self.out_dir, kept, incomplete=True, **self.info)
            except OutputPathError as error:  # do not hide the export's own error behind this one
                log.warning("could not update %s after the failed export: %s", MANIFEST_NAME, error)

    # ----- outcomes ---------------------------------------------------------------------------------------------
    def _finish(self, written: list[Path]) -> None:
        current = self._hashes(written)
        planned = {self._name(p) for p in self.planned}
        for name in sorted(set(self.previous) - set(current)):
            if name in planned:  # this export's own output, left as it was: still ours, not stale
                if (self.out_dir / name).is_file():
                    current[name] = self.previous[name]
            elif not self._remove_stale(name, self.previous[name]):
                current[name] = self.previous[name]  # kept: still ours, retried next time
        write_manifest(self.out_dir, current, **self.info)

    def _roll_back(self, written: list[Path]) -> None:
        """The export failed into a folder it created: remove what it wrote there, then the folders it made (only
        when empty). Files it wrote elsewhere (a --deepstream folder) may have replaced older ones: left as they are."""
        for path in written + [self.out_dir / MANIFEST_NAME]:
            if self._name(path) is not None and path.is_file() and not path.is_symlink():
                _unlink(path, "after the failed export")
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:  # not empty (something else was put there) or already gone: leave it
                break

    def _remove_stale(self, name: str, sha256: str) -> bool:
        """Remove one file the previous export wrote and this one did not; False when it must stay listed."""
        path = self._inside(name)
        if path is None or (not path.exists() and not path.is_symlink()):
            return True  # never ours to remove, or gone already: drop it from the manifest
        if path.is_symlink() or not path.is_file() or path.resolve() in self.inputs:
            log.warning("kept %s from the previous export: it is now a link, a folder or an input of this export",
                        path)
            return True
        if sha256_file(path) != sha256:
            log.warning("kept %s from the previous export: it was changed since EdgeSeg wrote it", path)
            return True
        if not _unlink(path, "left by the previous export"):
            return False
        log.info("removed %s: the previous export into %s wrote it and this one did not", path.name, self.out_dir)
        self._remove_runtime_cache(path)
        return True

    def _remove_runtime_cache(self, engine: Path) -> None:
        """A removed engine's TensorRT-RTX runtime cache (written next to it by `edgeseg run`) goes with it."""
        if model_kind(engine) != "engine":
            return
        from edgeseg.export.engine import RUNTIME_CACHE_SUFFIX

        cache = engine.with_name(engine.name + RUNTIME_CACHE_SUFFIX)
        if cache.is_file() and not cache.is_symlink() and _unlink(cache, "the runtime cache of a removed engine"):
            log.info("removed %s, the runtime cache of the removed engine", cache.name)

    # ----- helpers ----------------------------------------------------------------------------------------------
    def _written(self) -> list[Path]:
        """The planned paths this export (re)wrote: files whose (device, inode, size, mtime) changed."""
        return [p for p in dict.fromkeys(self.planned) if p.is_file() and _stat_key(p) != self._before[p]]

    def _hashes(self, paths: Iterable[Path]) -> dict[str, str]:
        out = {}
        for path in paths:
            name = self._name(path)
            if name is not None:
                out[name] = sha256_file(path)
        return out

    def _name(self, path: Path) -> str | None:
        """`path` relative to the folder (posix), or None when it lies outside it (never recorded)."""
        try:
            return path.resolve().relative_to(self.out_dir.resolve()).as_posix()
        except ValueError:
            return None

    def _inside(self, name: str) -> Path | None:
        """The path a manifest entry names, or None (with a warning) when it would leave the folder."""
        relative, path = Path(name), self.out_dir / name
        inside = (not relative.is_absolute() and ".." not in relative.parts
                  and path.parent.resolve().is_relative_to(self.out_dir.resolve()))
        if not inside:
            log.warning("ignoring the manifest entry %r: it is not a file inside %s", name, self.out_dir)
            return None
        return path


def _unlink(path: Path, why: str) -> bool:
    """Remove a file; a failure (permissions) is a warning, never an error hiding the export's own outcome."""
    try:
        path.unlink()
    except OSError as exc:
        log.warning("could not remove %s (%s): %s", path, why, exc.strerror or exc)
        return False
    return True


def _stat_key(path: Path) -> _StatKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
