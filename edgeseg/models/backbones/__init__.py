"""Backbones in plain torch, each exposing `feature_info` and forward(x) -> {2: t2, 4: t4, 8: t8, 16: t16, 32: t32}."""

from edgeseg.models.backbones.base import Backbone, FeatureInfo, read_state_dict
from edgeseg.models.backbones.mobilenetv3 import MobileNetV3Large
from edgeseg.models.backbones.resnet18 import ResNet18
from edgeseg.models.backbones.vgg16 import VGG16, VGG16Paper

__all__ = ["Backbone", "FeatureInfo", "MobileNetV3Large", "ResNet18", "VGG16", "VGG16Paper", "read_state_dict"]
