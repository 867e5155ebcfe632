"""Real TensorRT-RTX engine builds (ahead of time, no GPU needed) from every precision and graph variant."""


import onnx
import pytest

from edgeseg.errors import ConfigError, ExportError
from edgeseg.export.engine import engine_from_onnx
from edgeseg.export.fp16 import fp16_from_onnx
from edgeseg.export.graph_edits import add_argmax, add_uint8_input
from edgeseg.export.int8 import qdq_from_onnx
from edgeseg.export.onnx_io import save_onnx, set_meta
from edgeseg.files import sha256_file
from edgeseg.sidecar import TensorInfo

trt_rtx = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx (pip install tensorrt-rtx-cu13) is not importable")
pytestmark = pytest.mark.tensorrt

# TensorRT-RTX's documented default ahead-of-time targets (Ampere, Ada, Blackwell RTX), which the README promises
# ("TensorRT-RTX builds ahead of time for 8.0/8.6/8.9/12.0"): written here by hand, not read from the exporter.
DOCUMENTED_RTX_TARGETS = ("8.0", "8.6", "8.9", "12.0")


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
    from edgeseg.sidecar import read_sidecar

    src = variants[name]
    engine = engine_from_onnx(src, src.with_suffix(".engine"), workspace_mb=256, flavour="tensorrt_rtx")
    side = read_sidecar(engine)  # checks the engine's sha256 itself
    assert engine.stat().st_size > 1000
    assert side.flavour == "tensorrt_rtx" and side.trt_version == trt_rtx.__version__
    assert side.engine_sha256 == sha256_file(engine) and side.onnx_sha256 == sha256_file(src)
    assert side.precision == {"fp16": "fp16", "int8": "int8", "dynamic_fp16": "fp16"}.get(name, "fp32")
    assert side.meta.classes == ("class0", "class1", "class2", "class3")
    # built ahead of time without a GPU: no GPU recorded, the AOT targets instead
    assert side.gpu_name is None and side.compute_capability is None
    assert side.compute_capabilities == DOCUMENTED_RTX_TARGETS and side.hardware_compatibility == "none"
    assert side.cuda_graph_ready and side.runtime_cache == engine.name + ".cache"
    assert sum(side.layer_output_types.values()) > 0
    if name == "uint8_argmax":
        assert side.inputs[0] == TensorInfo("frame", (-1, -1, -1, 3), "uint8")
        assert side.outputs[0].name == "classmap" and side.outputs[0].dtype == "uint8"
        assert side.profile[1] == (1, 3, 96, 128)
    else:
        assert side.inputs[0].name == "input" and side.inputs[0].dtype == "float32"


def test_rtx_builder_config_sets_user_allocation_and_targets(variants):
    """The real tensorrt_rtx builder config: REQUIRE_USER_ALLOCATION (CUDA-graph capture) and the AOT targets."""
    from edgeseg.export.engine import _CapturingLogger, builder_config, parse_onnx
    from edgeseg.export.onnx_export import check_dynamic
    from edgeseg.export.onnx_io import read_meta

    src = variants["fp16"]
    logger = _CapturingLogger(trt_rtx)
    builder, network, _ = parse_onnx(trt_rtx, "tensorrt_rtx", src, logger)
    meta = read_meta(src)  # the export's default dynamic batch: its profile is needed to build
    config = builder_config(trt_rtx, "tensorrt_rtx", builder, network, meta, check_dynamic(meta.dynamic_shapes), None,
                            src.name)
    assert config.get_flag(trt_rtx.BuilderFlag.REQUIRE_USER_ALLOCATION)
    targets = [config.get_compute_capability(i) for i in range(config.num_compute_capabilities)]
    assert [t.name for t in targets] == ["SM80", "SM86", "SM89", "SM120"]
    fresh = builder.create_builder_config()  # what we would get without it: the flag is ours, not a default
    assert not fresh.get_flag(trt_rtx.BuilderFlag.REQUIRE_USER_ALLOCATION)


def test_engine_sidecar_counts_layer_output_types(variants):
    from collections import Counter

    from edgeseg.export.engine import inspect_onnx_layers
    from edgeseg.sidecar import read_sidecar

    src = variants["fp16"]
    engine = engine_from_onnx(src, src.with_name("count.engine"), flavour="tensorrt_rtx")
    rows = inspect_onnx_layers(src, "tensorrt_rtx")
    expected = Counter(r.dtype for r in rows if r.kind != "CONSTANT")
    assert read_sidecar(engine).layer_output_types == dict(expected)
    assert expected["HALF"] > expected.get("FLOAT", 0)  # an FP16 graph computes in half


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
