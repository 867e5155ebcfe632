import json

import numpy as np

import pytest

from edgeseg.cli import main
from edgeseg.errors import ConfigError
from edgeseg.export.formats import FORMATS, check_request
from edgeseg.export.onnx_io import read_meta
from edgeseg.export.pipeline import export_model


def test_default_export_is_fp32_onnx(tiny_ckpt, tmp_path):
    result = export_model(tiny_ckpt, tmp_path)
    assert result["onnx"] == {"fp32": str(tmp_path / "model.onnx")}
    assert result["parity"]["argmax_agreement"] >= 0.999 and result["engines"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export_manifest.json", "model.onnx"]


def test_all_precisions_engines_and_report(tiny_ckpt, tmp_path, image_dir):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not importable")
    export_model(tiny_ckpt, tmp_path, precisions=("fp32", "fp16", "int8"), calib=image_dir / "val" / "images",
                          calib_frames=4, engine=True, report_data=image_dir, miou_threshold=100.0, progress=False)
    for precision, fmt in FORMATS.items():
        assert (tmp_path / fmt.onnx_name).is_file() and (tmp_path / fmt.engine_name).is_file()
        assert (tmp_path / (fmt.engine_name + ".json")).is_file()
        assert read_meta(tmp_path / fmt.onnx_name).precision == precision
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["models"]) == {"fp32", "fp16", "int8"} and report["images"] == 6
    assert report["models"]["fp16"]["argmax_agreement"] > 0.99 and all(r["pass"] for r in report["models"].values())


def test_report_marks_a_drop_as_failing(tiny_ckpt, tmp_path, image_dir, caplog):
    from edgeseg.export.report import accuracy_report, format_table

    result = export_model(tiny_ckpt, tmp_path, precisions=("fp32", "int8"), calib=image_dir, calib_frames=2,
                          progress=False)
    report = accuracy_report(result["onnx"], image_dir, miou_threshold=-1.0)  # any model not the reference fails
    assert report["models"]["fp32"]["pass"] and not report["models"]["int8"]["pass"]
    assert "FAIL: int8" in caplog.text and "FAIL" in format_table(report)


def test_edits_apply_to_every_precision(tiny_ckpt, tmp_path):
    export_model(tiny_ckpt, tmp_path, precisions=("fp32", "fp16"), argmax=True, uint8_input=True)
    for name in ("model.onnx", "model_fp16.onnx"):
        meta = read_meta(tmp_path / name)
        assert (meta.input_format, meta.output_format) == ("uint8_nhwc_bgr", "classmap")


@pytest.mark.parametrize(
    "precisions, options, message",
    [
        (("int8",), {}, "int8 needs --calib"),
        (("fp32",), {"calib": "frames/"}, "apply only to"),
        (("fp64",), {}, "unknown precision"),
        (("fp32",), {"argmax": True, "lowres": True}, "exclude each other"),
        (("int8",), {"calib": "x", "calib_method": "median"}, "--calib-method 'median' is not one of"),
        (("int8",), {"calib": "x", "calib_frames": 0}, "--calib-frames must be >= 1"),
        (("fp32",), {"workspace_mb": 64}, "--workspace-mb applies only with --engine"),
        (("fp32",), {"miou_threshold": 2.0}, "--miou-threshold applies only with --report-data"),
        (("fp32",), {"calib_frame": 3}, "unknown export option"),
        (("int8",), {"calib": "x", "int8_target": "cpu", "engine": True}, "int8-target cpu"),
    ],
)
def test_check_request_rejects(precisions, options, message):
    with pytest.raises(ConfigError, match=message):
        check_request(precisions, **options)


def test_int8_without_calib_fails_before_any_work(tiny_ckpt, tmp_path):
    with pytest.raises(ConfigError, match="int8 needs --calib"):
        export_model(tiny_ckpt, tmp_path / "out", precisions=("int8",))
    assert not (tmp_path / "out").exists()


def test_cli_export(tiny_ckpt, tmp_path, capsys):
    code = main(["export", str(tiny_ckpt), "--out", str(tmp_path), "--dynamic", "1x64x64", "1x64x96", "2x128x128"])
    out = capsys.readouterr().out
    assert code == 0 and "argmax agreement 100.000%" in out and "model.onnx" in out
    assert read_meta(tmp_path / "model.onnx").input_size == (64, 96)


def test_cli_bad_request_exit_code(tiny_ckpt, tmp_path, capsys):
    assert main(["export", str(tiny_ckpt), "--out", str(tmp_path), "--precision", "int8"]) == 2
    assert "int8 needs --calib" in capsys.readouterr().err


