"""A Triton Inference Server model repository from an export: `write_triton_repository(repo, onnx, engine=...)`.

Every model in the repository keeps one I/O contract, the one that saves bandwidth between camera hosts and the
server: `frames` uint8 NHWC BGR at the model's input size in, `classmap` uint8 (H, W) out; normalisation and argmax
run inside the model. So one client (edgeseg.runtime.backends.triton) works against any of them:

    REPO/NAME_trt/1/model.plan      TensorRT backend (GPU servers; only with engines built by the `tensorrt` flavour)
    REPO/NAME_onnx/1/model.onnx     onnxruntime backend with the TensorRT execution accelerator (GPU servers)
    REPO/NAME_python/1/model.py     Python backend wrapping EdgeSeg's Segmenter (ONNX Runtime + C++ kernels):
                     1/model.onnx   CPU servers, and testing anywhere (`edgeseg serve` runs it without a GPU)

Each config.pbtxt carries max_batch_size (the graph's dynamic batch profile), dynamic batching with preferred sizes
and a queue delay, an instance group, the I/O contract, `labels.txt` (the class names) and the model's ModelMeta
as JSON under parameters["edgeseg"], which the client reads instead of asking for input size or classes.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.config import ModelMeta
from edgeseg.errors import ConfigError, ExportError, OutputPathError
from edgeseg.files import write_file

log = logging.getLogger(__name__)

INPUT_NAME = "frames"  # graph_edits.add_uint8_input's input
OUTPUT_NAME = "classmap"  # graph_edits.add_argmax's output
META_PARAMETER = "edgeseg"  # config parameters key holding ModelMeta JSON
LABELS_FILE = "labels.txt"
VERSION = "1"
# Model-name suffix per Triton backend: one folder each, so a server loads the ones it has backends for.
SUFFIXES = {"tensorrt": "_trt", "onnxruntime": "_onnx", "python": "_python"}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# ORT's TensorRT accelerator precision per graph precision (Q/DQ graphs need INT8 enabled to keep their INT8).
_ORT_TRT_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}


@dataclass(frozen=True)
class Scheduling:
    """How Triton batches and places one model: the knobs a deployment tunes, with defaults for camera streams."""

    max_batch: int
    queue_delay_us: int = 2000  # wait up to 2 ms for more frames: a fraction of a 30 FPS frame interval
    gpu_instances: int = 2  # two per GPU: one copies while the other computes
    cpu_instances: int = 1  # the Python model's ONNX Runtime already uses every core

    def preferred_sizes(self) -> list[int]:
        """Powers of two above 1 up to max_batch, plus max_batch itself: the sizes the scheduler aims for."""
        sizes = [size for size in (2, 4, 8, 16, 32, 64) if size < self.max_batch]
        return sizes + [self.max_batch] if self.max_batch > 1 else []


def check_model_name(name: str) -> str | None:
    """What is wrong with a Triton model name, or None (it names a folder and appears in URLs)."""
    if not _NAME_RE.fullmatch(name or ""):
        return f"must be letters, digits, '_', '.' or '-' (starting with a letter or digit), got {name!r}"
    return None


def check_contract(meta: ModelMeta, where: str) -> None:
    """The graph must take uint8 NHWC BGR frames and give a uint8 class map (--uint8-input --argmax)."""
    if meta.input_format != "uint8_nhwc_bgr" or meta.output_format != "classmap":
        raise ConfigError(
            f"{where} takes {meta.input_format} and gives {meta.output_format}; a Triton repository needs "
            "uint8 NHWC BGR frames in and a uint8 class map out: export with --uint8-input --argmax"
        )


def max_batch_of(meta: ModelMeta, where: str) -> int:
    """Triton's max_batch_size: the top of the graph's dynamic batch profile (ModelMeta.dynamic_shapes)."""
    if meta.dynamic_shapes is None or meta.dynamic_shapes[2][0] < 2:
        raise ConfigError(
            f"{where} has a static batch axis; Triton batches requests together: export with --max-batch N (N >= 2)"
        )
    low, _, high = meta.dynamic_shapes
    if tuple(low[2:]) != tuple(high[2:]):
        raise ConfigError(f"{where} has a dynamic height/width ({low} .. {high}); the Triton contract is frames at "
                          "one size: export with --max-batch N instead of a --dynamic size range")
    return int(high[0])


# ----- config.pbtxt ------------------------------------------------------------------------------------------------
class _Enum(str):
    """An enum value (TYPE_UINT8, KIND_GPU): written bare, where every other string is quoted."""


def _pbtxt(value: Any, indent: int = 0) -> str:
    """Protobuf text format of nested dicts, lists and scalars."""
    pad = "  " * indent
    lines = []
    for key, item in value.items():
        for one in item if isinstance(item, list) and (not item or isinstance(item[0], dict)) else [item]:
            if isinstance(one, dict):
                lines.append(f"{pad}{key} {{\n{_pbtxt(one, indent + 1)}{pad}}}\n")
            else:
                lines.append(f"{pad}{key}: {_scalar(one)}\n")
    return "".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[ " + ", ".join(_scalar(v) for v in value) + " ]"
    if isinstance(value, _Enum):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # quoted, with the escapes protobuf's text format reads


def model_config(name: str, backend: str, meta: ModelMeta, scheduling: Scheduling) -> str:
    """config.pbtxt text for one model of the repository (see the module docstring)."""
    if backend not in SUFFIXES:
        raise ConfigError(f"unknown Triton backend {backend!r}; choose from {list(SUFFIXES)}")
    height, width = meta.input_size
    config: dict[str, Any] = {"name": name, "backend": backend, "max_batch_size": scheduling.max_batch}
    if backend == "tensorrt":
        config = {"name": name, "platform": "tensorrt_plan", "max_batch_size": scheduling.max_batch}
    config["input"] = [{"name": INPUT_NAME, "data_type": _Enum("TYPE_UINT8"), "format": _Enum("FORMAT_NHWC"),
                        "dims": [height, width, 3]}]
    config["output"] = [{"name": OUTPUT_NAME, "data_type": _Enum("TYPE_UINT8"), "dims": [height, width],
                         "label_filename": LABELS_FILE}]
    config["dynamic_batching"] = {"preferred_batch_size": scheduling.preferred_sizes(),
                                  "max_queue_delay_microseconds": scheduling.queue_delay_us}
    on_gpu = backend != "python"
    config["instance_group"] = [{"count": scheduling.gpu_instances if on_gpu else scheduling.cpu_instances,
                                 "kind": _Enum("KIND_GPU") if on_gpu else _Enum("KIND_CPU")}]
    if backend == "onnxruntime":
        accelerator = {"name": "tensorrt", "parameters": [
            {"key": "precision_mode", "value": _ORT_TRT_PRECISION[meta.precision]},
            {"key": "max_workspace_size_bytes", "value": str(1 << 30)},
        ]}
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}
    config["parameters"] = [{"key": META_PARAMETER, "value": {"string_value": meta.to_json()}}]
    return _pbtxt(config)


# ----- the repository ------------------------------------------------------------------------------------------------
def check_repo_path(repo: str | Path) -> str | None:
    """What is wrong with a repository path, or None (checked before the export's slow work)."""
    if Path(repo).exists() and not Path(repo).is_dir():
        return f"{repo} is a file; give a folder for the model repository"
    return None


def _write_model(repo: Path, name: str, backend: str, meta: ModelMeta, scheduling: Scheduling,
                 files: dict[str, Path | bytes]) -> Path:
    """REPO/name/{config.pbtxt, labels.txt, 1/<files>}; a file is copied (source path) or written (bytes)."""
    folder = repo / name
    version = folder / VERSION
    for target, source in files.items():
        destination = version / target
        if isinstance(source, Path):
            if destination.exists() and destination.resolve() == source.resolve():
                raise OutputPathError(f"Triton model file {destination} is the export's own {source}")
            write_file(destination, source.read_bytes())
        else:
            write_file(destination, source)
    write_file(folder / LABELS_FILE, "".join(f"{c}\n" for c in meta.classes))
    write_file(folder / "config.pbtxt", model_config(name, backend, meta, scheduling))
    return folder


def python_model_source() -> bytes:
    """The Python backend's model.py: edgeseg/export/triton_python_model.py, copied as is."""
    return (Path(__file__).with_name("triton_python_model.py")).read_bytes()


def write_triton_repository(
    repo: str | Path,
    onnx: str | Path,
    *,
    engine: str | Path | None = None,
    name: str = "edgeseg",
    scheduling: Scheduling | None = None,
) -> dict[str, Path]:
    """Write the models of a Triton repository for one exported graph; returns {backend: model folder}.

    `onnx`: an EdgeSeg ONNX file with the I/O contract (--uint8-input --argmax) and a dynamic batch axis.
    `engine`: a TensorRT engine built from it, added as the TensorRT-backend model when its flavour is `tensorrt`
    (Triton's TensorRT backend cannot run TensorRT-RTX engines; those are left out with a warning).
    """
    from edgeseg.export.onnx_io import get_meta, load_onnx

    repo, onnx = Path(repo), Path(onnx)
    problem = check_model_name(name)
    if problem:
        raise ConfigError(f"--triton-name {problem}")
    if not onnx.is_file():
        raise ExportError(f"cannot write the Triton repository: {onnx} does not exist")
    meta = get_meta(load_onnx(onnx))
    check_contract(meta, str(onnx))
    scheduling = scheduling or Scheduling(max_batch_of(meta, str(onnx)))
    problem = check_repo_path(repo)
    if problem:
        raise OutputPathError(f"--triton {problem}")
    written = {
        "onnxruntime": _write_model(repo, name + SUFFIXES["onnxruntime"], "onnxruntime", meta, scheduling,
                                    {"model.onnx": onnx}),
        "python": _write_model(repo, name + SUFFIXES["python"], "python", meta, scheduling,
                               {"model.onnx": onnx, "model.py": python_model_source()}),
    }
    if engine is not None:
        from edgeseg.sidecar import read_sidecar

        flavour = read_sidecar(engine).flavour
        if flavour == "tensorrt":
            written["tensorrt"] = _write_model(repo, name + SUFFIXES["tensorrt"], "tensorrt", meta, scheduling,
                                               {"model.plan": Path(engine)})
        else:
            log.warning("Triton's TensorRT backend runs engines of the 'tensorrt' flavour, and %s is %s: no %s model "
                        "(build with --flavour tensorrt on the server's TensorRT version)", engine, flavour,
                        name + SUFFIXES["tensorrt"])
    for backend, folder in written.items():
        log.info("Triton %s model %s", backend, folder)
    return written


__all__ = ["INPUT_NAME", "OUTPUT_NAME", "META_PARAMETER", "LABELS_FILE", "SUFFIXES", "Scheduling", "model_config",
           "write_triton_repository", "check_model_name", "check_repo_path", "check_contract", "max_batch_of", "python_model_source"]
