"""The one table of export formats: what each makes, with which step, from which options. Adding a format (a
Triton model repository, say) is adding one `Format` row here; nothing else lists formats or their options.

Each `Format` row carries its step function, its options (CLI flag, type, choices, default, help text), which of
them it requires, and its file names. `COMMON_OPTIONS` are the options every format shares (the graph's shape and
edits, engines, the accuracy report). `edgeseg export` builds its arguments and its `--help` table from this table,
`export_model` takes its keyword arguments from it, and `check_request` validates a whole request against it, once,
before any slow work. Option defaults live here and nowhere else.

This module imports no heavy dependency: the steps import their modules when they run.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgeseg.config import INT8_TARGETS
from edgeseg.errors import ConfigError
from edgeseg.sidecar import FLAVOURS


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """'NxHxW' (e.g. 1x360x480) -> (N, 3, H, W): the 3 channels are implied."""
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", str(text).strip().lower())
    if not match:
        raise ValueError(f"shape {text!r} is not NxHxW, e.g. 1x360x480")
    n, h, w = (int(v) for v in match.groups())
    return (n, 3, h, w)


def _dynamic_problem(value: Any) -> str | None:
    from edgeseg.export.onnx_export import check_dynamic

    check_dynamic(value)  # raises ConfigError naming what is wrong
    return None


def _triton_repo_problem(value: Any) -> str | None:
    from edgeseg.export.triton import check_repo_path

    return check_repo_path(value)


def _triton_name_problem(value: Any) -> str | None:
    from edgeseg.export.triton import check_model_name

    return check_model_name(value)


def _at_least(minimum: float) -> Callable[[Any], str | None]:
    return lambda value: None if value >= minimum else f"must be >= {minimum}, got {value}"


@dataclass(frozen=True)
class Option:
    """One export option: its keyword name (the CLI flag is derived from it) and how to parse and check it."""

    name: str
    help: str
    type: Callable[[str], Any] | None = str  # None: a flag (store_true)
    default: Any = None
    choices: tuple[Any, ...] | None = None
    nargs: int | None = None
    metavar: str | tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, or None
    needs: str | None = None  # another option without which this one does nothing

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_flag(self) -> bool:
        return self.type is None

    def validate(self, value: Any) -> None:
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{self.flag} {value!r} is not one of {list(self.choices)}")
        problem = self.check(value) if self.check is not None else None
        if problem:
            raise ConfigError(f"{self.flag} {problem}")


Step = Callable[..., Path]  # step(fp32_onnx_path, dst, *, progress, **its options) -> the written ONNX path


@dataclass(frozen=True)
class Format:
    """One row of the table: a precision, the files it writes and the step that makes its ONNX file."""

    precision: str
    description: str
    onnx_name: str
    engine_name: str
    step: Step
    options: tuple[Option, ...] = ()
    requires: frozenset[str] = field(default_factory=frozenset)

    def option_names(self) -> list[str]:
        return [o.name for o in self.options]


# ----- steps: each imports its module only when it runs -------------------------------------------------------------
def _fp32_step(fp32: Path, dst: Path, *, progress: bool) -> Path:
    """The FP32 graph is onnx_from_torch's output itself (every other precision starts from it)."""
    return fp32


def _fp16_step(fp32: Path, dst: Path, *, progress: bool, fp16_io: bool) -> Path:
    from edgeseg.export.fp16 import fp16_from_onnx

    return fp16_from_onnx(fp32, dst, keep_io_types=not fp16_io)


def _int8_step(fp32: Path, dst: Path, *, progress: bool, calib: Any, calib_frames: int, calib_method: str,
               sensitivity: int, keep_head_float: bool, int8_target: str) -> Path:
    from edgeseg.export.int8 import qdq_from_onnx

    return qdq_from_onnx(fp32, dst, calib, num_frames=calib_frames, method=calib_method,
                         keep_head_float=keep_head_float, sensitivity_top_k=sensitivity, target=int8_target,
                         progress=progress)


