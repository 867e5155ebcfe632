"""Settings that travel with the weights: checkpoint, ONNX metadata and engine sidecar all carry a ModelMeta.

The runtime reads it back and never asks the user to repeat input size, mean/std, class names or palette.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Sequence

from edgeseg.errors import ConfigError, EdgeSegError, ModelFileError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255  # every dataset maps its void/unlabelled id to this

# Key under which ModelMeta is stored as JSON in ONNX metadata_props and engine sidecars.
META_KEY = "edgeseg"
# Metadata keys older EdgeSeg versions wrote that nothing reads (ignore_index: a training fact, kept by the dataset).
_RETIRED_KEYS = ("ignore_index",)
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


def class_names(value: Any, where: str, error: type[EdgeSegError] = ConfigError) -> tuple[str, ...]:
    """A list of distinct, non-empty class names, or `error` naming `where` and what is wrong.

    A string is refused rather than read letter by letter ("abcdefgh" is not 8 classes), and duplicates are refused
    because every score is reported by class name: two classes of one name would collapse into one."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise error(f"{where}: 'classes' must be a list of class names, got {type(value).__name__} {value!r:.80}")
    bad = next((name for name in value if not isinstance(name, str) or not name.strip()), None)
    if bad is not None or not value:
        raise error(f"{where}: class names must be non-empty strings, got {bad!r}" if value else
                    f"{where}: 'classes' lists no class names")
    repeated = sorted({name for name in value if value.count(name) > 1})
    if repeated:
        raise error(f"{where}: class names must be distinct (scores are reported by name); {repeated} appear more "
                    "than once")
    return tuple(value)


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


PRECISIONS = ("fp32", "fp16", "int8")
INT8_TARGETS = ("tensorrt", "cpu")


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


