"""The model zoo: FCN-32s/16s/8s (Long, Shelhamer & Darrell) on VGG-16, ResNet-18 and MobileNetV3-Large, and U-Net
(Ronneberger et al.) on ResNet-18 and MobileNetV3-Large.

    >>> from edgeseg.models import build_model, list_models
    >>> model = build_model("fcn8s_resnet18", num_classes=12)
    >>> model.output_stride
    8

Importing this package imports torch (the runtime never imports it).
"""

from edgeseg.models.backbones import Backbone, FeatureInfo
from edgeseg.models.fcn import FCN, LowResOutput, bilinear_kernel
from edgeseg.models.registry import build_model, get_model_builder, list_models, register_model
from edgeseg.models.unet import UNet

__all__ = [
    "FCN",
    "Backbone",
    "FeatureInfo",
    "LowResOutput",
    "UNet",
    "bilinear_kernel",
    "build_model",
    "get_model_builder",
    "list_models",
    "register_model",
]
