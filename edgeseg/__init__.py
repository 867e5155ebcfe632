"""EdgeSeg: semantic segmentation from training to real-time use on NVIDIA edge and desktop GPUs.

Importing the package imports neither torch nor TensorRT: training/export modules import torch themselves, and
the runtime (`edgeseg.runtime`) needs only numpy, OpenCV and a backend.
"""

from edgeseg.config import ModelMeta
from edgeseg.errors import (
    BackendUnavailableError,
    ConfigError,
    DataError,
    EdgeSegError,
    ExportError,
    ModelFileError,
    SourceError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "ConfigError",
    "DataError",
    "EdgeSegError",
    "ExportError",
    "ModelFileError",
    "ModelMeta",
    "SourceError",
    "__version__",
]
