"""Which TensorRT is here: the one place that picks a TensorRT flavour, for the runtime and the exporter alike.

Flavours, in the order 'auto' prefers them:
- `tensorrt`: TensorRT 10.x (JetPack 6 on Jetson Orin, x86 servers) or 11.x; builds and runs engines.
- `tensorrt_rtx`: TensorRT-RTX for RTX desktops (compute capability 7.5, 8.0, 8.6, 8.9, 12.x); builds ahead of time
  on a machine without a GPU, compiles kernels at first run.
"""

from __future__ import annotations

from types import ModuleType

from edgeseg._optional import is_available, require
from edgeseg.errors import BackendUnavailableError, ConfigError
from edgeseg.sidecar import FLAVOURS


def available_flavours() -> list[str]:
    """The importable flavours, in 'auto' order (never imports them)."""
    return [f for f in FLAVOURS if is_available(f)]


def import_trt(flavour: str = "auto") -> tuple[ModuleType, str]:
    """(module, flavour name): the first importable flavour for 'auto', or exactly the one asked."""
    if flavour not in ("auto",) + FLAVOURS:
        raise ConfigError(f"TensorRT flavour must be 'auto' or one of {FLAVOURS}, got {flavour!r}")
    if flavour == "auto":
        found = available_flavours()
        if not found:
            raise BackendUnavailableError(
                "neither 'tensorrt' nor 'tensorrt_rtx' is importable: install TensorRT (JetPack ships it; "
                "pip install 'edgeseg[tensorrt]' on x86) or TensorRT-RTX (pip install 'edgeseg[tensorrt-rtx]')"
            )
        flavour = found[0]
    return require(flavour, f"TensorRT ({flavour})"), flavour
