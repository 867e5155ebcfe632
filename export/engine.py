"""ONNX -> TensorRT engine: `engine_from_onnx` builds with TensorRT (10+) or TensorRT-RTX, strongly typed.

Strongly typed: the engine computes in the types the ONNX graph says (FP16 tensors, INT8 Q/DQ), never in what the
builder finds faster, so an FP16 request cannot quietly become an FP32 engine. TensorRT 10 needs the
STRONGLY_TYPED network flag; TensorRT 11 and TensorRT-RTX are strongly typed only (no FP16/INT8 builder flags).

TensorRT-RTX builds ahead of time on a machine without a GPU, for a list of compute capabilities (RTX_TARGETS:
its documented default, set explicitly so the sidecar records exactly what the engine covers), and compiles its
kernels at first run, caching them in a runtime cache file next to the engine (`<engine>.cache`, loaded and saved
by the runtime). Its engines are built with REQUIRE_USER_ALLOCATION, which CUDA-graph capture of
enqueueV3 needs. `tensorrt` builds for the GPU it runs on, whose name and compute capability the sidecar records.

Next to the engine goes `<engine>.json`, the EngineSidecar (edgeseg.sidecar) the runtime checks before loading.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from edgeseg.config import ModelMeta
from edgeseg.errors import ConfigError, ExportError
from edgeseg.export.formats import option_default
from edgeseg.export.onnx_export import Shape, check_dynamic
from edgeseg.export.onnx_io import get_meta, load_onnx
from edgeseg.files import sha256_file, write_file
from edgeseg.runtime.trt_flavours import import_trt
from edgeseg.sidecar import EngineSidecar, TensorInfo, write_sidecar

log = logging.getLogger(__name__)

# TensorRT-RTX's default AOT targets (Ampere, Ada, Blackwell RTX); Turing (7.5) must be asked for separately.
RTX_TARGETS = ("8.0", "8.6", "8.9", "12.0")
RUNTIME_CACHE_SUFFIX = ".cache"

_NP_NAMES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
             "UINT8": "uint8", "BOOL": "bool", "BF16": "bfloat16"}


class LayerOutput(NamedTuple):
    """One output of one layer of a parsed network: the layer's name and type and the output's data type."""

    layer: str
    kind: str  # trt.LayerType name: CONVOLUTION, ACTIVATION, QUANTIZE, CAST, CONSTANT, ...
    dtype: str  # trt.DataType name: FLOAT, HALF, INT8, INT64, ...


def engine_from_onnx(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    profile: Sequence[Sequence[int]] | None = None,
    workspace_mb: int | None = option_default("workspace_mb"),
    flavour: str = option_default("flavour"),
) -> Path:
    """Build a serialized engine from an EdgeSeg ONNX file and write it with its sidecar; returns the engine path.

    `profile` = (min, opt, max) shapes as (N, 3, H, W) (also for graphs with a uint8 NHWC 'frame' input); default:
    the shapes the ONNX was exported with (meta.dynamic_shapes), or its static shape. `flavour` 'auto' uses
    `tensorrt` when importable, else `tensorrt_rtx`. ExportError on unsupported ops or a failed build.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    meta = _buildable_meta(onnx_path, workspace_mb)
    shapes = check_dynamic(profile if profile is not None else meta.dynamic_shapes)
    trt, flavour = import_trt(flavour)
    log.info("building a %s %s engine (%s) from %s", flavour, trt.__version__, meta.precision, onnx_path.name)
    logger = _CapturingLogger(trt)
    builder, network, _parser = parse_onnx(trt, flavour, onnx_path, logger)
    config = builder_config(trt, flavour, builder, network, meta, shapes, workspace_mb, onnx_path.name)
    serialized, seconds = _build(trt, flavour, builder, network, config, logger, onnx_path.name)
    write_file(engine_path, serialized)
    _remove_runtime_cache(engine_path)
    sidecar = _sidecar(trt, flavour, network, config, meta, shapes, workspace_mb, onnx_path, engine_path, seconds)
    write_sidecar(engine_path, sidecar)
    return engine_path


