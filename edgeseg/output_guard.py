"""The one check every command makes on its output paths before any long work: `check_outputs(outputs, inputs)`.

Each output is checked
- for its kind: a file option given a folder (or a name ending in `/`, which always means a folder) is refused, and
  a folder option given a file;
- for writability, by trying: a temporary file is created and removed in the folder the output goes to (or the
  nearest folder that exists). Tests and containers run as root, for whom os.access says yes to a read-only mount
  or /proc, so asking would prove nothing;
- against every input, symlinks resolved: no output may be an input file, be an input folder, or replace a file
  inside an input folder. A dataset or a model repository is read as a whole (`Input(whole=True)`), so nothing may
  be written anywhere inside it; a folder of images is read by suffix, so only files with those suffixes count;
- against every other output: two options naming the same file (`--out X.mp4 --stats X.mp4`), or a file and a
  folder (`--out X.mp4 --masks X.mp4`), are refused.

Each failure is an OutputPathError naming the option, the path and what to do; nothing is created or changed.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from edgeseg.errors import OutputPathError


@dataclass(frozen=True)
class Output:
    """One output: `flag` as the user typed it (or what it is, 'the chart'), the path as given (a trailing `/` is
    kept: it means a folder), `folder` for a folder output, and `files`: names a folder output writes inside it
    (checked like file outputs)."""

    flag: str
    path: str | os.PathLike[str]
    folder: bool = False
    files: tuple[str, ...] = ()

    @property
    def paths(self) -> list[tuple[str, Path]]:
        """(what, path) of the output itself and of each file it writes inside a folder."""
        own = [(f"{self.flag} {self.path}", Path(self.path))]
        return own + [(f"{self.flag} {Path(self.path) / name}", Path(self.path) / name) for name in self.files]


@dataclass(frozen=True)
class Input:
    """One input: what to call it in messages ('the model', '--data'), its path, `whole` when it is read as a whole
    (a dataset, a model repository: nothing may be written inside it), else `suffixes`: the files of a folder input
    that are read (empty: every file)."""

    what: str
    path: str | os.PathLike[str]
    whole: bool = False
    suffixes: tuple[str, ...] = field(default=())


def check_outputs(outputs: Sequence[Output], inputs: Iterable[Input] = ()) -> None:
    """OutputPathError when an output cannot be written, or would replace an input or another output."""
    inputs = [i for i in inputs if i.path is not None and str(i.path) and _exists(Path(i.path))]
    for output in outputs:
        _check_kind(output)
    for output in outputs:
        _check_writable(output)
    roots = _input_roots(inputs)
    for output in outputs:
        _check_against_inputs(output, roots)
    _check_against_each_other(outputs)


def is_folder_name(path: str | os.PathLike[str]) -> bool:
    """A path typed with a trailing separator names a folder, whatever exists there."""
    text = os.fspath(path)
    return text.endswith(os.sep) or (os.altsep is not None and text.endswith(os.altsep))


# ----- kind and writability ---------------------------------------------------------------------------------------
def _check_kind(output: Output) -> None:
    path, flag = Path(output.path), output.flag
    if output.folder:
        if path.exists() and not path.is_dir():
            raise OutputPathError(f"{flag} {output.path} is a file; {flag} takes a folder (it is created if missing)")
        for what, inner in output.paths[1:]:
            if inner.is_dir():
                raise OutputPathError(f"{what} is a folder, where a file is written; move it away or choose "
                                      f"another {flag} folder")
        return
    if is_folder_name(output.path):
        raise OutputPathError(f"{flag} {output.path} ends in '/', which names a folder; {flag} takes a file name")
    if path.is_dir():
        raise OutputPathError(f"{flag} {output.path} is a folder; {flag} takes a file name")


def _check_writable(output: Output) -> None:
    path, flag = Path(output.path), output.flag
    if not output.folder and path.exists() and not path.is_file():
        _check_device(path, flag)  # a device or FIFO (or a link to one): written through, in place
        return
    if output.folder and path.is_dir():
        _probe(path, flag, output.path)
        return
    ancestor = path.absolute().parent if not output.folder else path.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        kind = "folder" if output.folder else "file"
        raise OutputPathError(f"{flag} {output.path}: cannot create this {kind}, {ancestor} is a file, not a folder")
    _probe(ancestor, flag, output.path)


def _check_device(path: Path, flag: str) -> None:
    """A character device (/dev/null, /dev/stdout) is opened for writing and closed; a FIFO is taken as it is
    (opening it would wait for a reader)."""
    if stat.S_ISFIFO(path.stat().st_mode):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as exc:
        raise OutputPathError(f"{flag} {path} cannot be written ({exc.strerror or exc})") from exc


def _probe(folder: Path, flag: str, path: str | os.PathLike[str]) -> None:
    """Create and remove a temporary file in `folder`: the one test that also holds for root and read-only mounts."""
    try:
        fd, name = tempfile.mkstemp(prefix=".edgeseg-probe-", dir=folder)
    except OSError as exc:
        raise OutputPathError(f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc})") from exc
    os.close(fd)
    os.unlink(name)


# ----- against the inputs -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Root:
    input: Input
    path: Path  # resolved
    is_dir: bool


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _input_roots(inputs: Sequence[Input]) -> list[_Root]:
    """Each input resolved, plus the targets of the symlinks inside input folders (a dataset whose classes.json
    links elsewhere protects that file too)."""
    roots: list[_Root] = []
    for item in inputs:
        path = Path(item.path).resolve()
        roots.append(_Root(item, path, path.is_dir()))
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                for name in dirs + files:
                    entry = Path(folder) / name
                    if entry.is_symlink() and entry.exists():
                        target = entry.resolve()
                        roots.append(_Root(item, target, target.is_dir()))
    return roots


def _check_against_inputs(output: Output, roots: Sequence[_Root]) -> None:
    for index, (what, path) in enumerate(output.paths):
        is_folder = output.folder and index == 0
        resolved = path.resolve()
        for root in roots:
            if resolved == root.path:
                raise OutputPathError(f"{what} is {_describe(root)}: writing it would destroy an input; choose "
                                      "another path")
            if not root.is_dir or root.path not in resolved.parents:
                continue
            if root.input.whole:
                raise OutputPathError(f"{what} is inside {_describe(root)}, which is read as a whole; write it "
                                      "elsewhere so the input stays as it is")
            read = not root.input.suffixes or resolved.suffix.lower() in root.input.suffixes
            if not is_folder and read and resolved.is_file():
                raise OutputPathError(f"{what} would replace {resolved.name}, a file of {_describe(root)}; "
                                      "choose another path")


def _describe(root: _Root) -> str:
    given = Path(root.input.path)
    where = str(given) if given.resolve() == root.path else f"{given} (via {root.path})"
    return f"{root.input.what} {where}"


# ----- against each other -------------------------------------------------------------------------------------------
def _check_against_each_other(outputs: Sequence[Output]) -> None:
    seen: dict[Path, str] = {}
    for output in outputs:
        for what, path in output.paths:
            resolved = path.resolve()
            if resolved in seen:
                raise OutputPathError(f"{seen[resolved]} and {what} are the same path: one would overwrite the other; "
                                      "give each output its own path")
            seen[resolved] = what


# ----- the inputs commands share -----------------------------------------------------------------------------------
def model_inputs(model: str | os.PathLike[str] | None, what: str = "the model") -> list[Input]:
    """A model file and, for an engine, its sidecar (<engine>.json)."""
    if model is None:
        return []
    from edgeseg.files import model_kind
    from edgeseg.sidecar import sidecar_path

    inputs = [Input(what, model)]
    if model_kind(model) == "engine":
        inputs.append(Input(f"the sidecar of {what}", sidecar_path(model)))
    return inputs


def dataset_input(data: str | os.PathLike[str] | None, flag: str = "--data") -> list[Input]:
    """A dataset folder, read as a whole (images, labels, classes.json); nothing for 'synthetic'."""
    if data is None or str(data) == "synthetic":
        return []
    return [Input(f"the {flag} dataset", data, whole=True)]


def source_inputs(sources: Iterable[str | os.PathLike[str]], flag: str = "--source") -> list[Input]:
    """Video files, image files and image folders (read by image suffix); cameras and URLs are no files."""
    from edgeseg.files import IMAGE_SUFFIXES

    return [Input(f"the {flag}", source, suffixes=IMAGE_SUFFIXES) for source in sources
            if source is not None and _exists(Path(source))]


__all__ = ["Input", "Output", "check_outputs", "is_folder_name", "model_inputs", "dataset_input", "source_inputs"]
