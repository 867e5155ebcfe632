"""EdgeSeg: semantic segmentation from training to real-time use on NVIDIA edge and desktop GPUs.

The data flows train -> export -> engine -> runtime -> bench, and the folders follow it:

    edgeseg/data/       datasets (synthetic scenes, CamVid-style folders, VOC, Cityscapes) and frame files
    edgeseg/models/     FCN-32s/16s/8s and U-Net heads on VGG16 / ResNet-18 / MobileNetV3 backbones, the registry
    edgeseg/training/   the trainer, checkpoints, and the torch predictor used for validation
    export/             installed as `edgeseg.export`: PyTorch -> ONNX -> FP16 / INT8 Q/DQ -> TensorRT engine
    edgeseg/runtime/    no torch: the processing plan (plan.py), backends (ONNX Runtime, TensorRT), kernels (ops)
    edgeseg/pipeline/   streaming: sources -> batched inference -> sinks (MP4, mask PNGs, window), with stats
    edgeseg/cli/        one module per `edgeseg` subcommand
    cpp_ext/            the C++/CUDA kernels behind edgeseg.runtime.ops (built as edgeseg._C)

Facts with one home: config.ModelMeta (what travels with the weights), runtime.plan.ProcessingPlan (every step a
frame goes through), sidecar.EngineSidecar (the engine's sidecar format), export.formats (the export formats),
files (how outputs are written), errors (the exception hierarchy). The runtime imports nothing from the export
side except these shared modules.

Importing the package imports neither torch nor TensorRT: training/export modules import torch themselves, and
the runtime (`edgeseg.runtime`) needs only numpy, OpenCV and a backend.
"""

from edgeseg.config import ModelMeta
from edgeseg.errors import (
    BackendUnavailableError,
    ConfigError,
    CudaError,
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
    "CudaError",
    "DataError",
    "EdgeSegError",
    "ExportError",
    "ModelFileError",
    "ModelMeta",
    "SourceError",
    "__version__",
]
