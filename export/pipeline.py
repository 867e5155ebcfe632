"""`export_model`: checkpoint -> DIR/model.onnx (+ one ONNX file per format, engines, report.json).

It only chains the small steps, reading what to do from the format table (edgeseg.export.formats):
check the request and its inputs -> onnx_from_torch -> each format's step -> add_uint8_input / add_argmax ->
engine_from_onnx -> accuracy_report. Everything that can be refused is refused before the first slow step or
written file: the request itself, an --out that is a file or cannot be created, an unreadable calibration source,
a missing TensorRT, a dataset whose classes do not match the model, an output that would overwrite an input. So a
refused request leaves no folder behind. The files an export writes are recorded in DIR/export_manifest.json, and
the next export into DIR removes the ones it does not write again (edgeseg.export.manifest says why).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgeseg.config import ModelMeta
from edgeseg.errors import DataError
from edgeseg.export.formats import DEFAULT_PRECISIONS, FORMATS, ExportRequest, check_request
from edgeseg.export.manifest import MANIFEST_NAME, read_manifest
from edgeseg.export.staging import StagedExport
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
    _check_outputs(ckpt, out_dir, request)
    _check_sources(request)
    stage = StagedExport(out_dir, inputs=_input_paths(ckpt, request), checkpoint=str(ckpt),
                         precisions=[f.precision for f in request.formats])
    stage.check()
    from edgeseg.training.checkpoint import load_model

    # Built in a staging folder beside --out and swapped in at the end (edgeseg.export.staging): --out holds the
    # previous export or this one, never a mix, and a refused or failed export leaves no folder behind.
    with stage:
        model, meta = load_model(ckpt)
        dataset = _report_dataset(request, meta)
        staged = request.with_paths(deepstream=stage.staged, triton=stage.staged)
        fp32 = _export_fp32(model, meta, stage.path, staged)
        onnx_paths = _make_formats(fp32, stage.path, staged, progress)
        deepstream = _write_deepstream(onnx_paths, stage.path, staged, final=stage.final)  # float graphs, pre-edit
        _apply_graph_edits(onnx_paths, staged)
        engines = _build_engines(onnx_paths, stage.path, staged)
        report = _accuracy_report(onnx_paths, engines, stage.path, staged, dataset, progress)
        triton = _write_triton(onnx_paths, engines, staged)
        parity = get_meta(load_onnx(fp32)).parity
    _warn_unrecorded_outputs(out_dir)

    def final(paths: Mapping[str, Path]) -> dict[str, str]:
        return {key: str(stage.final(path)) for key, path in paths.items()}

    return {"onnx": final(onnx_paths), "engines": final(engines), "parity": parity, "report": report,
            "deepstream": final(deepstream), "triton": final(triton)}


# ----- checks before any slow work --------------------------------------------------------------------------------
def _check_outputs(ckpt: str | Path, out_dir: Path, request: ExportRequest) -> None:
    """The output guard on --out (with the files it will hold), --deepstream and --triton: writable, no folder
    where a file goes, and none of them over an input (the checkpoint, --calib, the --report-data dataset)."""
    from edgeseg.files import IMAGE_SUFFIXES
    from edgeseg.output_guard import Input, Output, check_outputs, dataset_input

    from edgeseg.export.deepstream import deepstream_outputs

    deepstream, triton = request.options["deepstream"], request.options["triton"]
    ds_files = deepstream_outputs(deepstream) if deepstream is not None else []
    names = [p.name for p in _output_paths(out_dir, request) if p.parent == out_dir and p not in ds_files]
    if request.options["engine"]:  # a rebuilt engine's runtime cache is dropped (edgeseg.export.manifest)
        names += [fmt.engine_name + ".cache" for fmt in request.formats]
    same = deepstream is not None and Path(deepstream).resolve() == out_dir.resolve()
    names += [p.name for p in ds_files] if same else []  # --deepstream may be --out itself
    outputs = [Output("--out", out_dir, folder=True, files=tuple(dict.fromkeys(names + [MANIFEST_NAME])))]
    if deepstream is not None and not same:
        outputs.append(Output("--deepstream", deepstream, folder=True, files=tuple(p.name for p in ds_files)))
    if triton is not None:
        outputs.append(Output("--triton", triton, folder=True))
    inputs = [Input("the checkpoint", ckpt)] + dataset_input(request.options["report_data"], "--report-data")
    if isinstance(request.options.get("calib"), (str, Path)):
        inputs.append(Input("--calib", request.options["calib"], suffixes=IMAGE_SUFFIXES))
    check_outputs(outputs, inputs)


def _check_sources(request: ExportRequest) -> None:
    """An unreadable calibration source or a missing TensorRT fails before anything is written."""
    if request.options.get("calib") is not None:
        from edgeseg.data.frame_files import iter_frames

        try:  # zero usable frames is refused here; fewer than --calib-frames is a warning at calibration
            next(iter_frames(request.options["calib"], limit=1))
        except DataError as exc:
            raise DataError(f"--calib: {exc}") from exc
    if request.options["engine"]:
        from edgeseg.runtime.trt_flavours import import_trt

        import_trt(request.options["flavour"])


def _output_paths(out_dir: Path, request: ExportRequest) -> list[Path]:
    """Every file this request writes into out_dir (a step that writes more must add them here: this list is what
    the manifest records, what is checked against the inputs, and what a failed export into a new folder removes)."""
    paths = [out_dir / FORMATS["fp32"].onnx_name] + [out_dir / fmt.onnx_name for fmt in request.formats]
    if request.options["engine"]:
        paths += [out_dir / name for fmt in request.formats for name in (fmt.engine_name, fmt.engine_name + ".json")]
    if request.options["report_data"] is not None:
        paths.append(out_dir / REPORT_NAME)
    if request.options["deepstream"] is not None:
        from edgeseg.export.deepstream import DEEPSTREAM_ENGINE, DEEPSTREAM_ONNX, deepstream_outputs

        paths.append(out_dir / DEEPSTREAM_ONNX)
        if request.options["engine"]:
            paths += [out_dir / DEEPSTREAM_ENGINE, out_dir / (DEEPSTREAM_ENGINE + ".json")]
        paths += deepstream_outputs(request.options["deepstream"])
    return list(dict.fromkeys(paths))


def _input_paths(ckpt: str | Path, request: ExportRequest) -> list[Path]:
    """The files and folders the export reads: never written, never removed as stale."""
    inputs = [Path(ckpt)]
    inputs += [Path(request.options[name]) for name in ("calib", "report_data")
               if isinstance(request.options.get(name), (str, Path))]
    return inputs


def _warn_unrecorded_outputs(out_dir: Path) -> None:
    """Export outputs in the folder that no manifest records (left by an export older than manifests, or copied
    in): they are kept, and said so, since `edgeseg run` would load them as they are."""
    known = {FORMATS["fp32"].onnx_name, REPORT_NAME}
    known |= {name for fmt in FORMATS.values() for name in (fmt.onnx_name, fmt.engine_name, fmt.engine_name + ".json")}
    recorded = read_manifest(out_dir)
    leftovers = sorted(name for name in known if name not in recorded and (out_dir / name).is_file())
    if leftovers:
        log.warning("%s also holds %s, which this export did not write and no EdgeSeg manifest records: kept; "
                    "delete them if they belong to another model", out_dir, ", ".join(leftovers))


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
                           dynamic=request.options["dynamic"], max_batch=request.options["max_batch"],
                           lowres=request.options["lowres"])
    log.info("FP32 ONNX %s", path)
    return path


def _make_formats(fp32: Path, out_dir: Path, request: ExportRequest, progress: bool) -> dict[str, Path]:
    """Each requested format's step, from the FP32 graph (float input, logits output); fp32 always comes first."""
    paths: dict[str, Path] = {"fp32": fp32}  # always: the reference for the report
    for fmt in request.formats:
        paths[fmt.precision] = fmt.step(fp32, out_dir / fmt.onnx_name, progress=progress, **request.step_options(fmt))
        log.info("%s ONNX %s", fmt.precision, paths[fmt.precision])
    return paths


