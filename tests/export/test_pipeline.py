import json

import pytest

from edgeseg.cli import main
from edgeseg.errors import ConfigError
from edgeseg.export.formats import FORMATS, check_request, export_formats
from edgeseg.export.onnx_io import read_meta
from edgeseg.export.pipeline import export_model


def test_default_export_is_fp32_onnx(tiny_ckpt, tmp_path):
    result = export_model(tiny_ckpt, tmp_path)
    assert result["onnx"] == {"fp32": str(tmp_path / "model.onnx")}
    assert result["parity"]["argmax_agreement"] >= 0.999 and result["engines"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


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
        (("int8",), {"calib": "x", "calib_method": "median"}, "calibration method"),
    ],
)
def test_check_request_rejects(precisions, options, message):
    with pytest.raises(ConfigError, match=message):
        check_request(precisions, **options)


def test_int8_without_calib_fails_before_any_work(tiny_ckpt, tmp_path):
    with pytest.raises(ConfigError, match="int8 needs --calib"):
        export_model(tiny_ckpt, tmp_path / "out", precisions=("int8",))
    assert not (tmp_path / "out").exists()


def test_format_table_rows():
    assert [row["precision"] for row in export_formats()] == ["fp32", "fp16", "int8"]


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
