"""`export_model`: checkpoint -> DIR/model.onnx (+ one ONNX file per format, engines, report.json).

It only chains the small steps, reading what to do from the format table (edgeseg.export.formats):
check the request and its inputs -> onnx_from_torch -> each format's step -> add_uint8_input / add_argmax ->
engine_from_onnx -> accuracy_report. Everything that can be refused is refused before the first slow step or
written file: the request itself, an unreadable calibration source, a missing TensorRT, a dataset whose classes do
not match the model, an output that would overwrite an input.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgeseg.config import ModelMeta
from edgeseg.errors import OutputPathError
from edgeseg.export.formats import DEFAULT_PRECISIONS, ExportRequest, check_request
from edgeseg.export.onnx_io import load_onnx, get_meta, save_onnx

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"


def export_model(
    ckpt: str | Path,
    out_dir: str | Path,
    *,
    precisions: Sequence[str] = DEFAULT_PRECISIONS,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Export a checkpoint; returns {'onnx': {precision: path}, 'engines': {...}, 'parity': ..., 'report': ...}.

    `options` are the format table's options by keyword (formats.COMMON_OPTIONS and each Format's own, e.g.
    calib=, calib_frames=, engine=, lowres=); an option left out takes the table's default. The FP32 model is always
    made: it is the reference every other precision derives from and is compared to.
    """
    request = check_request(list(precisions), **options)
    out_dir = Path(out_dir)
    _check_sources(request)
    _check_outputs_clear_of_inputs(ckpt, out_dir, request)
    from edgeseg.training.checkpoint import load_model

    model, meta = load_model(ckpt)
    dataset = _report_dataset(request, meta)
    fp32 = _export_fp32(model, meta, out_dir, request)
    onnx_paths = _make_formats(fp32, out_dir, request, progress)
    _apply_graph_edits(onnx_paths, request)
    engines = _build_engines(onnx_paths, out_dir, request)
    report = _accuracy_report(onnx_paths, engines, out_dir, request, dataset, progress)
    return {"onnx": {p: str(v) for p, v in onnx_paths.items()},
            "engines": {p: str(v) for p, v in engines.items()},
            "parity": get_meta(load_onnx(fp32)).parity, "report": report}


# ----- checks before any slow work --------------------------------------------------------------------------------
def _check_sources(request: ExportRequest) -> None:
    """An unreadable calibration source or a missing TensorRT fails before anything is written."""
    if request.options.get("calib") is not None:
        from edgeseg.data.frame_files import iter_frames

        next(iter_frames(request.options["calib"], limit=1))
    if request.options["engine"]:
        from edgeseg.runtime.trt_flavours import import_trt

        import_trt(request.options["flavour"])


def _output_paths(out_dir: Path, request: ExportRequest) -> list[Path]:
    paths = [out_dir / "model.onnx", out_dir / REPORT_NAME]
    for fmt in request.formats:
        paths += [out_dir / fmt.onnx_name, out_dir / fmt.engine_name, out_dir / (fmt.engine_name + ".json"),
                  out_dir / (fmt.engine_name + ".cache")]
    return paths


def _check_outputs_clear_of_inputs(ckpt: str | Path, out_dir: Path, request: ExportRequest) -> None:
    """No output may replace an input (the checkpoint, a calibration image or video)."""
    inputs = [Path(ckpt)]
    calib = request.options.get("calib")
    if isinstance(calib, (str, Path)):
        inputs.append(Path(calib))
    inputs = [p.resolve() for p in inputs if p.exists()]
    for path in _output_paths(out_dir, request):
        if path.exists() and any(path.resolve() == p for p in inputs):
            raise OutputPathError(f"export output {path} is one of its inputs; choose another --out folder")


def _report_dataset(request: ExportRequest, meta: ModelMeta) -> Any:
    """The report's dataset, opened and checked against the model's classes before any file is written."""
    if request.options["report_data"] is None:
        return None
    from edgeseg.export.report import open_report_data

    return open_report_data(request.options["report_data"], meta)


# ----- steps ------------------------------------------------------------------------------------------------------
def _export_fp32(model: Any, meta: ModelMeta, out_dir: Path, request: ExportRequest) -> Path:
    from edgeseg.export.formats import FORMATS
    from edgeseg.export.onnx_export import onnx_from_torch

    path = onnx_from_torch(model, meta, out_dir / FORMATS["fp32"].onnx_name, input_size=request.options["input_size"],
                           dynamic=request.options["dynamic"], lowres=request.options["lowres"])
    log.info("FP32 ONNX %s", path)
    return path


def _make_formats(fp32: Path, out_dir: Path, request: ExportRequest, progress: bool) -> dict[str, Path]:
    """Each requested format's step, from the FP32 graph (float input, logits output); fp32 always comes first."""
    paths: dict[str, Path] = {"fp32": fp32}  # always: the reference for the report
    for fmt in request.formats:
        paths[fmt.precision] = fmt.step(fp32, out_dir / fmt.onnx_name, progress=progress, **request.step_options(fmt))
        log.info("%s ONNX %s", fmt.precision, paths[fmt.precision])
    return paths


def _apply_graph_edits(paths: Mapping[str, Path], request: ExportRequest) -> None:
    """--uint8-input and --argmax apply to every precision alike, after its own step."""
    if not (request.options["uint8_input"] or request.options["argmax"]):
        return
    from edgeseg.export.graph_edits import add_argmax, add_uint8_input

    for path in dict.fromkeys(paths.values()):
        edited = load_onnx(path)
        if request.options["uint8_input"]:
            edited = add_uint8_input(edited)
        if request.options["argmax"]:
            edited = add_argmax(edited)
        save_onnx(edited, path)


def _build_engines(paths: Mapping[str, Path], out_dir: Path, request: ExportRequest) -> dict[str, Path]:
    if not request.options["engine"]:
        return {}
    from edgeseg.export.engine import engine_from_onnx

    return {fmt.precision: engine_from_onnx(paths[fmt.precision], out_dir / fmt.engine_name,
                                            workspace_mb=request.options["workspace_mb"],
                                            flavour=request.options["flavour"])
            for fmt in request.formats}


def _accuracy_report(paths: Mapping[str, Path], engines: Mapping[str, Path], out_dir: Path, request: ExportRequest,
                     dataset: Any, progress: bool) -> dict[str, Any] | None:
    if dataset is None:
        return None
    from edgeseg.export.report import accuracy_report
    from edgeseg.sidecar import read_sidecar

    layer_types = {precision: read_sidecar(path).layer_output_types for precision, path in engines.items()}
    return accuracy_report(paths, dataset, miou_threshold=request.options["miou_threshold"],
                           out_path=out_dir / REPORT_NAME, layer_output_types=layer_types, progress=progress)