def _write_deepstream(paths: Mapping[str, Path], out_dir: Path, request: ExportRequest,
                      final: Callable[[Path], Path] = lambda path: path) -> dict[str, Path]:
    """--deepstream: model_deepstream.onnx (std folded; FP16 when fp16 was asked for), its engine with --engine and
    TensorRT, and the nvinfer config, labels and sample pipeline in the --deepstream folder. `final` maps a staged
    path to where it will be, for the config's relative paths."""
    if request.options["deepstream"] is None:
        return {}
    from edgeseg.export.deepstream import DEEPSTREAM_ENGINE, DEEPSTREAM_ONNX, deepstream_onnx, write_deepstream

    onnx_path = deepstream_onnx(paths["fp32"], out_dir / DEEPSTREAM_ONNX, fp16="fp16" in paths)
    engine = None
    if request.options["engine"]:
        from edgeseg.runtime.trt_flavours import import_trt

        if import_trt(request.options["flavour"])[1] == "tensorrt":
            from edgeseg.export.engine import engine_from_onnx

            engine = engine_from_onnx(onnx_path, out_dir / DEEPSTREAM_ENGINE, flavour="tensorrt",
                                      workspace_mb=request.options["workspace_mb"])
        else:  # nvinfer runs TensorRT, which cannot load a TensorRT-RTX engine
            log.warning("DeepStream's nvinfer cannot load TensorRT-RTX engines: it builds its own from %s on its "
                        "first run", DEEPSTREAM_ONNX)
    written = write_deepstream(onnx_path, request.options["deepstream"], engine=engine, final=final)
    return {"onnx": onnx_path, **({"engine": engine} if engine is not None else {}), **written}


def _write_triton(paths: Mapping[str, Path], engines: Mapping[str, Path], request: ExportRequest) -> dict[str, Path]:
    """--triton REPO: the Triton model repository (edgeseg.export.triton) from the first requested precision."""
    if request.options["triton"] is None:
        return {}
    from edgeseg.export.triton import write_triton_repository

    precision = request.formats[0].precision
    return write_triton_repository(request.options["triton"], paths[precision], engine=engines.get(precision),
                                   name=request.options["triton_name"])


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