def test_fp16_io_and_int8_layer_options(tiny_ckpt, tmp_path, image_dir):
    import numpy as np
    import onnx

    from edgeseg.runtime.segmenter import Segmenter

    result = export_model(tiny_ckpt, tmp_path, precisions=("fp32", "fp16", "int8"), fp16_io=True,
                          calib=image_dir, calib_frames=2, keep_head_float=True, progress=False)
    fp16 = onnx.load(result["onnx"]["fp16"])
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    frame = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
    with Segmenter(result["onnx"]["fp32"]) as ref, Segmenter(result["onnx"]["fp16"]) as half:
        assert half.input_spec.dtype == np.float16
        assert np.mean(ref.segment(frame) == half.segment(frame)) > 0.99
    int8 = onnx.load(result["onnx"]["int8"])
    dequantized = {n.output[0] for n in int8.graph.node if n.op_type == "DequantizeLinear"}
    head = [n for n in int8.graph.node if n.op_type == "ConvTranspose"]
    assert head and all(n.input[1] not in dequantized for n in head)  # the upsampling head stayed float
    with pytest.raises(ConfigError, match="apply only to"):
        check_request(("fp32",), sensitivity=2)


def test_int8_cpu_target_is_onnxruntime_recipe_and_refuses_engines(tiny_ckpt, tmp_path, image_dir):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgeseg.errors import ExportError
    from edgeseg.export.engine import engine_from_onnx
    from edgeseg.runtime.segmenter import Segmenter

    result = export_model(tiny_ckpt, tmp_path, precisions=("fp32", "int8"), calib=image_dir, calib_frames=4,
                          int8_target="cpu", progress=False)
    model = onnx.load(result["onnx"]["int8"])
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    activation_zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert activation_zero_points and all(z.dtype == np.uint8 for z in activation_zero_points)
    frame = (np.random.default_rng(1).random((40, 50, 3)) * 255).astype(np.uint8)
    with Segmenter(result["onnx"]["fp32"]) as ref, Segmenter(result["onnx"]["int8"]) as q:
        assert q.meta.precision == "int8" and np.mean(ref.segment(frame) == q.segment(frame)) > 0.9
    with pytest.raises(ExportError, match="TensorRT needs symmetric signed INT8"):
        engine_from_onnx(result["onnx"]["int8"], tmp_path / "x.engine")
    with pytest.raises(ConfigError, match="int8-target cpu"):
        export_model(tiny_ckpt, tmp_path / "e", precisions=("int8",), calib=image_dir, int8_target="cpu", engine=True)


def test_unreadable_calibration_source_fails_before_anything_is_written(tiny_ckpt, tmp_path):
    from edgeseg.errors import DataError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no readable frames"):
        export_model(tiny_ckpt, tmp_path / "out", precisions=("fp32", "int8"), calib=empty)
    assert not (tmp_path / "out").exists()


# ----- the format table drives the CLI and the steps -------------------------------------------------------------
def _non_default(option):
    """A valid value for `option` that differs from its default, as (python value, CLI words)."""
    if option.is_flag:
        return True, []
    if option.choices:
        value = next(c for c in option.choices if c != option.default)
        return value, [str(value)]
    if option.name == "input_size":
        return (48, 80), ["48", "80"]
    if option.name == "dynamic":
        return ((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 96, 96)), ["1x32x32", "1x64x64", "2x96x96"]
    value = {int: 7, float: 2.5}.get(option.type, "some/path")
    return value, [str(value)]


def _every_option():
    from edgeseg.export.formats import all_options

    return list(all_options().values())


def test_every_table_option_is_a_cli_flag_and_reaches_export_model(monkeypatch, tiny_ckpt, tmp_path):
    """Build a command line from the table alone and check export_model receives each value."""
    import edgeseg.export.pipeline as pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "export_model", lambda ckpt, out, precisions, **options: seen.update(
        options, precisions=precisions) or {"parity": {"max_abs_err": 0, "argmax_agreement": 1}, "onnx": {},
                                            "engines": {}, "report": None})
    argv, expected = ["export", str(tiny_ckpt), "--out", str(tmp_path), "--precision", *FORMATS], {}
    for option in _every_option():
        value, words = _non_default(option)
        argv += [option.flag, *words]
        expected[option.name] = value
    assert main(argv) == 0
    for name, value in expected.items():
        got = seen[name]
        assert (tuple(got) if isinstance(got, list) else got) == value, name
    assert seen["precisions"] == list(FORMATS)


@pytest.mark.parametrize("precision", [p for p, f in FORMATS.items() if f.options])
def test_each_format_option_reaches_its_step(monkeypatch, tiny_ckpt, tmp_path, image_dir, precision):
    import dataclasses

    import edgeseg.export.formats as formats

    fmt = FORMATS[precision]
    received = {}

    def spy(fp32, dst, *, progress, **options):
        received.update(options)
        return fp32

    monkeypatch.setitem(formats.FORMATS, precision, dataclasses.replace(fmt, step=spy))
    given = {}
    for option in fmt.options:
        value, _ = _non_default(option)
        given[option.name] = str(image_dir) if option.name == "calib" else value
    if given.get("int8_target") == "cpu":
        given["int8_target"] = "cpu"  # valid without --engine
    export_model(tiny_ckpt, tmp_path, precisions=(precision,), progress=False, **given)
    assert received == given


@pytest.mark.parametrize("name", [o.name for f in FORMATS.values() for o in f.options])
def test_a_format_option_without_its_format_is_refused(name):
    owner = next(p for p, f in FORMATS.items() if name in f.option_names())
    others = [p for p in FORMATS if p != owner]
    option = next(o for o in _every_option() if o.name == name)
    with pytest.raises(ConfigError, match="apply only to"):
        check_request(others, **{r: "x" for p in others for r in FORMATS[p].requires},
                      **{name: _non_default(option)[0]})


