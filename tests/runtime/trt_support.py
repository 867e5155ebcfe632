"""Can this machine run the engines the tests build? Decided before any engine is tried, from the GPU and the
TensorRT flavour's own support list, so an engine test that cannot run here is skipped saying exactly why, and an
engine that fails where it should run is a failure, never a skip."""

from __future__ import annotations

import importlib
import re

from edgeseg._optional import is_available
from edgeseg.runtime.gpu import CudaPythonApi, gpu_available

# The exporter builds TensorRT-RTX engines ahead of time for these (its documented default; README "Export").
RTX_AOT_TARGETS = ("8.0", "8.6", "8.9", "12.0")


def rtx_supported_capabilities(trt_rtx) -> list[str]:
    """TensorRT-RTX's own list of the GPUs it runs on: its ComputeCapability enum (SM75 -> '7.5', SM120 -> '12.0')."""
    names = [name for name in dir(trt_rtx.ComputeCapability) if re.fullmatch(r"SM\d{2,3}", name)]
    return sorted((f"{name[2:-1]}.{name[-1]}" for name in names), key=lambda cc: tuple(map(int, cc.split("."))))


def engine_skip_reason(flavour: str = "auto") -> str | None:
    """Why engines built by `flavour` ('auto': the first importable builder, as the exporter picks) cannot run on
    GPU 0 here; None when they can."""
    if not gpu_available():
        return "needs an NVIDIA GPU: cuda.bindings cudaGetDeviceCount() found no device (or cuda-python is missing)"
    if flavour == "auto":
        flavour = next((f for f in ("tensorrt", "tensorrt_rtx") if is_available(f)), "")
        if not flavour:
            return "needs TensorRT: neither tensorrt nor tensorrt_rtx is importable"
    elif not is_available(flavour):
        return f"needs TensorRT: {flavour} is not importable"
    if flavour != "tensorrt_rtx":
        return None
    trt_rtx = importlib.import_module("tensorrt_rtx")
    device = CudaPythonApi().device_info(0)
    supported = rtx_supported_capabilities(trt_rtx)
    if device.compute_capability not in supported:
        return (f"the installed TensorRT flavour is TensorRT-RTX {trt_rtx.__version__}, which does not support this "
                f"GPU: {device.name} is compute capability {device.compute_capability}, and TensorRT-RTX runs on "
                f"{', '.join(supported)} only; install TensorRT (pip install 'edgeseg[tensorrt]') to run engines here")
    if device.compute_capability not in RTX_AOT_TARGETS:
        return (f"TensorRT-RTX engines are built ahead of time for {', '.join(RTX_AOT_TARGETS)}; {device.name} is "
                f"compute capability {device.compute_capability}")
    return None
