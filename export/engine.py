"""ONNX -> TensorRT engine: `engine_from_onnx` builds with TensorRT (10+) or TensorRT-RTX, strongly typed.

Strongly typed: the engine computes in the types the ONNX graph says (FP16 tensors, INT8 Q/DQ), never in what the
builder finds faster, so an FP16 request cannot quietly become an FP32 engine. TensorRT 10 needs the
STRONGLY_TYPED network flag; TensorRT 11 and TensorRT-RTX are strongly typed only (no FP16/INT8 builder flags).
TensorRT-RTX builds on a machine without a GPU (ahead-of-time; by default for compute capability 8.0+ RTX-class
GPUs); running the engine needs one. Next to the engine goes `<engine>.json`, the sidecar the runtime checks.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from edgeseg.errors import ConfigError, ExportError
from edgeseg.export.onnx_export import check_dynamic
from edgeseg.export.onnx_io import get_meta, load_onnx, sha256_file
from edgeseg.runtime.backends.tensorrt import SIDECAR_FORMAT, SIDECAR_VERSION, sidecar_path
from edgeseg.runtime.trt_flavours import import_trt

log = logging.getLogger(__name__)

_NP_NAMES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
             "UINT8": "uint8", "BOOL": "bool", "BF16": "bfloat16"}


def engine_from_onnx(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    profile: Sequence[Sequence[int]] | None = None,
    workspace_mb: int | None = None,
    flavour: str = "auto",
) -> Path:
    """Build a serialized engine from an EdgeSeg ONNX file and write it with its sidecar; returns the engine path.

    `profile` = (min, opt, max) shapes as (N, 3, H, W) (also for graphs with a uint8 NHWC 'frame' input); default:
    the shapes the ONNX was exported with (meta.dynamic_shapes), or its static shape. `flavour` 'auto' uses
    `tensorrt` when importable, else `tensorrt_rtx`. ExportError on unsupported ops or a failed build.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    meta = get_meta(load_onnx(onnx_path), where=str(onnx_path))
    if meta.int8_target == "cpu":
        raise ExportError(f"{onnx_path.name} is the CPU INT8 variant (unsigned asymmetric activations for ONNX Runtime); "
                          "TensorRT needs symmetric signed INT8: export with --int8-target tensorrt for engines")
    if workspace_mb is not None and workspace_mb < 1:
        raise ConfigError(f"workspace_mb must be a positive number of MiB, got {workspace_mb}")
    if profile is None and meta.dynamic_shapes is not None:
        profile = meta.dynamic_shapes
    shapes = check_dynamic(profile)
    trt, flavour = import_trt(flavour)
    log.info("building a %s %s engine (%s) from %s", flavour, trt.__version__, meta.precision, onnx_path.name)

    logger = _CapturingLogger(trt)
    builder = trt.Builder(logger)
    if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") and flavour == "tensorrt":
        raise ExportError(f"TensorRT {trt.__version__} has no strongly typed networks; EdgeSeg needs TensorRT 10 or "
                          "later so that the engine keeps the ONNX graph's precision")
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # TRT 10; a no-op default in TRT 11 and RTX
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            errors.append(f"node '{e.node_name()}' (op {e.node_operator()}): {e.desc()}")
        raise ExportError(f"{flavour} {trt.__version__} cannot parse {onnx_path.name}:\n  " + "\n  ".join(errors))

    config = builder.create_builder_config()
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    inp = network.get_input(0)
    static = tuple(inp.shape)
    if shapes is not None:
        nhwc = meta.input_format == "uint8_nhwc_bgr"
        trt_shapes = [(s[0], s[2], s[3], 3) if nhwc else tuple(s) for s in shapes]
        prof = builder.create_optimization_profile()
        prof.set_shape(inp.name, *trt_shapes)
        config.add_optimization_profile(prof)
    elif any(d < 0 for d in static):
        raise ConfigError(f"{onnx_path.name} has a dynamic input {static}; give a profile (min, opt, max) to build it")

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise ExportError(f"{flavour} {trt.__version__} failed to build an engine from {onnx_path.name}:\n  "
                          + "\n  ".join(logger.errors or ["(no error message; run with -v)"]))
    log.info("engine built in %.1f s", seconds)

    engine_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(engine_path, bytes(serialized))
    tensors = lambda items: [  # noqa: E731
        {"name": t.name, "shape": list(t.shape), "dtype": _NP_NAMES.get(t.dtype.name, t.dtype.name.lower())} for t in items
    ]
    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "flavour": flavour,
        "trt_version": trt.__version__,
        "precision": meta.precision,
        "strongly_typed": True,
        "inputs": tensors([network.get_input(i) for i in range(network.num_inputs)]),
        "outputs": tensors([network.get_output(i) for i in range(network.num_outputs)]),
        "profile": {k: list(s) for k, s in zip(("min", "opt", "max"), shapes)} if shapes else None,
        "workspace_mb": workspace_mb,
        "meta": meta.to_dict(),
        "onnx": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "engine_sha256": sha256_file(engine_path),
        "build_seconds": round(seconds, 3),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_atomic(sidecar_path(engine_path), json.dumps(sidecar, indent=2).encode())
    return engine_path


class _CapturingLogger:
    """A TensorRT logger that forwards to logging and keeps the errors for the ExportError message."""

    def __new__(cls, trt: Any) -> Any:
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                    self.errors.append(msg)
                    log.error("%s", msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    log.warning("%s", msg)
                else:
                    log.debug("%s", msg)

        return Logger()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
