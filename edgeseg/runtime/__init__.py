"""The runtime: loads exported models and segments frames. Needs numpy, OpenCV and a backend; never torch."""

from __future__ import annotations

from typing import Any

__all__ = ["Segmenter", "TTA", "open_backend"]


def __getattr__(name: str) -> Any:  # lazy, so `import edgeseg.runtime.ops` stays light
    if name == "Segmenter":
        from edgeseg.runtime.segmenter import Segmenter

        return Segmenter
    if name == "TTA":
        from edgeseg.runtime.tta import TTA

        return TTA
    if name == "open_backend":
        from edgeseg.runtime.backends import open_backend

        return open_backend
    raise AttributeError(name)
