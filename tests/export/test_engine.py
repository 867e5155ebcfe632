"""Real TensorRT-RTX engine builds (ahead of time, no GPU needed) from every precision and graph variant."""

import json

import onnx
import pytest

from edgeseg.errors import ConfigError, ExportError
from edgeseg.export.engine import engine_from_onnx
from edgeseg.export.fp16 import fp16_from_onnx
from edgeseg.export.graph_edits import add_argmax, add_uint8_input
from edgeseg.export.int8 import qdq_from_onnx
from edgeseg.export.onnx_io import save_onnx, set_meta, sha256_file

trt_rtx = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx (pip install tensorrt-rtx-cu13) is not importable")
pytestmark = pytest.mark.tensorrt


@pytest.fixture(scope="module")
def variants(tmp_path_factory, tiny_model, tiny_meta, frames):
    from edgeseg.export.onnx_export import onnx_from_torch

    d = tmp_path_factory.mktemp("engines")
    fp32 = onnx_from_torch(tiny_model, tiny_meta, d / "model.onnx")
    dyn = onnx_from_torch(tiny_model, tiny_meta, d / "dyn.onnx", dynamic=[(1, 3, 64, 64), (1, 3, 96, 128), (2, 3, 128, 160)])
    return {
        "fp32": fp32,
        "fp16": fp16_from_onnx(fp32, d / "model_fp16.onnx"),
        "int8": qdq_from_onnx(fp32, d / "model_int8.onnx", frames, progress=False),
        "dynamic_fp16": fp16_from_onnx(dyn, d / "dyn_fp16.onnx"),
        "uint8_argmax": save_onnx(add_argmax(add_uint8_input(dyn)), d / "dyn_edit.onnx"),
    }


@pytest.mark.parametrize("name", ["fp32", "fp16", "int8", "dynamic_fp16", "uint8_argmax"])
def test_build_engine_with_sidecar(variants, name):
    src = variants[name]
    engine = engine_from_onnx(src, src.with_suffix(".engine"), workspace_mb=256, flavour="tensorrt_rtx")
    side = json.loads(engine.with_name(engine.name + ".json").read_text())
    assert engine.stat().st_size > 1000
    assert side["flavour"] == "tensorrt_rtx" and side["trt_version"] == trt_rtx.__version__
    assert side["engine_sha256"] == sha256_file(engine) and side["onnx_sha256"] == sha256_file(src)
    assert side["precision"] == {"fp16": "fp16", "int8": "int8", "dynamic_fp16": "fp16"}.get(name, "fp32")
    assert side["meta"]["classes"] == ["class0", "class1", "class2", "class3"]
    if name == "uint8_argmax":
        assert side["inputs"][0] == {"name": "frame", "shape": [-1, -1, -1, 3], "dtype": "uint8"}
        assert side["outputs"][0]["name"] == "classmap" and side["outputs"][0]["dtype"] == "uint8"
        assert side["profile"]["opt"] == [1, 3, 96, 128]
    else:
        assert side["inputs"][0]["name"] == "input" and side["inputs"][0]["dtype"] == "float32"


def test_unsupported_op_names_it(tmp_path, variants):
    model = onnx.load(str(variants["fp32"]))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type, relu.domain = "FancyActivation", "com.example"
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    path = save_onnx(model, tmp_path / "custom.onnx")
    with pytest.raises(ExportError, match="FancyActivation"):
        engine_from_onnx(path, tmp_path / "custom.engine", flavour="tensorrt_rtx")
    assert not (tmp_path / "custom.engine").exists()


def test_dynamic_graph_without_profile(tmp_path, variants):
    model = onnx.load(str(variants["dynamic_fp16"]))
    meta_prop = next(p for p in model.metadata_props if p.key == "edgeseg")
    from edgeseg.config import ModelMeta

    meta = ModelMeta.from_json(meta_prop.value)
    set_meta(model, meta.replace(dynamic_shapes=None))  # forget the recorded profile
    path = save_onnx(model, tmp_path / "noprofile.onnx")
    with pytest.raises(ConfigError, match="give a profile"):
        engine_from_onnx(path, tmp_path / "x.engine", flavour="tensorrt_rtx")


def test_truncated_onnx(tmp_path, variants):
    src = variants["fp32"]
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(src.read_bytes()[:200])
    from edgeseg.errors import ModelFileError

    with pytest.raises(ModelFileError, match="cut.onnx"):
        engine_from_onnx(bad, tmp_path / "cut.engine", flavour="tensorrt_rtx")
