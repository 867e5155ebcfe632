"""Settings that travel with the weights: checkpoint, ONNX metadata and engine sidecar all carry a ModelMeta.

The runtime reads it back and never asks the user to repeat input size, mean/std, class names or palette.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from edgeseg.errors import ConfigError, ModelFileError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255  # every dataset maps its void/unlabelled id to this

# Key under which ModelMeta is stored as JSON in ONNX metadata_props and engine sidecars.
META_KEY = "edgeseg"
INPUT_FORMATS = ("float_nchw_rgb", "uint8_nhwc_bgr")
OUTPUT_FORMATS = ("logits", "classmap")


def size_hw(value: Any, name: str = "size", minimum: int = 1) -> tuple[int, int]:
    """Parse a (height, width) pair of ints >= minimum, or raise ConfigError naming the option."""
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be (height, width), got {value!r}") from exc
    if h < minimum or w < minimum:
        raise ConfigError(f"{name} must be at least {minimum}x{minimum}, got (H, W) = {(h, w)}")
    return h, w


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (bit-interleaved), distinct for up to 256 classes."""
    palette = []
    for index in range(num_classes):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return palette


@dataclass(frozen=True)
class ModelMeta:
    """What a model file needs to be used correctly: input size, normalisation, classes, colours, output stride.

    `input_size` is (H, W) the model was trained/exported at. Frames are RGB in [0, 1] normalised by mean/std.
    `output_stride` is 1 when the model outputs full-resolution logits, 8/16/32 when the graph stops before the
    FCN's fixed bilinear upsampling (the runtime then interpolates and takes the argmax in one pass).
    """

    model_name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    ignore_index: int = IGNORE_INDEX
    output_stride: int = 1
    # What the graph takes and gives, so the runtime knows which pre/post-processing is already inside it.
    input_format: str = "float_nchw_rgb"  # or "uint8_nhwc_bgr" (--uint8-input: normalisation is in the graph)
    output_format: str = "logits"  # or "classmap" (--argmax: the graph ends in ArgMax)
    precision: str = "fp32"  # fp32 | fp16 | int8: what the graph really computes in
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.classes) < 1:
            raise ModelFileError("model metadata lists no classes")
        if len(self.palette) != len(self.classes):
            raise ModelFileError(
                f"model metadata has {len(self.classes)} classes but {len(self.palette)} palette colours"
            )
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ModelFileError(f"model metadata input_size must be (H, W) > 0, got {self.input_size}")
        if self.input_format not in INPUT_FORMATS:
            raise ModelFileError(f"model metadata input_format {self.input_format!r} is not one of {INPUT_FORMATS}")
        if self.output_format not in OUTPUT_FORMATS:
            raise ModelFileError(f"model metadata output_format {self.output_format!r} is not one of {OUTPUT_FORMATS}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> "ModelMeta":
        data = self.to_dict()
        data.update(changes)
        return ModelMeta.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelMeta":
        try:
            return cls(
                model_name=str(data["model_name"]),
                classes=tuple(str(c) for c in data["classes"]),
                palette=tuple(tuple(int(v) for v in colour) for colour in data["palette"]),  # type: ignore[misc]
                input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                mean=tuple(float(v) for v in data.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
                std=tuple(float(v) for v in data.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
                ignore_index=int(data.get("ignore_index", IGNORE_INDEX)),
                output_stride=int(data.get("output_stride", 1)),
                input_format=str(data.get("input_format", "float_nchw_rgb")),
                output_format=str(data.get("output_format", "logits")),
                precision=str(data.get("precision", "fp32")),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFileError(f"model metadata is incomplete or malformed: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"model metadata is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def make_meta(
    model_name: str,
    classes: Sequence[str],
    input_size: Sequence[int],
    palette: Sequence[Sequence[int]] | None = None,
    **kwargs: Any,
) -> ModelMeta:
    """Build a ModelMeta, filling in the default palette when the dataset has none."""
    pal = palette if palette is not None else default_palette(len(classes))
    return ModelMeta(
        model_name=model_name,
        classes=tuple(classes),
        palette=tuple(tuple(int(v) for v in c) for c in pal),  # type: ignore[misc]
        input_size=(int(input_size[0]), int(input_size[1])),
        **kwargs,
    )
