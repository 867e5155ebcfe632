"""Which TensorRT is here and which may run an engine: the one place that picks a TensorRT flavour.

Flavours that build engines (the exporter's choice, 'auto' in this order; edgeseg.sidecar.FLAVOURS):
- `tensorrt`: TensorRT 10.x (JetPack 6 on Jetson Orin, x86 servers) or 11.x; builds and runs engines.
- `tensorrt_rtx`: TensorRT-RTX for RTX-class GPUs (compute capability 7.5, 8.0, 8.6, 8.9, 12.0, 12.1); builds ahead of
  time on a machine without a GPU and compiles kernels at first run (see the runtime cache).
Runtime-only flavours, for engines built by `tensorrt` with VERSION_COMPATIBLE (sidecar `version_compatible`):
- `tensorrt_dispatch`: the dispatch runtime, which loads the lean runtime embedded in the plan.
- `tensorrt_lean`: the lean runtime, a small library that runs version-compatible plans of its own version.

Which runtime may run an engine (`runtime_flavours_for`):
- a `tensorrt_rtx` engine: `tensorrt_rtx` of exactly the version that built it;
- a `tensorrt` engine: `tensorrt` of exactly that version; if it is version-compatible, also a `tensorrt` or
  `tensorrt_dispatch` of the same or a later version, or a `tensorrt_lean` of the same version.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Sequence

from edgeseg._optional import is_available, require
from edgeseg.errors import BackendUnavailableError, ConfigError
from edgeseg.sidecar import FLAVOURS

BUILD_FLAVOURS = FLAVOURS
RUNTIME_FLAVOURS = ("tensorrt", "tensorrt_rtx", "tensorrt_dispatch", "tensorrt_lean")
# Compute capabilities TensorRT-RTX 1.x runs on (its ComputeCapability enum: SM75 ... SM121); 9.x (H100/H200) and
# 10.x (B200) are data-centre GPUs it does not support.
RTX_COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")


def available_flavours(*, runtime: bool = False) -> list[str]:
    """The importable flavours, in 'auto' order (never imports them): builders, or with runtime=True every runtime."""
    return [f for f in (RUNTIME_FLAVOURS if runtime else BUILD_FLAVOURS) if is_available(f)]


def import_trt(flavour: str = "auto") -> tuple[ModuleType, str]:
    """(module, flavour name): the first importable builder for 'auto', or exactly the flavour asked."""
    if flavour not in ("auto",) + RUNTIME_FLAVOURS:
        raise ConfigError(f"TensorRT flavour must be 'auto' or one of {RUNTIME_FLAVOURS}, got {flavour!r}")
    if flavour == "auto":
        found = available_flavours()
        if not found:
            raise BackendUnavailableError(
                "neither 'tensorrt' nor 'tensorrt_rtx' is importable: install TensorRT (JetPack ships it; "
                "pip install 'edgeseg[tensorrt]' on x86) or TensorRT-RTX (pip install 'edgeseg[tensorrt-rtx]')"
            )
        flavour = found[0]
    return require(flavour, f"TensorRT ({flavour})"), flavour


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); non-numeric tails ('1.7.1.116+cuda13') are ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", str(version).split("+")[0])[:4])


def runtime_flavours_for(built_flavour: str, version_compatible: bool) -> tuple[str, ...]:
    """The runtime flavours that may run an engine built by `built_flavour`, in the order 'auto' tries them."""
    if built_flavour == "tensorrt" and version_compatible:
        return ("tensorrt", "tensorrt_dispatch", "tensorrt_lean")
    return (built_flavour,)


def version_fits(built_flavour: str, built_version: str, version_compatible: bool, runtime_flavour: str,
                 runtime_version: str) -> bool:
    """True when `runtime_flavour` `runtime_version` may deserialize the engine (see the module docstring)."""
    if runtime_flavour not in runtime_flavours_for(built_flavour, version_compatible):
        return False
    built, running = version_tuple(built_version), version_tuple(runtime_version)
    if built == running:
        return True
    return version_compatible and runtime_flavour in ("tensorrt", "tensorrt_dispatch") and running >= built


def choose_runtime_flavour(built_flavour: str, version_compatible: bool, requested: str = "auto",
                           importable: Sequence[str] | None = None) -> str:
    """The flavour to run an engine with: `requested`, or for 'auto' the first importable one that may run it.

    BackendUnavailableError when none is importable, ConfigError when `requested` can never run this engine."""
    allowed = runtime_flavours_for(built_flavour, version_compatible)
    importable = list(available_flavours(runtime=True) if importable is None else importable)
    if requested != "auto":
        if requested not in RUNTIME_FLAVOURS:
            raise ConfigError(f"flavour must be 'auto' or one of {RUNTIME_FLAVOURS}, got {requested!r}")
        if requested not in allowed:
            why = "" if version_compatible or built_flavour != "tensorrt" else " (it is not version-compatible)"
            raise ConfigError(f"flavour {requested!r} cannot run an engine built by {built_flavour}{why}; it runs "
                              f"on {' or '.join(allowed)}")
        return requested
    for flavour in allowed:
        if flavour in importable:
            return flavour
    raise BackendUnavailableError(
        f"this engine was built by {built_flavour} and runs on {' or '.join(allowed)}, none of which is importable "
        f"here (importable: {', '.join(importable) or 'none'}); install one, or rebuild the engine with the TensorRT "
        "this machine has: `edgeseg export CKPT --out DIR --engine`")
