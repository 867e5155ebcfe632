"""The export manifest: `DIR/export_manifest.json` lists the files the last `edgeseg export` into DIR wrote.

Why a manifest rather than refusing a used `--out` (or a `--force` flag): re-exporting into the same folder is the
normal loop (`make demo` does it on every run, users re-export after each training run), so it must just work. What
must not happen is that the new model.onnx sits next to the *previous* model's model_int8.onnx or engines, which
`edgeseg run` would then load without complaint. So each export records what it wrote, and the next export into
the folder removes the files the previous one recorded and this one did not write again (each removal is logged).
A file is removed only when it is still exactly what EdgeSeg wrote (same SHA-256, a regular file, not a symlink,
inside DIR): files EdgeSeg never wrote, or that were changed since, are never touched.

The removal happens in the swap of a staged export (edgeseg.export.staging): the stale files are simply not carried
over into the new folder, and a failed export leaves the previous folder, manifest included, as it was.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

from edgeseg.files import model_kind, sha256_file, write_file

log = logging.getLogger(__name__)

MANIFEST_NAME = "export_manifest.json"
MANIFEST_FORMAT = "edgeseg-export-manifest"
MANIFEST_VERSION = 1



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


def stale_files(out_dir: str | Path, previous: Mapping[str, str], written: Iterable[str],
                inputs: Iterable[Path] = ()) -> set[str]:
    """The files of `out_dir` (relative names) the previous export recorded and this one did not write again, still
    exactly as EdgeSeg wrote them (same SHA-256, a regular file inside the folder, not an input): the next export
    drops them. Each file kept instead is logged. The TensorRT-RTX runtime cache (written by `edgeseg run` next to
    an engine) goes with its engine when the engine is dropped or rebuilt."""
    out_dir, written, inputs = Path(out_dir), set(written), {Path(p).resolve() for p in inputs}
    stale = set()
    for name in sorted(set(previous) - written):
        path = _inside(out_dir, name)
        if path is None or not path.exists():
            continue
        if path.is_symlink() or not path.is_file() or path.resolve() in inputs:
            log.warning("kept %s from the previous export: it is now a link, a folder or an input of this export",
                        path)
        elif sha256_file(path) != previous[name]:
            log.warning("kept %s from the previous export: it was changed since EdgeSeg wrote it", path)
        else:
            stale.add(name)
    from edgeseg.export.engine import RUNTIME_CACHE_SUFFIX

    for name in stale | written:
        cache = out_dir / (name + RUNTIME_CACHE_SUFFIX)
        if model_kind(name) == "engine" and cache.is_file() and not cache.is_symlink():
            stale.add(name + RUNTIME_CACHE_SUFFIX)
    return stale


def _inside(out_dir: Path, name: str) -> Path | None:
    """The path a manifest entry names, or None (with a warning) when it would leave the folder."""
    relative, path = Path(name), out_dir / name
    inside = (not relative.is_absolute() and ".." not in relative.parts
              and path.parent.resolve().is_relative_to(out_dir.resolve()))
    if not inside:
        log.warning("ignoring the manifest entry %r: it is not a file inside %s", name, out_dir)
        return None
    return path


