"""What every backbone promises the FCN head: a features contract and, optionally, local pretrained weights.

A backbone's `feature_info` lists (name, channels, stride) for its stride-2, 4, 8, 16 and 32 features, the same idea
as timm's `feature_info`, so heads size themselves without knowing the backbone. `forward(x)` returns
{2: tensor, 4: tensor, 8: tensor, 16: tensor, 32: tensor} (FCN reads 8/16/32, U-Net all five); for an input whose
H and W are multiples of 32 the stride-s map is exactly (H/s, W/s), which the heads rely on (they pad their input
to a multiple of 32 first).

Nothing here downloads. `load_pretrained(path)` reads a local state_dict file (torchvision key names are the
backbones' own names, so a torchvision ImageNet file loads as is; its classifier is dropped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, NamedTuple

import torch
from torch import nn

from edgeseg.errors import ModelFileError
from edgeseg.torch_files import load_torch_file

class FeatureInfo(NamedTuple):
    """One feature map a backbone offers: the module it comes from, its channel count and its stride."""

    name: str
    channels: int
    stride: int


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a local state_dict file safely (weights_only=True); ModelFileError names the path on any problem.

    Accepts a bare state_dict or a dict holding one under 'state_dict' or 'model'; strips a DataParallel
    'module.' prefix.
    """
    path = Path(path)
    obj = load_torch_file(path, "backbone weights", " (pass a local state_dict file; nothing downloads)")
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"backbone weights {path} do not hold a state_dict (a non-empty dict of tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


class Backbone(nn.Module):
    """Base class: subclasses set `feature_info` and implement forward(x) -> {stride: tensor}, strides 2 to 32.

    `ignored_prefixes` are keys of a pretrained file that are not part of the backbone (a classifier);
    `optional_prefixes` are the backbone's own keys a pretrained file may lack (layers it has no equivalent of).
    """

    feature_info: list[FeatureInfo]
    ignored_prefixes: tuple[str, ...] = ()
    optional_prefixes: tuple[str, ...] = ()
    missing_hint: str = ""  # what to do when a file lacks keys this backbone needs

    def channels(self, stride: int) -> int:
        """Channel count of the feature map at `stride`."""
        for info in self.feature_info:
            if info.stride == stride:
                return info.channels
        raise KeyError(f"{type(self).__name__} has no stride-{stride} feature")

    def map_keys(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename a pretrained file's keys to this module's; the default keeps names (torchvision's are ours)."""
        return state

    def load_pretrained(self, path: str | Path) -> None:
        """Load backbone weights from a local state_dict file; ModelFileError when they do not fit."""
        state = self.map_keys(read_state_dict(path))
        state = {k: v for k, v in state.items() if not k.startswith(self.ignored_prefixes)}
        own = self.state_dict()
        unexpected = sorted(set(state) - set(own))
        missing = sorted(
            k
            for k in set(own) - set(state)
            if not k.startswith(self.optional_prefixes) and not k.endswith("num_batches_tracked")
        )
        wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if unexpected or missing or wrong_shape:
            problems = []
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
                if keys:
                    problems.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
            if missing and self.missing_hint:
                problems.append(self.missing_hint)
            raise ModelFileError(
                f"backbone weights {path} do not fit {type(self).__name__}: {'; '.join(problems)}"
            )
        self.load_state_dict(state, strict=False)