def inspect_onnx_layers(onnx_path: str | Path, flavour: str = "auto") -> list[LayerOutput]:
    """Parse an ONNX file into a strongly typed network (no build, no GPU) and list its layers' output types."""
    trt, flavour = import_trt(flavour)
    _builder, network, _parser = parse_onnx(trt, flavour, Path(onnx_path), _CapturingLogger(trt))
    return layer_outputs(network)


def layer_outputs(network: Any) -> list[LayerOutput]:
    rows = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            rows.append(LayerOutput(layer.name, layer.type.name, layer.get_output(j).dtype.name))
    return rows


def count_output_types(rows: Sequence[LayerOutput]) -> dict[str, int]:
    """{data type: number of layer outputs} over computing layers (CONSTANT layers hold weights, scales and zero
    points: data, not computation)."""
    return dict(sorted(Counter(r.dtype for r in rows if r.kind != "CONSTANT").items()))


# ----- steps ------------------------------------------------------------------------------------------------------
def _buildable_meta(onnx_path: Path, workspace_mb: int | None) -> ModelMeta:
    meta = get_meta(load_onnx(onnx_path), where=str(onnx_path))
    if meta.int8_target == "cpu":
        raise ExportError(f"{onnx_path.name} is the CPU INT8 variant (unsigned asymmetric activations for ONNX Runtime); "
                          "TensorRT needs symmetric signed INT8: export with --int8-target tensorrt for engines")
    if workspace_mb is not None and workspace_mb < 1:
        raise ConfigError(f"workspace_mb must be a positive number of MiB, got {workspace_mb}")
    return meta


def _remove_runtime_cache(engine_path: Path) -> None:
    """The runtime cache next to an engine holds the kernels compiled for the engine just replaced: the new engine
    starts without one (the runtime writes it again) rather than next to another model's kernels."""
    cache = engine_path.with_name(engine_path.name + RUNTIME_CACHE_SUFFIX)
    if not cache.is_file() or cache.is_symlink():
        return
    try:
        cache.unlink()
    except OSError as exc:  # the runtime rejects or replaces a cache that does not fit: a warning is enough
        log.warning("could not remove %s, the runtime cache of the replaced engine: %s", cache, exc.strerror or exc)
        return
    log.info("removed %s, the runtime cache of the engine %s replaced", cache.name, engine_path.name)


def parse_onnx(trt: Any, flavour: str, onnx_path: Path, logger: Any) -> tuple[Any, Any, Any]:
    """(builder, strongly typed network, parser) for an ONNX file; ExportError naming each node it cannot parse."""
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is None and flavour == "tensorrt":
        raise ExportError(f"TensorRT {trt.__version__} has no strongly typed networks; EdgeSeg needs TensorRT 10 or "
                          "later so that the engine keeps the ONNX graph's precision")
    # The flag is TRT 10's opt-in; TRT 11 and TensorRT-RTX are strongly typed always and accept it as a no-op.
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            errors.append(f"node '{e.node_name()}' (op {e.node_operator()}): {e.desc()}")
        raise ExportError(f"{flavour} {trt.__version__} cannot parse {onnx_path.name}:\n  " + "\n  ".join(errors))
    return builder, network, parser


def builder_config(trt: Any, flavour: str, builder: Any, network: Any, meta: ModelMeta,
                   shapes: tuple[Shape, Shape, Shape] | None, workspace_mb: int | None, name: str) -> Any:
    """The builder config: workspace, optimisation profile, and for TensorRT-RTX its AOT targets and the
    user-allocation flag CUDA-graph capture needs."""
    config = builder.create_builder_config()
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    _add_profile(builder, network, config, meta, shapes, name)
    if flavour == "tensorrt_rtx":
        config.num_compute_capabilities = len(RTX_TARGETS)
        for index, cc in enumerate(RTX_TARGETS):
            if not config.set_compute_capability(getattr(trt.ComputeCapability, "SM" + cc.replace(".", "")), index):
                raise ExportError(f"TensorRT-RTX {trt.__version__} refuses compute capability {cc} as a build target")
        config.set_flag(trt.BuilderFlag.REQUIRE_USER_ALLOCATION)
    return config


