"""`registered_model`: the public way for tests to add a model for a block, and to leave the registry as it was."""

from __future__ import annotations

import pytest
import torch

from edgeseg.errors import ConfigError
from edgeseg.models import build_model, list_models
from edgeseg.models.registry import registered_model, unregister_model


def _one_by_one(*, num_classes, pretrained_backbone=None):
    return torch.nn.Conv2d(3, num_classes, 1)


def test_the_model_is_built_inside_the_block_and_unknown_after():
    before = list_models()
    with registered_model("test_one_by_one", _one_by_one):
        assert build_model("test_one_by_one", num_classes=5).out_channels == 5
    assert list_models() == before
    with pytest.raises(ConfigError, match="unknown model 'test_one_by_one'"):
        build_model("test_one_by_one", num_classes=5)


def test_the_model_leaves_even_when_the_block_raises():
    before = list_models()
    with pytest.raises(RuntimeError, match="boom"), registered_model("test_one_by_one", _one_by_one):
        raise RuntimeError("boom")
    assert list_models() == before


def test_a_taken_name_is_refused_and_the_real_model_stays():
    with pytest.raises(ConfigError, match="'fcn8s_resnet18' is already registered"):
        with registered_model("fcn8s_resnet18", _one_by_one):
            pass  # pragma: no cover - never entered
    assert "fcn8s_resnet18" in list_models()  # the refusal did not unregister the real builder


def test_unregistering_an_unknown_name_is_an_error():
    with pytest.raises(ConfigError, match="'nope' is not registered"):
        unregister_model("nope")
