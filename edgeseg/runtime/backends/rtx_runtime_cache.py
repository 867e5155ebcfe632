"""TensorRT-RTX's runtime cache: the kernels it compiles at the first inference of every process, kept in a file.

TensorRT-RTX compiles its kernels just in time for the GPU it runs on. Without a cache every start pays that again;
with one (the file the sidecar's `runtime_cache` names, next to the engine) the second start loads them. The cache
is attached through an IRuntimeConfig when the execution context is made, loaded if the file exists (TensorRT-RTX
rejects, and we then ignore, a cache from another GPU, driver or version), and written after the first inference
and at close when it changed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgeseg.errors import OutputPathError
from edgeseg.files import write_file

log = logging.getLogger(__name__)


class RuntimeCacheFile:
    """One engine's runtime cache and its file. `attach(engine)` gives the IRuntimeConfig for its context."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.loaded = False  # the file existed and TensorRT-RTX accepted it
        self._cache: Any = None
        self._written: bytes | None = None

    def attach(self, engine: Any) -> Any:
        """A runtime config carrying the cache (loaded from the file when it exists and fits this machine)."""
        config = engine.create_runtime_config()
        self._cache = config.create_runtime_cache()
        if self.path.is_file():
            blob = self.path.read_bytes()
            self.loaded = bool(self._cache.deserialize(blob))
            if self.loaded:
                self._written = blob
                log.info("loaded the TensorRT-RTX runtime cache %s (%d KiB)", self.path.name, len(blob) >> 10)
            else:
                log.info("the TensorRT-RTX runtime cache %s was made for another GPU, driver or version; kernels "
                         "are compiled again and the file is replaced", self.path.name)
        if not config.set_runtime_cache(self._cache):
            log.warning("TensorRT-RTX refused the runtime cache for %s; every start compiles kernels again",
                        self.path.name)
            self._cache = None
        return config

    def save(self) -> bool:
        """Write the cache when it holds something new; True when written. A file that cannot be written costs only
        start-up time, so that is a warning, not an error."""
        if self._cache is None:
            return False
        blob = bytes(self._cache.serialize())
        if not blob or blob == self._written:
            return False
        try:
            write_file(self.path, blob)
        except OutputPathError as exc:
            log.warning("could not save the TensorRT-RTX runtime cache (%s); the next start compiles kernels again",
                        exc)
            return False
        self._written = blob
        log.info("saved the TensorRT-RTX runtime cache %s (%d KiB)", self.path.name, len(blob) >> 10)
        return True
