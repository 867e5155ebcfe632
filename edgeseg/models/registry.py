"""The model registry: builders register under a unique name; `build_model(name, num_classes=...)` looks them up.

Builders are keyword-only functions `builder(*, num_classes, pretrained_backbone=None) -> nn.Module`, defined next
to their model class (see `edgeseg/models/fcn.py`), as in torchvision's `models/_api.py`.
Tests and notebooks add a model for a block only with `with registered_model(name, builder):`.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from torch import nn

from edgeseg.errors import ConfigError

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

_BUILDERS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[B], B]:
    """Decorator that registers a builder under `name`; ConfigError if the name is taken."""

    def wrap(builder: B) -> B:
        if name in _BUILDERS:
            raise ConfigError(f"model name {name!r} is already registered (by {_BUILDERS[name].__qualname__})")
        _BUILDERS[name] = builder
        return builder

    return wrap


def unregister_model(name: str) -> Builder:
    """Remove `name` from the registry and return its builder; ConfigError if it is not registered."""
    if name not in _BUILDERS:
        raise ConfigError(f"model name {name!r} is not registered; registered: {', '.join(list_models())}")
    return _BUILDERS.pop(name)


@contextmanager
def registered_model(name: str, builder: Builder) -> Iterator[Builder]:
    """Register `builder` under `name` for a `with` block only (tests, notebooks); it leaves the registry after,
    even when the block raises. ConfigError if the name is taken, as for register_model."""
    register_model(name)(builder)
    try:
        yield builder
    finally:
        unregister_model(name)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_BUILDERS)


def get_model_builder(name: str) -> Builder:
    """The builder registered under `name`; ConfigError listing the available names if there is none."""
    try:
        return _BUILDERS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None


def build_model(name: str, *, num_classes: int, pretrained_backbone: str | Path | None = None) -> nn.Module:
    """Build model `name` with `num_classes` outputs, its backbone optionally loaded from a local state_dict file.

    Raises ConfigError for an unknown name or num_classes < 1, ModelFileError for unusable backbone weights.
    """
    builder = get_model_builder(name)
    return builder(num_classes=num_classes, pretrained_backbone=pretrained_backbone)
