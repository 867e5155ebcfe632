"""The model registry: the fourteen names, keyword-only builders, ConfigError on bad names and duplicates."""

from __future__ import annotations

import pytest

from edgeseg.errors import ConfigError
from edgeseg.models import build_model, get_model_builder, list_models, register_model


def test_lists_the_twelve_fcn_and_two_unet_models() -> None:
    expected = {f"fcn{s}s_{b}" for s in (8, 16, 32) for b in ("vgg16", "resnet18", "mobilenetv3", "vgg16_paper")}
    expected |= {"unet_resnet18", "unet_mobilenetv3"}
    assert set(list_models()) == expected
    assert list_models() == sorted(list_models())


def test_unknown_name_raises_config_error_listing_available_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'fcn4s_vgg16'; available: .*fcn8s_resnet18"):
        build_model("fcn4s_vgg16", num_classes=2)


def test_duplicate_name_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="'fcn8s_resnet18' is already registered"):

        @register_model("fcn8s_resnet18")
        def _again(*, num_classes, pretrained_backbone=None):  # pragma: no cover - never called
            raise AssertionError

    assert get_model_builder("fcn8s_resnet18").__name__ == "fcn8s_resnet18"


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, True])
def test_bad_num_classes_raises_config_error(num_classes) -> None:
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 1"):
        build_model("fcn32s_mobilenetv3", num_classes=num_classes)


def test_builders_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        get_model_builder("fcn32s_mobilenetv3")(2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        build_model("fcn32s_mobilenetv3", 2)  # type: ignore[misc]
