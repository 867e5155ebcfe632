"""The one table of export precisions and the options each allows, checked in one place (`check_request`).

Each precision is one ONNX file (and optionally one engine) made by one small module:
fp32 by onnx_export.onnx_from_torch, fp16 by fp16.fp16_from_onnx, int8 by int8.qdq_from_onnx; the graph edits
(--argmax, --uint8-input) and the engine build (engine.engine_from_onnx) apply to every precision alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from edgeseg.errors import ConfigError
from edgeseg.export.int8 import CALIB_METHODS

COMMON_OPTIONS = frozenset({"engine", "input_size", "dynamic", "argmax", "uint8_input", "lowres", "workspace_mb",
                            "report_data", "miou_threshold"})


@dataclass(frozen=True)
class Format:
    precision: str
    onnx_name: str
    engine_name: str
    options: frozenset[str]  # options this precision accepts beyond COMMON_OPTIONS
    requires: frozenset[str]  # options it cannot do without
    description: str


FORMATS: dict[str, Format] = {
    f.precision: f
    for f in (
        Format("fp32", "model.onnx", "model_fp32.engine", frozenset(), frozenset(), "float32, the reference"),
        Format("fp16", "model_fp16.onnx", "model_fp16.engine", frozenset({"fp16_io"}), frozenset(),
               "float16 weights and activations, sensitive ops kept in float32"),
        Format("int8", "model_int8.onnx", "model_int8.engine", frozenset({"calib", "calib_frames", "calib_method", "sensitivity", "keep_head_float", "int8_target"}),
               frozenset({"calib"}), "INT8 Q/DQ (symmetric, per-channel weights), calibrated on frames"),
    )
}


def export_formats() -> list[dict[str, Any]]:
    """The table as rows, for `edgeseg export --help` and documentation."""
    return [
        {"precision": f.precision, "onnx": f.onnx_name, "engine": f.engine_name,
         "extra_options": sorted(f.options), "requires": sorted(f.requires), "description": f.description}
        for f in FORMATS.values()
    ]


def check_request(precisions: Sequence[str], **options: Any) -> list[Format]:
    """Validate a request: known precisions, each one's required options given, no option that no precision uses,
    and the cross-option rules. `options` holds only what the user set (None/False/defaults left out)."""
    if not precisions:
        raise ConfigError("choose at least one precision: " + ", ".join(FORMATS))
    unknown = [p for p in precisions if p not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown precision(s) {unknown}; choose from {list(FORMATS)}")
    formats = [FORMATS[p] for p in dict.fromkeys(precisions)]
    for fmt in formats:
        missing = [o for o in fmt.requires if options.get(o) is None]
        if missing:
            raise ConfigError(f"{fmt.precision} needs {', '.join('--' + m.replace('_', '-') for m in missing)} "
                              "(a folder of images or a video to calibrate on)")
    allowed = COMMON_OPTIONS.union(*(f.options for f in formats))
    stray = sorted(o for o, v in options.items() if v is not None and o not in allowed)
    if stray:
        owners = {o: [f.precision for f in FORMATS.values() if o in f.options] for o in stray}
        raise ConfigError(f"option(s) {stray} apply only to {owners}, which were not requested")
    if options.get("argmax") and options.get("lowres"):
        raise ConfigError("--argmax and --lowres exclude each other: a lowres graph leaves upsampling and argmax "
                          "to the runtime")
    if options.get("dynamic") is not None and options.get("input_size") is not None:
        raise ConfigError("give either --input-size or --dynamic (whose opt shape is the input size), not both")
    if options.get("calib_method") is not None and options["calib_method"] not in CALIB_METHODS:
        raise ConfigError(f"calibration method {options['calib_method']!r} is not one of {CALIB_METHODS}")
    if options.get("calib_frames") is not None and int(options["calib_frames"]) < 1:
        raise ConfigError(f"--calib-frames must be >= 1, got {options['calib_frames']}")
    if options.get("workspace_mb") is not None and int(options["workspace_mb"]) < 1:
        raise ConfigError(f"--workspace-mb must be >= 1, got {options['workspace_mb']}")
    return formats
