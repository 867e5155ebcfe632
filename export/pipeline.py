"""`export_model`: checkpoint -> DIR/model.onnx (+ model_fp16.onnx, model_int8.onnx, engines, report.json).

It only chains the small steps: onnx_from_torch -> fp16_from_onnx / qdq_from_onnx -> add_uint8_input /
add_argmax -> engine_from_onnx -> accuracy_report, after `formats.check_request` has validated the whole request
(before any slow work: an int8 export without calibration data fails at once, not after the FP32 export).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from edgeseg.errors import ConfigError
from edgeseg.export.formats import check_request
from edgeseg.export.onnx_io import get_meta, load_onnx, save_onnx

log = logging.getLogger(__name__)


def export_model(
    ckpt: str | Path,
    out_dir: str | Path,
    *,
    precisions: Sequence[str] = ("fp32",),
    calib: Any = None,
    engine: bool = False,
    input_size: tuple[int, int] | None = None,
    dynamic: Sequence[Sequence[int]] | None = None,
    argmax: bool = False,
    uint8_input: bool = False,
    lowres: bool = False,
    calib_frames: int = 64,
    calib_method: str = "entropy",
    workspace_mb: int | None = None,
    report_data: str | Path | None = None,
    miou_threshold: float = 1.0,
    flavour: str = "auto",
    progress: bool = True,
    fp16_io: bool = False,
    sensitivity: int = 0,
    keep_head_float: bool = False,
    int8_target: str = "tensorrt",
) -> dict[str, Any]:
    """Export a checkpoint; returns {'onnx': {precision: path}, 'engines': {...}, 'parity': ..., 'report': ...}.

    The FP32 model is always made (it is the reference every other precision derives from and is compared to).
    """
    precisions = list(dict.fromkeys(precisions))
    int8_options = {"calib": calib, "calib_frames": calib_frames, "calib_method": calib_method} if (
        "int8" in precisions or calib is not None) else {}
    if sensitivity:
        int8_options["sensitivity"] = sensitivity
    if keep_head_float:
        int8_options["keep_head_float"] = True
    if int8_target != "tensorrt":
        int8_options["int8_target"] = int8_target
        if engine:
            raise ConfigError("--int8-target cpu makes an ONNX Runtime CPU model; TensorRT engines need the "
                              "default --int8-target tensorrt (drop --engine or the target)")
    formats = check_request(
        precisions, engine=engine or None, input_size=input_size, dynamic=dynamic, argmax=argmax or None,
        uint8_input=uint8_input or None, lowres=lowres or None, workspace_mb=workspace_mb, fp16_io=fp16_io or None,
        **int8_options,
    )
    if "int8" in precisions:  # an unreadable calibration source fails before anything is written
        from edgeseg.export.frames import iter_frames

        next(iter_frames(calib, limit=1))
    if engine:  # fail before the slow steps when no TensorRT flavour is importable
        from edgeseg.runtime.trt_flavours import import_trt

        import_trt(flavour)
    from edgeseg.export.onnx_export import onnx_from_torch
    from edgeseg.training.checkpoint import load_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, meta = load_model(ckpt)
    fp32_path = onnx_from_torch(model, meta, out_dir / "model.onnx", input_size=input_size, dynamic=dynamic,
                                lowres=lowres)
    base = load_onnx(fp32_path)  # float input, logits output: every precision starts from it
    parity = get_meta(base).parity
    log.info("FP32 ONNX %s", fp32_path)

    onnx_paths: dict[str, Path] = {"fp32": fp32_path}  # always: the reference for the report
    for fmt in formats:
        path = out_dir / fmt.onnx_name
        if fmt.precision == "fp16":
            from edgeseg.export.fp16 import fp16_from_onnx

            onnx_paths["fp16"] = fp16_from_onnx(base, path, keep_io_types=not fp16_io)
        elif fmt.precision == "int8":
            from edgeseg.export.int8 import qdq_from_onnx

            onnx_paths["int8"] = qdq_from_onnx(base, path, calib, num_frames=calib_frames, method=calib_method,
                                               keep_head_float=keep_head_float, sensitivity_top_k=sensitivity,
                                               target=int8_target,
                                               progress=progress)
    if uint8_input or argmax:
        from edgeseg.export.graph_edits import add_argmax, add_uint8_input

        for path in onnx_paths.values():
            edited = load_onnx(path)
            if uint8_input:
                edited = add_uint8_input(edited)
            if argmax:
                edited = add_argmax(edited)
            save_onnx(edited, path)

    engines: dict[str, Path] = {}
    if engine:
        from edgeseg.export.engine import engine_from_onnx

        for fmt in formats:
            engines[fmt.precision] = engine_from_onnx(onnx_paths[fmt.precision], out_dir / fmt.engine_name,
                                                      workspace_mb=workspace_mb, flavour=flavour)
    report = None
    if report_data is not None:
        from edgeseg.export.report import accuracy_report

        report = accuracy_report(onnx_paths, report_data, miou_threshold=miou_threshold, out_path=out_dir / "report.json")
    return {"onnx": {p: str(v) for p, v in onnx_paths.items()},
            "engines": {p: str(v) for p, v in engines.items()}, "parity": parity, "report": report}