# ----- the table -------------------------------------------------------------------------------------------------
COMMON_OPTIONS: tuple[Option, ...] = (
    Option("engine", "also build a strongly typed TensorRT engine per precision (+ .json sidecar)", None, False),
    Option("input_size", "the graph's input size (unset: the checkpoint's)", int, None, nargs=2,
           metavar=("H", "W"), check=lambda v: None if min(v) >= 1 else f"must be positive, got {list(v)}"),
    Option("dynamic", "dynamic shapes MIN OPT MAX, each NxHxW (e.g. 1x240x320 1x360x480 4x720x960); OPT is the "
           "size frames are resized to and the engine is tuned for", parse_shape, None, nargs=3,
           metavar=("MIN", "OPT", "MAX"), check=_dynamic_problem),
    Option("max_batch", "largest batch the graph takes: its batch axis is dynamic from 1 to N (engines get the "
           "profile min 1 / opt 1 / max N) so several sources run as one batch; 1 gives a static batch-1 graph",
           int, 4, metavar="N", check=_at_least(1)),
    Option("argmax", "end the graph in ArgMax: output 'classmap' uint8 N,H,W", None, False),
    Option("uint8_input", "the graph takes uint8 NHWC BGR frames and normalises inside", None, False),
    Option("lowres", "stop before the final upsampling (the runtime upsamples and takes the argmax)", None, False),
    Option("workspace_mb", "TensorRT builder workspace limit in MiB", int, None, check=_at_least(1), needs="engine"),
    Option("flavour", "TensorRT flavour for --engine (auto: tensorrt if importable, else tensorrt_rtx)", str, "auto",
           choices=("auto",) + FLAVOURS, needs="engine"),
    Option("deepstream", "also write a DeepStream nvinfer config, labels file and sample multi-stream pipeline "
           "(gst-launch-1.0 line and Python script) into DIR, for model_deepstream.onnx (the FP32 graph with the "
           "per-channel std folded into its first convolution; FP16 when --precision includes fp16)", str, None,
           metavar="DIR"),
    Option("triton", "also write a Triton Inference Server model repository into REPO: NAME_onnx (onnxruntime "
           "backend), NAME_python (Python backend, CPU) and, with --engine, NAME_trt; needs --uint8-input --argmax "
           "(uint8 frames in, class map out) and --max-batch N >= 2; from the first --precision", str, None,
           metavar="REPO", check=_triton_repo_problem),
    Option("triton_name", "model name prefix in the Triton repository", str, "edgeseg", metavar="NAME",
           check=_triton_name_problem, needs="triton"),
    Option("report_data", "dataset folder: report mIoU per precision on its val split (report.json)", str, None),
    Option("miou_threshold", "largest mIoU drop in points vs fp32 that still passes", float, 1.0,
           check=_at_least(0.0), needs="report_data"),
)

FORMATS: dict[str, Format] = {
    f.precision: f
    for f in (
        Format("fp32", "float32, the reference every other precision derives from", "model.onnx",
               "model_fp32.engine", _fp32_step),
        Format("fp16", "float16 weights and activations, sensitive ops kept in float32", "model_fp16.onnx",
               "model_fp16.engine", _fp16_step, options=(
                   Option("fp16_io", "inputs and outputs in float16 too (without it they stay float32)", None, False),
               )),
        Format("int8", "INT8 Q/DQ (symmetric, per-channel weights) with an FP16 rest, calibrated on frames",
               "model_int8.onnx", "model_int8.engine", _int8_step, options=(
                   Option("calib", "folder of images or a video to calibrate on", str, None),
                   Option("calib_frames", "frames to calibrate on", int, 64, check=_at_least(1)),
                   Option("calib_method", "calibration method", str, "entropy",
                          choices=("entropy", "percentile", "minmax")),
                   Option("sensitivity", "quantise one layer at a time and keep the K layers that cost most argmax "
                          "agreement out of INT8", int, 0, metavar="K", check=_at_least(0)),
                   Option("int8_target", "'tensorrt': symmetric signed Q/DQ for TensorRT engines; 'cpu': unsigned "
                          "activations, every op quantised, ONNX Runtime's fastest CPU recipe (no engine)", str,
                          "tensorrt", choices=INT8_TARGETS),
                   Option("keep_head_float", "leave the classifier and upsampling layers out of INT8", None, False),
               ), requires=frozenset({"calib"})),
    )
}

DEFAULT_PRECISIONS = ("fp32",)



def all_options() -> dict[str, Option]:
    """Every option of the table by name (common ones first)."""
    table = {o.name: o for o in COMMON_OPTIONS}
    for fmt in FORMATS.values():
        table.update({o.name: o for o in fmt.options})
    return table


def option_default(name: str) -> Any:
    """The table's default of an option: the one place defaults live (steps' keyword defaults read it)."""
    return all_options()[name].default


def option_choices(name: str) -> tuple[Any, ...]:
    return all_options()[name].choices or ()


def export_formats() -> list[dict[str, Any]]:
    """The table as rows, for `edgeseg export --help` and documentation."""
    return [
        {"precision": f.precision, "onnx": f.onnx_name, "engine": f.engine_name,
         "options": [o.flag for o in f.options], "requires": sorted("--" + r.replace("_", "-") for r in f.requires),
         "description": f.description}
        for f in FORMATS.values()
    ]


@dataclass(frozen=True)
class ExportRequest:
    """A validated request: the formats to make and every option they use, the table's defaults filled in."""

    formats: tuple[Format, ...]
    options: Mapping[str, Any]
    given: frozenset[str]  # the options the caller set

    def step_options(self, fmt: Format) -> dict[str, Any]:
        return {name: self.options[name] for name in fmt.option_names()}

    def with_paths(self, **where: Callable[[Path], Path]) -> "ExportRequest":
        """A copy whose path options (by name) are mapped, e.g. into an export's staging folder."""
        options = dict(self.options)
        for name, mapping in where.items():
            if options.get(name) is not None:
                options[name] = mapping(Path(options[name]))
        return dataclasses.replace(self, options=options)


