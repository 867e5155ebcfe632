"""Heavy optional dependencies are imported here, lazily, so the runtime runs without torch or TensorRT."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from edgeseg.errors import BackendUnavailableError

_INSTALL_HINTS = {
    "torch": "pip install torch==2.13.0 (training and export need it; the runtime does not)",
    "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu)",
    "onnx": "pip install onnx",
    "tensorrt": "install TensorRT from NVIDIA (JetPack ships it on Jetson)",
    "tensorrt_rtx": "pip install tensorrt-rtx-cu13",
    "cuda.bindings": "pip install cuda-python",
}


def is_available(module: str) -> bool:
    """True when `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or is a stub
        return False


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` or raise BackendUnavailableError naming what it is needed for and how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = _INSTALL_HINTS.get(module, f"pip install {module}")
        raise BackendUnavailableError(f"{purpose} needs '{module}', which is not importable ({exc}); {hint}") from exc
