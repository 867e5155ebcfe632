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
    "tensorrt": "pip install 'edgeseg[tensorrt]' on x86; on Jetson, JetPack ships it (use a --system-site-packages venv)",
    "tensorrt_rtx": "pip install 'edgeseg[tensorrt-rtx]'",
    # Runtime-only TensorRT for version-compatible engines: no extra brings them, the full TensorRT runs those too.
    "tensorrt_dispatch": "pip install tensorrt-dispatch-cu12, or run the engine with 'edgeseg[tensorrt]'",
    "tensorrt_lean": "pip install tensorrt-lean-cu12, or run the engine with 'edgeseg[tensorrt]'",
    "cuda": ("pip install 'edgeseg[tensorrt]' (CUDA 12), 'edgeseg[tensorrt-rtx]' (CUDA 13) or 'edgeseg[jetson]': "
             "each brings the cuda-python that matches its CUDA"),
    "pycuda": "pip install 'edgeseg[pycuda]'",
    "cv2": ("pip install 'edgeseg[opencv]'; on Jetson use JetPack's OpenCV instead (GStreamer, CSI cameras) from a "
            "--system-site-packages venv"),
    "PIL": "pip install 'edgeseg[train]' (it brings pillow)",
    "tritonclient": "pip install 'edgeseg[triton]'",
    # Only its tritonserver binary is used; --no-deps because its metadata pins numpy<2 (see edgeseg/serve.py).
    "pytriton": ("pip install --no-deps nvidia-pytriton, or run inside NVIDIA's tritonserver container; "
                 "the client side is 'edgeseg[triton]'"),
    "matplotlib": "pip install 'edgeseg[bench]' (charts; 'edgeseg[train]' brings it too)",
    "tqdm": "pip install edgeseg again: tqdm is one of its dependencies",
}

# Extra -> the optional modules it brings, for the extras a command's users install (COMMAND_EXTRAS).
# tests/test_cli_conventions.py checks both tables against pyproject.toml.
EXTRA_MODULES = {
    "train": ("torch", "onnx", "onnxruntime", "PIL", "matplotlib"),
    "export": ("torch", "onnx", "onnxruntime", "onnxconverter_common", "PIL"),
    "bench": ("matplotlib",),
}

# `edgeseg` subcommand -> the extra its users install: a missing module it brings is named with that extra.
COMMAND_EXTRAS = {"models": "train", "train": "train", "eval": "train", "demo": "train", "export": "export",
                  "bench": "bench"}


def _hint_for(module: str) -> str | None:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        hint = _INSTALL_HINTS.get(".".join(parts[:end]))
        if hint:
            return hint
    return None


def is_optional(module: str) -> bool:
    """True for the optional dependencies EdgeSeg knows how to install (`module` or one of its parents)."""
    return _hint_for(module) is not None


def install_hint(module: str, command: str | None = None) -> str:
    """How to install `module`, naming the edgeseg extra that brings it.

    With `command` (an `edgeseg` subcommand), the extra that command's users install is named when it brings the
    module (`edgeseg export` without torch: 'edgeseg[export]', not the module's usual 'edgeseg[train]')."""
    extra = COMMAND_EXTRAS.get(command or "")
    if extra and module.split(".")[0] in EXTRA_MODULES[extra]:
        return f"pip install 'edgeseg[{extra}]'"
    return _hint_for(module) or f"'{module.split('.')[0]}' is not a dependency EdgeSeg knows; install what provides it"


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