def test_defaults_come_from_the_table(tiny_ckpt):
    from edgeseg.export.formats import all_options

    request = check_request(["fp32", "fp16", "int8"], calib="frames/")
    for name, option in all_options().items():
        if name != "calib":
            assert request.options[name] == option.default, name


def test_cli_calib_frames_zero_is_an_error(tiny_ckpt, tmp_path, image_dir, capsys):
    code = main(["export", str(tiny_ckpt), "--out", str(tmp_path / "o"), "--precision", "int8", "--calib",
                 str(image_dir), "--calib-frames", "0"])
    assert code == 2 and "--calib-frames must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----- files: permissions, inputs never overwritten ---------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_respect_umask(tiny_ckpt, tmp_path, image_dir, umask, mode):
    import importlib.util
    import os

    engine = importlib.util.find_spec("tensorrt_rtx") is not None
    old = os.umask(umask)
    try:
        export_model(tiny_ckpt, tmp_path, precisions=("fp32", "fp16"), engine=engine or None,
                     flavour="tensorrt_rtx" if engine else None, report_data=image_dir, progress=False)
    finally:
        os.umask(old)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert "report.json" in written and "model_fp16.onnx" in written
    if engine:
        assert {"model_fp16.engine", "model_fp16.engine.json"} <= set(written)
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == mode, path.name


def test_output_that_is_an_input_is_refused(tiny_ckpt, tmp_path):
    import shutil

    from edgeseg.errors import OutputPathError

    ckpt = tmp_path / "model.onnx"  # a checkpoint that happens to sit where the FP32 ONNX would go
    shutil.copy(tiny_ckpt, ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(OutputPathError, match="is the checkpoint"):
        export_model(ckpt, tmp_path)
    assert ckpt.read_bytes() == before


# ----- the accuracy report ----------------------------------------------------------------------------------------
def test_report_data_with_other_classes_fails_before_any_onnx(tiny_ckpt, tmp_path, image_dir):
    import shutil

    from edgeseg.errors import DataError

    data = tmp_path / "data3"
    shutil.copytree(image_dir, data)
    (data / "classes.json").write_text(json.dumps({"classes": ["a", "b", "c"]}))
    with pytest.raises(DataError, match="3 classes, the model 4"):
        export_model(tiny_ckpt, tmp_path / "out", precisions=("fp32", "fp16"), report_data=data)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.onnx"))


def _miou_by_hand(masks, labels, num_classes):
    """Independent mIoU: one confusion matrix in numpy, classes absent from both prediction and label skipped."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    for mask, label in zip(masks, labels):
        keep = label != 255
        np.add.at(conf, (label[keep].astype(int), mask[keep].astype(int)), 1)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    return float(np.mean(inter[union > 0] / union[union > 0]))


@pytest.mark.parametrize("lowres", [False, True])
def test_report_scores_what_the_runtime_runs(tiny_ckpt, tmp_path, image_dir, lowres):
    """The report's mIoU equals scoring the runtime's own masks (Segmenter.segment) by hand, for a --lowres graph
    too (whose upsampling and argmax happen in the runtime, not the graph)."""
    import cv2

    from edgeseg.runtime.segmenter import Segmenter

    result = export_model(tiny_ckpt, tmp_path, lowres=lowres or None, report_data=image_dir, progress=False)
    row = result["report"]["models"]["fp32"]
    images = sorted((image_dir / "val" / "images").glob("*.png"))
    labels = [cv2.imread(str(image_dir / "val" / "labels" / p.name), cv2.IMREAD_GRAYSCALE) for p in images]
    with Segmenter(result["onnx"]["fp32"], backend="onnxruntime") as seg:
        masks = [seg.segment(cv2.imread(str(p))) for p in images]
    assert row["miou"] == pytest.approx(_miou_by_hand(masks, labels, 4), abs=1e-9)
    assert row["argmax_agreement"] == 1.0 and row["miou_drop_points"] == 0.0 and row["pass"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert set(saved["models"]["fp32"]) >= {"miou", "pixel_acc", "mean_acc", "argmax_agreement",
                                            "miou_drop_points", "pass"}


def test_report_records_engine_layer_output_types(tiny_ckpt, tmp_path, image_dir):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not importable")
    from edgeseg.sidecar import read_sidecar

    export_model(tiny_ckpt, tmp_path, precisions=("fp32", "int8"), calib=image_dir, calib_frames=4, engine=True,
                 flavour="tensorrt_rtx", report_data=image_dir, miou_threshold=100.0, progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    for precision in ("fp32", "int8"):
        types = report["models"][precision]["layer_output_types"]
        assert types == read_sidecar(tmp_path / FORMATS[precision].engine_name).layer_output_types
    assert report["models"]["int8"]["layer_output_types"].get("FLOAT", 0) == 1  # only the float32 output's Cast
    assert report["models"]["int8"]["layer_output_types"]["INT8"] > 0
