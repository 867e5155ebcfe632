"""Does this engine belong here? Checks run before an engine is deserialised, from its sidecar and this machine.

A serialized engine is tied to the TensorRT flavour and version that built it and to a GPU (one compute capability,
an RTX ahead-of-time list, or Ampere and later for hardware-compatible engines). Deserialising it in the wrong place
fails deep inside TensorRT with a terse log line; these checks refuse it first with what it was built for, what this
machine is, and the command that rebuilds it here. The runtime's own header check (`get_engine_validity`, TensorRT-RTX
and recent TensorRT) runs after them when the runtime has it.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from edgeseg.errors import BackendUnavailableError, ModelFileError
from edgeseg.runtime.gpu.api import DeviceInfo, cc_tuple
from edgeseg.runtime.trt_flavours import RTX_COMPUTE_CAPABILITIES, version_fits
from edgeseg.sidecar import EngineSidecar

log = logging.getLogger(__name__)

REBUILD = "`edgeseg export CKPT --out DIR --engine` on this machine"


def built_for(sidecar: EngineSidecar) -> str:
    """'tensorrt 10.3.0 on Orin (compute capability 8.7), version-compatible' and the like."""
    text = f"{sidecar.flavour} {sidecar.trt_version}"
    if sidecar.gpu_name or sidecar.compute_capability:
        text += f" on {sidecar.gpu_name or 'a GPU'} (compute capability {sidecar.compute_capability or '?'})"
    if sidecar.compute_capabilities:
        text += f" for compute capabilities {', '.join(sidecar.compute_capabilities)}"
    flags = []
    if sidecar.version_compatible:
        flags.append("version-compatible")
    if sidecar.hardware_compatibility != "none":
        flags.append(f"hardware compatibility {sidecar.hardware_compatibility}")
    return text + (f" ({', '.join(flags)})" if flags else "")


def this_machine(flavour: str, version: str, device: DeviceInfo) -> str:
    return f"{flavour} {version} on {device.name} (compute capability {device.compute_capability})"


def check_placement(sidecar: EngineSidecar, engine_name: str, flavour: str, version: str, device: DeviceInfo) -> None:
    """Refuse an engine built for another TensorRT or GPU (ModelFileError / BackendUnavailableError)."""
    here = this_machine(flavour, version, device)

    def refuse(error: type[Exception], why: str, rebuild: str = REBUILD) -> None:
        raise error(f"engine {engine_name} was built for {built_for(sidecar)}; this is {here}: {why}. "
                    f"Rebuild it with {rebuild}")

    if not version_fits(sidecar.flavour, sidecar.trt_version, sidecar.version_compatible, flavour, version):
        refuse(ModelFileError, "engines run only on the TensorRT version that built them (or a later one, for "
                               "version-compatible engines)")
    cc = device.compute_capability
    if sidecar.flavour == "tensorrt_rtx":
        if cc not in RTX_COMPUTE_CAPABILITIES:
            refuse(BackendUnavailableError,
                   f"TensorRT-RTX does not run on compute capability {cc} (it supports "
                   f"{', '.join(RTX_COMPUTE_CAPABILITIES)})",
                   "`edgeseg export CKPT --out DIR --engine --flavour tensorrt` (TensorRT, not TensorRT-RTX) here")
        if sidecar.compute_capabilities and cc not in sidecar.compute_capabilities:
            refuse(BackendUnavailableError, f"compute capability {cc} is not among the ones it was compiled for")
        if not sidecar.compute_capabilities and sidecar.compute_capability and sidecar.compute_capability != cc:
            refuse(BackendUnavailableError, "it was compiled for the builder's GPU only")
        return
    level = sidecar.hardware_compatibility
    if level == "ampere_plus":
        if cc_tuple(cc) < (8, 0):
            refuse(BackendUnavailableError, "hardware-compatible (Ampere+) engines need compute capability 8.0 or "
                                            "later")
        return
    if sidecar.compute_capability and sidecar.compute_capability != cc:
        refuse(BackendUnavailableError, "TensorRT engines run only on GPUs of the compute capability they were "
                                        "built on")
    if level == "none" and sidecar.gpu_name and sidecar.gpu_name != device.name:
        log.warning("engine %s was built on %s and runs on %s (same compute capability %s): it works, but TensorRT "
                    "tuned it for the other GPU; rebuild it here for full speed", engine_name, sidecar.gpu_name,
                    device.name, cc)


def check_validity(trt: ModuleType, runtime: Any, blob: bytes, engine_name: str, sidecar: EngineSidecar,
                   here: str) -> None:
    """The runtime's own verdict on the engine header, where the API has `get_engine_validity`."""
    probe = getattr(runtime, "get_engine_validity", None)
    validity_enum = getattr(trt, "EngineValidity", None)
    if probe is None or validity_enum is None:
        return
    validity, diagnostics = probe(blob)
    reasons = _diagnostics(trt, int(diagnostics))
    if validity == validity_enum.INVALID:
        error = ModelFileError if {"MALFORMED_ENGINE", "VERSION_MISMATCH"} & set(reasons) else BackendUnavailableError
        raise error(f"{trt.__name__} says engine {engine_name} cannot run here ({', '.join(reasons) or 'no reason'}"
                    f"); it was built for {built_for(sidecar)}, this is {here}. Rebuild it with {REBUILD}")
    if validity == getattr(validity_enum, "SUBOPTIMAL", object()):
        log.warning("%s says engine %s will run here with reduced performance (%s); rebuild it with %s",
                    trt.__name__, engine_name, ", ".join(reasons) or "no reason given", REBUILD)


def _diagnostics(trt: ModuleType, bits: int) -> list[str]:
    flags = getattr(trt, "EngineInvalidityDiagnostics", None)
    if flags is None or not bits:
        return []
    names = [name for name in dir(flags) if name.isupper()]
    return [name for name in names if int(getattr(flags, name)) & bits]