# Rules between options, each (test, message); checked after every option is valid on its own.
_CROSS_RULES: tuple[tuple[Callable[[Mapping[str, Any]], bool], str], ...] = (
    (lambda o: bool(o.get("argmax") and o.get("lowres")),
     "--argmax and --lowres exclude each other: a lowres graph leaves upsampling and argmax to the runtime"),
    (lambda o: bool(o.get("fp16_io") and o.get("uint8_input")),
     "--fp16-io and --uint8-input exclude each other: a --uint8-input graph takes uint8 frames, so its input cannot "
     "be float16 too: drop one of them"),
    (lambda o: o.get("dynamic") is not None and o.get("input_size") is not None,
     "give either --input-size or --dynamic (whose opt shape is the input size), not both"),
    (lambda o: o.get("deepstream") is not None and bool(o.get("lowres")),
     "--deepstream and --lowres exclude each other: nvinfer takes the argmax at the graph output's resolution, so a "
     "lowres graph would give DeepStream masks at 1/stride resolution"),
    (lambda o: o.get("triton") is not None and not (o.get("uint8_input") and o.get("argmax")),
     "--triton needs --uint8-input and --argmax: every model of the repository takes uint8 NHWC BGR frames and "
     "gives a uint8 class map (normalisation and argmax in the graph)"),
    (lambda o: o.get("triton") is not None and o.get("dynamic") is None and int(o.get("max_batch") or 1) < 2,
     "--triton needs a dynamic batch axis for the server to batch requests: give --max-batch N with N >= 2"),
    (lambda o: o.get("int8_target") == "cpu" and bool(o.get("engine")),
     "--int8-target cpu makes an ONNX Runtime CPU model; TensorRT engines need the default --int8-target "
     "tensorrt (drop --engine or the target)"),
)


# Options that exclude each other when both are set by the caller (the cross rules above see defaults filled in).
_EXCLUSIVE_WHEN_SET: dict[tuple[str, str], str] = {
    ("max_batch", "dynamic"): "--dynamic's MIN and MAX shapes give the batch range (e.g. 1x360x480 1x360x480 "
                              "4x360x480)",
}


def check_request(precisions: Sequence[str], **options: Any) -> ExportRequest:
    """Validate a request against the table: known precisions and options, each format's required options given,
    no option that no requested format uses, each value valid, and the cross-option rules. `options` holds what the
    caller set; None (and False for flags) means "not set", so the table's default applies."""
    formats = _formats(precisions)
    table = all_options()
    unknown = sorted(set(options) - set(table))
    if unknown:
        raise ConfigError(f"unknown export option(s) {unknown}; known: {sorted(table)}")
    given = {name: value for name, value in options.items() if value is not None and value is not False}
    for fmt in formats:
        missing = sorted(r for r in fmt.requires if r not in given)
        if missing:
            raise ConfigError(f"{fmt.precision} needs {', '.join(table[m].flag for m in missing)} "
                              f"({'; '.join(table[m].help for m in missing)})")
    allowed = {o.name for o in COMMON_OPTIONS}.union(*(f.option_names() for f in formats))
    stray = sorted(name for name in given if name not in allowed)
    if stray:
        owners = {table[o].flag: [f.precision for f in FORMATS.values() if o in f.option_names()] for o in stray}
        raise ConfigError(f"option(s) {sorted(owners)} apply only to {owners}, which were not requested")
    for name, value in given.items():
        table[name].validate(value)
        needed = table[name].needs
        if needed is not None and needed not in given:
            raise ConfigError(f"{table[name].flag} applies only with {table[needed].flag}")
    resolved = {name: given.get(name, table[name].default) for name in sorted(allowed)}
    for test, message in _CROSS_RULES:
        if test(resolved):
            raise ConfigError(message)
    for first, second in _EXCLUSIVE_WHEN_SET:  # on what the caller set: these options have defaults
        if first in given and second in given:
            raise ConfigError(f"give either {table[first].flag} or {table[second].flag}, not both: "
                              f"{_EXCLUSIVE_WHEN_SET[(first, second)]}")
    return ExportRequest(tuple(formats), resolved, frozenset(given))


def _formats(precisions: Sequence[str]) -> list[Format]:
    if isinstance(precisions, str) or not precisions:
        raise ConfigError("choose at least one precision (a list): " + ", ".join(FORMATS))
    unknown = [p for p in precisions if p not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown precision(s) {unknown}; choose from {list(FORMATS)}")
    return [FORMATS[p] for p in dict.fromkeys(precisions)]
