"""Heavy optional dependencies are imported here, lazily, so the runtime runs without torch or TensorRT."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from edgeseg.errors import BackendUnavailableError

# Module -> how to get it, naming the extra of pyproject.toml that brings it (with the version pins that fit).
# Submodules ("cuda.bindings.runtime", "onnxruntime.quantization") fall back to their parent's hint.
_INSTALL_HINTS = {
    "torch": "pip install 'edgeseg[train]' (training and export need torch; the runtime does not)",
    "onnxruntime": "pip install 'edgeseg[onnx]' (CPU) or 'edgeseg[onnxruntime-gpu]' (CUDA and TensorRT providers)",
    "onnx": "pip install 'edgeseg[export]'",
    "onnxconverter_common": "pip install 'edgeseg[export]'",
    "onnxslim": "pip install 'edgeseg[export]'",
    "tensorrt": "pip install 'edgeseg[tensorrt]' on x86; on Jetson, JetPack ships it (use a --system-site-packages venv)",
    "tensorrt_rtx": "pip install 'edgeseg[tensorrt-rtx]'",
    "cuda": ("pip install 'edgeseg[tensorrt]' (CUDA 12), 'edgeseg[tensorrt-rtx]' (CUDA 13) or 'edgeseg[jetson]': "
             "each brings the cuda-python that matches its CUDA"),
    "pycuda": "pip install 'edgeseg[pycuda]'",
    "cv2": ("pip install 'edgeseg[opencv]'; on Jetson use JetPack's OpenCV instead (GStreamer, CSI cameras) from a "
            "--system-site-packages venv"),
    "PIL": "pip install 'edgeseg[train]' (Pillow)",
    "matplotlib": "pip install 'edgeseg[bench]'",
    "tqdm": "pip install edgeseg again: tqdm is one of its dependencies",
}


def install_hint(module: str) -> str:
    """How to install `module`, naming the edgeseg extra that brings it."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        hint = _INSTALL_HINTS.get(".".join(parts[:end]))
        if hint:
            return hint
    return f"pip install {parts[0]}"


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
        raise BackendUnavailableError(
            f"{purpose} needs '{module}', which is not importable ({exc}); {install_hint(module)}"
        ) from exc
