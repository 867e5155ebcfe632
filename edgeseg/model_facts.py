"""Model facts: the ModelMeta of any model file, from what it carries, what its graph says and what the user tells.

EdgeSeg's own .onnx files carry a ModelMeta in their metadata and its engines in their sidecar. Models made by other
tools (mmseg, torchvision, trtexec engines) carry none, so `resolve_meta` builds one, in this order:
1. the graph: input dtype (uint8 or float), layout (NCHW or NHWC, where the channel axis of 3 says so), a static
   input size, the output's rank and dtype (logits or class map) and its channel count (the number of classes);
2. the metadata the file carries (ModelMeta), when it has one;
3. what the user passed (`ModelFacts`, from `--classes`, `--palette`, `--mean`, `--std`, `--input-size`, `--layout`,
   `--output`): it overrides (2) with a logged warning where they differ, and is an error where it contradicts (1).
A fact none of them gives is an error naming the flag to pass. The one check every model gets, foreign or not: the
number of classes in the metadata equals the output's channel count whenever the graph states it.

Conventions for user-given facts: --mean/--std are RGB in 0-1 pixel units (torchvision's 0.485 0.456 0.406, i.e.
mmseg's 123.675 / 255); float graphs take RGB NCHW normalised by them; uint8 graphs take BGR NHWC and normalise
in-graph, as `edgeseg export --uint8-input` makes them.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg.config import IMAGENET_MEAN, IMAGENET_STD, ModelMeta, class_names, default_palette
from edgeseg.errors import ConfigError, ModelFileError
from edgeseg.memory import require_memory

log = logging.getLogger(__name__)

LAYOUTS = ("nchw", "nhwc")
OUTPUT_KINDS = ("logits", "classmap")
# graph input dtype kind -> the layout and ModelMeta.input_format EdgeSeg's ProcessingPlan runs for it
_INPUT_FORMAT = {("float", "nchw"): "float_nchw_rgb", ("uint8", "nhwc"): "uint8_nhwc_bgr"}
_FLOAT_INPUTS = (np.dtype(np.float32), np.dtype(np.float16))


@dataclass(frozen=True)
class ModelFacts:
    """What the user says about a model; None = not said. `num_classes` alone (`--classes N`) names no classes."""

    classes: tuple[str, ...] | None = None
    num_classes: int | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    input_size: tuple[int, int] | None = None
    layout: str | None = None
    output: str | None = None

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(f"--layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.output is not None and self.output not in OUTPUT_KINDS:
            raise ConfigError(f"--output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if self.classes is not None and self.num_classes is None:
            object.__setattr__(self, "num_classes", len(self.classes))
        if self.num_classes is not None and not 1 <= self.num_classes <= 256:
            raise ConfigError(f"--classes: masks are uint8, so a model has 1 to 256 classes, got {self.num_classes}")
        for flag, values in (("--mean", self.mean), ("--std", self.std)):
            if values is None:
                continue
            if len(values) != 3:
                raise ConfigError(f"{flag} takes 3 numbers (R G B), got {len(values)}")
            if not all(math.isfinite(v) for v in values):
                raise ConfigError(f"{flag} must be 3 finite numbers, got {' '.join(f'{v:g}' for v in values)}")
            if any(v > 1.0 for v in values) or any(v < 0.0 for v in values):
                raise ConfigError(f"{flag} {' '.join(f'{v:g}' for v in values)} is not in 0-1 pixel units; "
                                  "--mean/--std take RGB in 0-1 units (divide 0-255 values by 255: 123.675 -> 0.485)")
        if self.std is not None and 0.0 in self.std:
            raise ConfigError(f"--std must be non-zero, got {self.std}")

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def __bool__(self) -> bool:
        return bool(self.given())


# ----- files the user gives -----------------------------------------------------------------------------------------
def parse_classes(value: str) -> tuple[tuple[str, ...] | None, int, tuple[tuple[int, int, int], ...] | None]:
    """`--classes FILE|N` -> (names or None, count, the file's palette or None).

    FILE: a JSON list of names, a JSON object with `classes` (and optional `palette_rgb`, as a dataset's
    classes.json has), or a text file with one name per line."""
    text = value.strip()
    if text.isdigit():
        return None, int(text), None
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"--classes {value}: not a number of classes and no such file (give N, a classes.json or a "
                          "text file with one class name per line)")
    content = _read_text(path, "--classes")
    palette = None
    if path.suffix.lower() == ".json":
        data = _json(content, path, "--classes")
        if isinstance(data, dict):
            palette = _palette(data["palette_rgb"], path, "--classes") if data.get("palette_rgb") else None
            data = data.get("classes")
        if not isinstance(data, list) or not all(isinstance(name, str) for name in data):
            raise ConfigError(f"--classes {path}: expected a list of class names or {{\"classes\": [...]}}")
        names = tuple(data)
    else:
        names = tuple(line.strip() for line in content.splitlines() if line.strip())
    if not names:
        raise ConfigError(f"--classes {path} lists no class names")
    names = class_names(list(names), f"--classes {path}")  # distinct: scores are reported by name
    if palette is not None and len(palette) != len(names):
        raise ConfigError(f"--classes {path} has {len(names)} classes but {len(palette)} palette_rgb colours")
    return names, len(names), palette


def parse_palette(value: str) -> tuple[tuple[int, int, int], ...]:
    """`--palette FILE`: a JSON list of [R, G, B], a JSON object with `palette_rgb`, or text lines 'R G B'."""
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"--palette {value}: no such file")
    content = _read_text(path, "--palette")
    if path.suffix.lower() == ".json":
        data = _json(content, path, "--palette")
        if isinstance(data, dict):
            data = data.get("palette_rgb", data.get("palette"))
        return _palette(data, path, "--palette")
    rows = [line.replace(",", " ").split() for line in content.splitlines() if line.strip()]
    return _palette(rows, path, "--palette")


def _read_text(path: Path, flag: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag} {path} cannot be read: {exc}") from exc


def _json(content: str, path: Path, flag: str) -> Any:
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} {path} is not valid JSON: {exc}") from exc


def _palette(rows: Any, path: Path, flag: str) -> tuple[tuple[int, int, int], ...]:
    try:
        colours = tuple((int(r), int(g), int(b)) for r, g, b in rows)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{flag} {path}: colours must be R G B triples of integers ({exc})") from exc
    if not colours or not all(0 <= v <= 255 for colour in colours for v in colour):
        raise ConfigError(f"{flag} {path}: expected one or more R G B colours in 0..255")
    return colours


# ----- what the graph says ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphFacts:
    """What a graph's first input and output tell (-1 / None where a dimension or fact is dynamic or unknown)."""

    input_kind: str  # "float" or "uint8"
    layout: str | None
    input_size: tuple[int, int] | None
    output: str  # "logits" or "classmap"
    channels: int | None  # the logits' channel axis, i.e. the number of classes
    output_hw: tuple[int, int] | None

    @classmethod
    def read(cls, name: str, in_shape: Sequence[int], in_dtype: Any, out_shape: Sequence[int], out_dtype: Any,
             layout_hint: str | None = None) -> "GraphFacts":
        in_shape, out_shape = tuple(in_shape), tuple(out_shape)
        in_dtype, out_dtype = np.dtype(in_dtype), np.dtype(out_dtype)
        if len(in_shape) != 4:
            raise ModelFileError(f"{name}'s input has shape {in_shape}; EdgeSeg runs image models with one 4-D input "
                                 "(N, C, H, W) or (N, H, W, C)")
        if in_dtype == np.uint8:
            kind = "uint8"
        elif in_dtype in _FLOAT_INPUTS:
            kind = "float"
        else:
            raise ModelFileError(f"{name}'s input is {in_dtype}; EdgeSeg feeds float32/float16 or uint8 images")
        layout = _layout(in_shape)
        if layout is None and in_shape[1] > 0 and in_shape[3] > 0:  # both known, and neither is 3 colours
            raise ModelFileError(f"{name}'s input {_dims(in_shape)} has no axis of 3 colour channels (NCHW: "
                                 f"{in_shape[1]} channels, NHWC: {in_shape[3]}); EdgeSeg feeds 3-channel colour frames, "
                                 "so greyscale (1-channel) and other multi-channel inputs are not supported")
        if layout is None:
            layout = layout_hint
        elif layout_hint is not None and layout_hint != layout:
            raise ConfigError(f"--layout {layout_hint}, but {name}'s input {_dims(in_shape)} is {layout.upper()}")
        size = None
        if layout is not None:
            h, w = in_shape[1:3] if layout == "nhwc" else in_shape[2:4]
            size = (h, w) if h > 0 and w > 0 else None
        output, channels, out_hw = _output(name, out_shape, out_dtype)
        return cls(kind, layout, size, output, channels, out_hw)


def _layout(shape: tuple[int, ...]) -> str | None:
    """NCHW or NHWC where exactly one of axes 1 and 3 is 3 (colour channels); None when the shape can't say."""
    if shape[1] == 3 and shape[3] != 3:
        return "nchw"
    if shape[3] == 3 and shape[1] != 3:
        return "nhwc"
    return None


def _output(name: str, shape: tuple[int, ...], dtype: np.dtype) -> tuple[str, int | None, tuple[int, int] | None]:
    integer = dtype.kind in "iu"
    if len(shape) == 4 and not integer:
        channels = shape[1] if shape[1] > 0 else None
        if channels is not None and channels > 256:
            raise ModelFileError(f"{name} outputs {channels} classes; EdgeSeg's masks are uint8, so at most 256 "
                                 "classes are supported")
        hw = (shape[2], shape[3]) if shape[2] > 0 and shape[3] > 0 else None
        return "logits", channels, hw
    if len(shape) == 3 and integer:
        return "classmap", None, None
    raise ModelFileError(f"{name}'s output is {dtype} {_dims(shape)}; EdgeSeg reads float logits (N, classes, H, W) "
                         "or an integer class map (N, H, W)")


def _dims(shape: Sequence[int]) -> str:
    return "(" + ", ".join("?" if d < 0 else str(d) for d in shape) + ")"


# ----- the one resolver ---------------------------------------------------------------------------------------------
def resolve_meta(name: str, stored: ModelMeta | None, facts: ModelFacts | None, graph: GraphFacts,
                 missing_what: str | None = None) -> ModelMeta:
    """The ModelMeta to run `name` with (see the module docstring).

    `stored`: the metadata the file carries (None for a foreign model); `missing_what`: how to say it has none
    ("model.onnx has no EdgeSeg metadata"), used in the error that lists the flags to pass."""
    facts = facts or ModelFacts()
    missing: list[tuple[str, str]] = []  # (flags to pass, why they are needed)

    def override(flag: str, given: Any, kept: Any) -> None:
        if stored is not None and given is not None and kept is not None and given != kept:
            log.warning("%s: %s %s overrides %s from the model's metadata", name, flag, _show(given), _show(kept))

    # output: the graph decides; a flag may only agree with it
    if facts.output is not None and facts.output != graph.output:
        shape = "float logits (N, classes, H, W)" if graph.output == "logits" else "class map (N, H, W)"
        raise ConfigError(f"--output {facts.output}, but {name}'s output is a {graph.output} ({shape})")

    # input layout and format
    layout = graph.layout or facts.layout or (_stored_layout(stored) if stored is not None else None)
    if layout is None:
        missing.append(("--layout nchw|nhwc", "its input shape does not say where the colour channels are"))
        input_format = None
    else:
        input_format = _INPUT_FORMAT.get((graph.input_kind, layout))
        if input_format is None:
            raise ConfigError(f"{name} takes {graph.input_kind} {layout.upper()} input; EdgeSeg runs float inputs as "
                              "NCHW RGB (normalised by --mean/--std) and uint8 inputs as NHWC BGR (normalised "
                              "in the graph): re-export the model in one of these layouts")

    # input size: a static graph size is fixed; a flag may override metadata of a dynamic graph
    if facts.input_size is not None and graph.input_size is not None and facts.input_size != graph.input_size:
        raise ConfigError(f"--input-size {_show(facts.input_size)}, but {name} has a fixed input size "
                          f"{_show(graph.input_size)}")
    if facts.input_size is not None:
        override("--input-size", facts.input_size, stored.input_size if stored else None)
    input_size = facts.input_size or (stored.input_size if stored else None) or graph.input_size
    if input_size is None:
        missing.append(("--input-size H W", "its input size is dynamic"))

    # classes, palette
    names, count = _classes(name, stored, facts, graph, missing, override)

    palette = None
    if count is not None:
        if facts.palette is not None:
            if len(facts.palette) < count:
                raise ConfigError(f"--palette has {len(facts.palette)} colours, {name} has {count} classes")
            palette = facts.palette[:count]
            override("--palette", palette, stored.palette if stored else None)
        elif stored is not None and len(stored.palette) == count:
            palette = stored.palette
        else:
            palette = tuple(default_palette(count))

    # normalisation: float graphs need it; uint8 graphs do it themselves
    mean, std = facts.mean, facts.std
    if graph.input_kind == "uint8":
        if mean is not None or std is not None:
            log.warning("%s normalises its uint8 input in the graph: --mean/--std are recorded but not applied", name)
    else:
        override("--mean", mean, stored.mean if stored else None)
        override("--std", std, stored.std if stored else None)
    if stored is not None:
        mean, std = mean or stored.mean, std or stored.std
    elif graph.input_kind == "uint8":
        mean, std = mean or IMAGENET_MEAN, std or IMAGENET_STD
    elif mean is None or std is None:
        missing.append(("--mean R G B --std R G B", "its input normalisation is unknown (RGB in 0-1 units, e.g. "
                        "ImageNet's --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225)"))

    if missing:
        head = missing_what or f"{name} has no EdgeSeg metadata"
        raise ModelFileError(f"{head} and {'; '.join(why for _, why in missing)}: pass "
                             f"{' '.join(flags for flags, _ in missing)} (or write them into the file once with "
                             "`edgeseg annotate`)")
    assert input_format is not None and input_size is not None and names is not None and palette is not None
    _check_buffers_fit(name, input_size, len(names), given=facts.input_size is not None)
    data = stored.to_dict() if stored is not None else {"model_name": Path(name).stem,
                                                        "extra": {"facts": "given by flags (foreign model)"}}
    data.update(classes=names, palette=palette, input_size=input_size, mean=mean, std=std,
                input_format=input_format, output_format=graph.output)
    if stored is None:
        data["output_stride"] = _stride(graph, input_size)
    if stored is None and facts.input_size is None and graph.input_size is not None:
        log.info("%s: input size %s read from the graph", name, _show(graph.input_size))
    return ModelMeta.from_dict(data)


def _check_buffers_fit(name: str, input_size: tuple[int, int], classes: int, given: bool) -> None:
    """One frame's buffers at the model's input size (float input, float logits, uint8 mask) must fit in memory."""
    height, width = input_size
    where = f"--input-size {height} {width}" if given else f"{name}'s input size {height}x{width}"
    require_memory(height * width * (3 * 4 + classes * 4 + 1), f"one frame at {where} ({classes} classes)",
                   "pass a smaller --input-size" if given else "export the model at a smaller input size")


def _classes(name: str, stored: ModelMeta | None, facts: ModelFacts, graph: GraphFacts, missing: list[tuple[str, str]],
             override: Any) -> tuple[tuple[str, ...] | None, int | None]:
    """Class names and count, checked against the output's channel count where the graph states it."""
    channels = graph.channels
    if facts.num_classes is not None:
        count = facts.num_classes
        if channels is not None and count != channels:
            raise ConfigError(f"--classes gives {count} classes, but {name}'s output has {channels} channels "
                              f"(one per class): pass --classes {channels} or a file of {channels} names")
        if facts.classes is not None:
            names = facts.classes
        elif stored is not None and stored.num_classes == count:
            names = stored.classes  # `--classes N` agreeing with the metadata keeps its names
        else:
            names = _generic(count)
        override("--classes", names, stored.classes if stored else None)
        return names, count
    if stored is not None:
        if channels is not None and stored.num_classes != channels:
            raise ModelFileError(f"{name}'s metadata lists {stored.num_classes} classes but its output has {channels} "
                                 f"channels (one per class): its masks would hold ids with no class or colour; pass "
                                 f"--classes {channels} (or a file of {channels} names), or re-export it")
        return stored.classes, stored.num_classes
    if channels is not None:
        log.info("%s: %d classes, from the output's channel count (pass --classes FILE to name them)", name, channels)
        return _generic(channels), channels
    missing.append(("--classes FILE|N", "its output does not say how many classes there are"))
    return None, None


def _generic(count: int) -> tuple[str, ...]:
    return tuple(f"class_{i}" for i in range(count))


def _stored_layout(meta: ModelMeta) -> str:
    return "nhwc" if meta.input_format == "uint8_nhwc_bgr" else "nchw"


def _stride(graph: GraphFacts, input_size: tuple[int, int]) -> int:
    """Output stride of low-resolution logits when the graph's sizes show one exact integer ratio, else 1."""
    if graph.output != "logits" or graph.output_hw is None:
        return 1
    (h, w), (oh, ow) = input_size, graph.output_hw
    if (oh, ow) == (h, w) or h % oh or w % ow or h // oh != w // ow:
        return 1
    return h // oh


def _show(value: Any) -> str:
    if isinstance(value, tuple) and len(value) > 6:
        return f"({len(value)} entries)"
    if isinstance(value, tuple):
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)
