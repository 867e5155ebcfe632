"""EdgeSeg's exception hierarchy: every user-facing failure is one of these, with a message that says what to do."""

from __future__ import annotations


class EdgeSegError(Exception):
    """Base class of every error EdgeSeg raises on purpose."""


class DataError(EdgeSegError):
    """A dataset, label file, image or frame is missing, unreadable or inconsistent."""


class ModelFileError(EdgeSegError):
    """A checkpoint, ONNX model, engine or sidecar is corrupt, truncated or does not match."""


class ConfigError(EdgeSegError):
    """An option or combination of options is invalid (unknown model name, bad size, ...)."""


class BackendUnavailableError(EdgeSegError):
    """An optional dependency (onnxruntime, tensorrt, CUDA, a GPU) needed for the request is missing."""


class ExportError(EdgeSegError):
    """The export pipeline could not produce what was asked (unsupported op, failed check, failed build)."""


class SourceError(EdgeSegError):
    """A video source could not be opened or was lost."""


class CudaError(EdgeSegError):
    """A CUDA runtime call or kernel launch failed; the message names the call and CUDA's error string.

    The one CUDA error class: cuda-python / pycuda failures (edgeseg.runtime.gpu) and edgeseg._C's kernel launches
    (mapped in edgeseg.runtime.ops) both raise it, so the CLI reports them like any other EdgeSegError."""


class OutputPathError(EdgeSegError):
    """An output path is unwritable, clashes with an input, or would replace something that must not be replaced."""
