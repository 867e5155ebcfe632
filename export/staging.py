"""Staged exports: each export is built in a folder beside `--out` and swapped in whole at the end, under a lock.

So `--out` always holds either the previous export or the new one, never a mix (a SIGKILL or Ctrl-C mid-export
leaves the previous one as it was), and two exports into one `--out` cannot interleave: the second refuses,
naming the first one's PID.

- Lock: `.<name>.lock` beside `--out`, held with flock for the whole export (the kernel drops it when the process
  dies, so a killed export never blocks the next one); it holds the PID for the refusal message.
- Staging: `.<name>.staging-<pid>` beside `--out` (same file system, so the swap is a rename). A staging folder
  left by a killed export is removed by the next export into the same `--out`.
- Commit: the manifest is written into the staging folder; what `--out` held that this export does not replace is
  carried over (hard links, so nothing is copied) except the previous export's stale files (edgeseg.export.manifest
  says which); then the two folders are exchanged in one step (renameat2 RENAME_EXCHANGE; two renames where the
  file system lacks it) and the old one is removed.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from edgeseg.errors import OutputPathError
from edgeseg.export.manifest import MANIFEST_NAME, read_manifest, stale_files, write_manifest
from edgeseg.files import os_error_reason, sha256_file

log = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class StagedExport:
    """`with StagedExport(out_dir, inputs=..., **info) as stage:` write into `stage.path`; `stage.staged(p)` maps a
    path under `out_dir` to its place in the staging folder. On success the staging folder becomes `out_dir`; on
    any failure it is removed and `out_dir` is left as it was."""

    def __init__(self, out_dir: str | Path, inputs: Iterable[Path] = (), **info: Any) -> None:
        self.out_dir = Path(out_dir)
        self.inputs = [Path(p).resolve() for p in inputs if Path(p).exists()]
        self.info = info
        parent, name = self.out_dir.absolute().parent, self.out_dir.absolute().name
        self.path = parent / f".{name}.staging-{os.getpid()}"
        self._lock_path = parent / f".{name}.lock"
        self._lock_fd: int | None = None
        self._created: list[Path] = []  # parent folders this export creates, deepest first

    # ----- before any work ----------------------------------------------------------------------------------------
    def check(self) -> None:
        """What would stop the swap at the end, refused now: a mount point, or the current folder (or one above it)
        as --out, which the swap would leave the shell in a removed folder."""
        out = self.out_dir.absolute()
        if out.is_dir():
            if out.stat().st_dev != out.parent.stat().st_dev:
                raise OutputPathError(f"--out {self.out_dir} is a mount point: an export is built beside --out and "
                                      "swapped in, so give a folder inside it")
            cwd = Path.cwd().resolve()
            if out.resolve() == cwd or out.resolve() in cwd.parents:
                raise OutputPathError(f"--out {self.out_dir} holds the current folder, which the export replaces "
                                      "with a new folder at the end: run it from elsewhere or give another --out")

    def __enter__(self) -> "StagedExport":
        self._created = [p for p in self.out_dir.absolute().parents if not p.exists()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(f"--out {self.out_dir}: cannot create {self.path.parent} "
                                  f"({os_error_reason(exc)})") from exc
        self._lock()
        try:
            for stale in self.path.parent.glob(f".{self.out_dir.absolute().name}.staging-*"):
                shutil.rmtree(stale, ignore_errors=True)  # left by a killed export: we hold the lock now
            self.path.mkdir()
        except OSError as exc:
            self._unlock()
            raise OutputPathError(f"--out {self.out_dir}: cannot create the staging folder {self.path} beside it "
                                  f"({os_error_reason(exc)})") from exc
        return self

    def staged(self, path: str | Path) -> Path:
        """Where a path under --out is written during the export (others are written where they are)."""
        path = Path(path)
        try:
            return self.path / path.absolute().relative_to(self.out_dir.absolute())
        except ValueError:
            return path

    def final(self, path: str | Path) -> Path:
        """The inverse of staged(): where a file written in the staging folder ends up."""
        path = Path(path)
        try:
            return self.out_dir / path.absolute().relative_to(self.path)
        except ValueError:
            return path

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
            self._unlock()
            if exc_type is not None:
                for folder in self._created:
                    try:
                        folder.rmdir()
                    except OSError:  # not empty (something else was put there): leave it
                        break

    # ----- the lock ---------------------------------------------------------------------------------------------
    def _lock(self) -> None:
        while True:
            try:
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputPathError(f"--out {self.out_dir}: cannot create the lock {self._lock_path} "
                                      f"({os_error_reason(exc)})") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputPathError(f"--out {self.out_dir} is being written by another export (PID {holder}); "
                                      "wait for it to finish, or export into another folder") from None
            try:  # the holder before us may have removed the file after we opened it: lock the current one
                if os.fstat(fd).st_ino == os.stat(self._lock_path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            os.unlink(self._lock_path)
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    # ----- the swap ---------------------------------------------------------------------------------------------
    def _commit(self) -> None:
        written = {p.relative_to(self.path).as_posix(): sha256_file(p)
                   for p in sorted(self.path.rglob("*")) if p.is_file() and not p.is_symlink()}
        previous = read_manifest(self.out_dir) if self.out_dir.is_dir() else {}
        skip = stale_files(self.out_dir, previous, written, self.inputs) if previous else set()
        write_manifest(self.path, written, **self.info)
        if not self.out_dir.exists():
            os.rename(self.path, self.out_dir)
            return
        shutil.copymode(self.out_dir, self.path)
        self._carry_over(self.out_dir, self.path, skip)
        _exchange(self.path, self.out_dir)  # self.path now holds the previous export: removed by __exit__
        for name in sorted(skip):
            log.info("removed %s: the previous export into %s wrote it and this one did not", name, self.out_dir)

    def _carry_over(self, old: Path, new: Path, skip: set[str]) -> None:
        """Hard-link into `new` what `old` holds and this export did not write, except the stale files."""
        for entry in sorted(old.iterdir()):
            target = new / entry.name
            name = entry.relative_to(self.out_dir).as_posix()
            if name in skip or name == MANIFEST_NAME or target.exists() or target.is_symlink():
                continue
            if entry.is_symlink():
                os.symlink(os.readlink(entry), target)
            elif entry.is_dir():
                target.mkdir()
                shutil.copymode(entry, target)
                self._carry_over(entry, target, skip)
            else:
                try:
                    os.link(entry, target)
                except OSError:  # a file system without hard links
                    shutil.copy2(entry, target)


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step (Linux renameat2); two renames where the file system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        error = ctypes.get_errno()
        if error not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OutputPathError(f"cannot swap the new export into {b}: {os.strerror(error)}")
    aside = a.with_name(a.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)