@dataclass(frozen=True)
class ModelMeta:
    """What a model file needs to be used correctly: input size, normalisation, classes, colours, output stride.

    `input_size` is (H, W) the model was trained/exported at. Frames are RGB in [0, 1] normalised by mean/std.
    `output_stride` is 1 when the model outputs full-resolution logits, 8/16/32 when the graph stops before the
    FCN's fixed bilinear upsampling (the runtime then interpolates and takes the argmax in one pass).
    Every field is typed and validated here, once; `to_dict`/`from_dict` round-trip it (the field defaults are
    the only defaults). `extra` holds free-form notes nothing reads back.
    """

    model_name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    output_stride: int = 1
    # What the graph takes and gives, so the runtime knows which pre/post-processing is already inside it.
    input_format: str = "float_nchw_rgb"  # or "uint8_nhwc_bgr" (--uint8-input: normalisation is in the graph)
    output_format: str = "logits"  # or "classmap" (--argmax: the graph ends in ArgMax)
    precision: str = "fp32"  # fp32 | fp16 | int8: what the graph really computes in
    # (min, opt, max) NCHW input shapes of a dynamic graph (--dynamic), reused as the engine's optimisation profile.
    dynamic_shapes: tuple[tuple[int, ...], ...] | None = None
    # How the ONNX export compared with PyTorch (export.parity.ParityReport.to_dict()).
    parity: dict[str, Any] | None = None
    # INT8 only: the recipe (target tensorrt|cpu, calibration method and frames, layers kept in float).
    quantization: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.classes) < 1:
            raise ModelFileError("model metadata lists no classes")
        if len(self.palette) != len(self.classes):
            raise ModelFileError(
                f"model metadata has {len(self.classes)} classes but {len(self.palette)} palette colours"
            )
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.palette):
            raise ModelFileError("model metadata palette colours must be (R, G, B) triples in 0..255")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ModelFileError(f"model metadata input_size must be (H, W) > 0, got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or 0.0 in self.std:
            raise ModelFileError(f"model metadata mean/std must be 3 numbers (std non-zero), got {self.mean}, {self.std}")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):  # NaN would turn every frame into NaN
            raise ModelFileError(f"model metadata mean/std must be finite numbers, got {self.mean}, {self.std}")
        class_names(list(self.classes), "model metadata", ModelFileError)
        if self.output_stride < 1:
            raise ModelFileError(f"model metadata output_stride must be >= 1, got {self.output_stride}")
        if self.input_format not in INPUT_FORMATS:
            raise ModelFileError(f"model metadata input_format {self.input_format!r} is not one of {INPUT_FORMATS}")
        if self.output_format not in OUTPUT_FORMATS:
            raise ModelFileError(f"model metadata output_format {self.output_format!r} is not one of {OUTPUT_FORMATS}")
        if self.precision not in PRECISIONS:
            raise ModelFileError(f"model metadata precision {self.precision!r} is not one of {PRECISIONS}")
        if self.output_format == "classmap" and self.output_stride != 1:
            raise ModelFileError("model metadata: an in-graph argmax (classmap) output has output_stride 1")
        if self.dynamic_shapes is not None and (
            len(self.dynamic_shapes) != 3 or any(len(s) != 4 for s in self.dynamic_shapes)
        ):
            raise ModelFileError(f"model metadata dynamic_shapes must be 3 NCHW shapes, got {self.dynamic_shapes}")
        target = (self.quantization or {}).get("target")
        if target is not None and target not in INT8_TARGETS:
            raise ModelFileError(f"model metadata quantization target {target!r} is not one of {INT8_TARGETS}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def int8_target(self) -> str | None:
        """'tensorrt' or 'cpu' for INT8 graphs, None otherwise."""
        return (self.quantization or {}).get("target") if self.precision == "int8" else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> "ModelMeta":
        data = self.to_dict()
        data.update(changes)
        return ModelMeta.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | None = None) -> "ModelMeta":
        """Parse and validate; keys absent from `data` take the field defaults (the only place defaults live).
        `where` (the file, e.g. "model.onnx") starts every error message, so the user knows which file is bad."""
        try:
            return cls._from_dict(data)
        except ModelFileError as exc:
            if where is None:
                raise
            raise ModelFileError(f"{where}: {exc}") from exc

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> "ModelMeta":
        converters = {
            "model_name": str,
            "classes": lambda v: class_names(v, "model metadata", ModelFileError),
            "palette": lambda v: tuple(_shape(colour) for colour in v),
            "input_size": lambda v: (int(v[0]), int(v[1])) if len(v) == 2 else _shape(v),
            "mean": lambda v: tuple(float(x) for x in v),
            "std": lambda v: tuple(float(x) for x in v),
            "output_stride": int,
            "input_format": str,
            "output_format": str,
            "precision": str,
            "dynamic_shapes": lambda v: None if v is None else tuple(_shape(s) for s in v),
            "parity": lambda v: None if v is None else dict(v),
            "quantization": lambda v: None if v is None else dict(v),
            "extra": dict,
        }
        if not isinstance(data, dict):
            raise ModelFileError(f"model metadata must be a JSON object, got {type(data).__name__}")
        # Keys older EdgeSeg wrote and nothing reads: dropped, so their models still load.
        data = {key: value for key, value in data.items() if key not in _RETIRED_KEYS}
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ModelFileError(f"model metadata has unknown keys {unknown} (written by a newer EdgeSeg?)")
        kwargs = {}
        for name, value in data.items():  # one field at a time, so the error names the field that is wrong
            try:
                kwargs[name] = converters[name](value)
            except (TypeError, ValueError, IndexError) as exc:
                raise ModelFileError(f"model metadata field '{name}' is malformed ({value!r:.80}): {exc}") from exc
        missing = [f.name for f in fields(cls) if f.name not in kwargs and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            raise ModelFileError(f"model metadata is incomplete: it lacks {', '.join(missing)}")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str, where: str | None = None) -> "ModelMeta":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{where + ': ' if where else ''}model metadata is not valid JSON: {exc}") from exc
        return cls.from_dict(data, where)


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