def _add_profile(builder: Any, network: Any, config: Any, meta: ModelMeta, shapes: tuple[Shape, Shape, Shape] | None,
                 name: str) -> None:
    inp = network.get_input(0)
    if shapes is None:
        if any(d < 0 for d in tuple(inp.shape)):
            raise ConfigError(f"{name} has a dynamic input {tuple(inp.shape)}; give a profile (min, opt, max) to build it")
        return
    nhwc = meta.input_format == "uint8_nhwc_bgr"
    trt_shapes = [(s[0], s[2], s[3], 3) if nhwc else tuple(s) for s in shapes]
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, *trt_shapes)
    config.add_optimization_profile(profile)


def _build(trt: Any, flavour: str, builder: Any, network: Any, config: Any, logger: Any, name: str
           ) -> tuple[bytes, float]:
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise ExportError(f"{flavour} {trt.__version__} failed to build an engine from {name}:\n  "
                          + "\n  ".join(logger.errors or ["(no error message; run with -v)"]))
    log.info("engine built in %.1f s", seconds)
    return bytes(serialized), seconds


def _sidecar(trt: Any, flavour: str, network: Any, config: Any, meta: ModelMeta,
             shapes: tuple[Shape, Shape, Shape] | None, workspace_mb: int | None, onnx_path: Path,
             engine_path: Path, seconds: float) -> EngineSidecar:
    rtx = flavour == "tensorrt_rtx"
    gpu_name, compute_capability = (None, None) if rtx else _build_gpu()
    return EngineSidecar(
        flavour=flavour, trt_version=trt.__version__, precision=meta.precision,
        inputs=tuple(_tensor(network.get_input(i)) for i in range(network.num_inputs)),
        outputs=tuple(_tensor(network.get_output(i)) for i in range(network.num_outputs)),
        meta=meta if shapes is None else meta.replace(dynamic_shapes=[list(s) for s in shapes]),  # the profile built
        engine_sha256=sha256_file(engine_path), onnx=onnx_path.name, onnx_sha256=sha256_file(onnx_path),
        strongly_typed=True, profile=tuple(tuple(s) for s in shapes) if shapes else None, workspace_mb=workspace_mb,
        gpu_name=gpu_name, compute_capability=compute_capability,
        compute_capabilities=RTX_TARGETS if rtx else ((compute_capability,) if compute_capability else ()),
        version_compatible=config.get_flag(trt.BuilderFlag.VERSION_COMPATIBLE),
        hardware_compatibility=_hardware_compatibility(trt, config, rtx),
        layer_output_types=count_output_types(layer_outputs(network)),
        cuda_graph_ready=rtx and config.get_flag(trt.BuilderFlag.REQUIRE_USER_ALLOCATION),
        runtime_cache=engine_path.name + RUNTIME_CACHE_SUFFIX if rtx else None,
        build_seconds=round(seconds, 3), built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def _tensor(tensor: Any) -> TensorInfo:
    return TensorInfo(tensor.name, tuple(tensor.shape), _NP_NAMES.get(tensor.dtype.name, tensor.dtype.name.lower()))


def _hardware_compatibility(trt: Any, config: Any, rtx: bool) -> str:
    """TensorRT's hardware-compatibility level; TensorRT-RTX has none (its portability is compute_capabilities)."""
    if rtx:
        return "none"
    return {"NONE": "none", "AMPERE_PLUS": "ampere_plus", "SAME_COMPUTE_CAPABILITY": "same_compute_capability"}.get(
        config.hardware_compatibility_level.name, "none")


def _build_gpu() -> tuple[str | None, str | None]:
    """(name, compute capability) of the GPU `tensorrt` built for (device 0), when one is visible."""
    from edgeseg.runtime.gpu import cuda_api, gpu_available

    if not gpu_available():
        return None, None
    info = cuda_api().device_info(0)
    return info.name, info.compute_capability


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
