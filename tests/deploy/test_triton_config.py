"""The Triton repository `edgeseg export --triton` writes, read back with Triton's own schema (ModelConfig protobuf
from tritonclient, parsed by google.protobuf.text_format): no field is checked by matching strings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.config import make_meta
from edgeseg.errors import ConfigError, OutputPathError

from .tiny_model import CLASSES, MAX_BATCH, SIZE

config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient not installed "
                                 "(pip install 'edgeseg[triton]')")
text_format = pytest.importorskip("google.protobuf.text_format")


def parse(text: str):
    return text_format.Parse(text, config_pb2.ModelConfig())


def dtype_name(value: int) -> str:
    return config_pb2.DataType.Name(value)


@pytest.fixture(scope="module")
def configs(triton_export):
    return {folder.name: parse((folder / "config.pbtxt").read_text()) for folder in triton_export["repo"].iterdir()}


def test_repository_layout(triton_export):
    from edgeseg.export.triton import python_model_source

    repo, out = triton_export["repo"], triton_export["out"]
    assert sorted(p.name for p in repo.iterdir()) == ["tiny_onnx", "tiny_python"]  # no engine: no tiny_trt
    assert triton_export["result"]["triton"] == {"onnxruntime": str(repo / "tiny_onnx"),
                                                  "python": str(repo / "tiny_python")}
    exported = (out / "model.onnx").read_bytes()
    assert (repo / "tiny_onnx" / "1" / "model.onnx").read_bytes() == exported
    assert (repo / "tiny_python" / "1" / "model.onnx").read_bytes() == exported
    assert (repo / "tiny_python" / "1" / "model.py").read_bytes() == python_model_source()
    for name in ("tiny_onnx", "tiny_python"):
        assert (repo / name / "labels.txt").read_text().splitlines() == list(CLASSES)


def _readme_queue_delay_us() -> int:
    """The queue delay the README promises ("... preferred sizes, 2 ms queue delay ..."), in microseconds."""
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    (milliseconds,) = re.findall(r"(\d+(?:\.\d+)?) ms queue delay", readme)
    return round(float(milliseconds) * 1000)


@pytest.mark.parametrize("name, kind", [("tiny_onnx", "KIND_GPU"), ("tiny_python", "KIND_CPU")])
def test_config_contract_batching_and_instances(configs, name, kind):
    config = configs[name]
    assert config.name == name
    assert config.max_batch_size == MAX_BATCH  # the top of the graph's dynamic batch profile (exported with it)
    (frames,), (classmap,) = config.input, config.output
    assert (frames.name, dtype_name(frames.data_type), list(frames.dims)) == ("frames", "TYPE_UINT8", [*SIZE, 3])
    assert config_pb2.ModelInput.Format.Name(frames.format) == "FORMAT_NHWC"
    assert (classmap.name, dtype_name(classmap.data_type), list(classmap.dims)) == ("classmap", "TYPE_UINT8",
                                                                                      list(SIZE))
    assert classmap.label_filename == "labels.txt"
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]  # powers of two up to MAX_BATCH = 4
    assert config.dynamic_batching.max_queue_delay_microseconds == _readme_queue_delay_us()
    (group,) = config.instance_group
    assert config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == kind and group.count >= 1


@pytest.mark.parametrize("max_batch, preferred", [(2, [2]), (3, [2, 3]), (8, [2, 4, 8]), (12, [2, 4, 8, 12]),
                                                   (100, [2, 4, 8, 16, 32, 64, 100])])
def test_preferred_batch_sizes_are_powers_of_two_and_the_max(max_batch, preferred):
    from edgeseg.export.triton import Scheduling, model_config

    meta = make_meta("m", CLASSES, SIZE, input_format="uint8_nhwc_bgr", output_format="classmap")
    config = parse(model_config("m_onnx", "onnxruntime", meta, Scheduling(max_batch)))
    assert list(config.dynamic_batching.preferred_batch_size) == preferred


def test_scheduling_choices_reach_every_config():
    """Values no default has, so a knob that is dropped or sent to the wrong model shows."""
    from edgeseg.export.triton import Scheduling, model_config

    meta = make_meta("m", CLASSES, SIZE, input_format="uint8_nhwc_bgr", output_format="classmap")
    scheduling = Scheduling(6, queue_delay_us=1234, gpu_instances=3, cpu_instances=5)
    for backend, kind, count in [("onnxruntime", "KIND_GPU", 3), ("tensorrt", "KIND_GPU", 3), ("python", "KIND_CPU", 5)]:
        config = parse(model_config(f"m_{backend}", backend, meta, scheduling))
        assert config.max_batch_size == 6 and config.dynamic_batching.max_queue_delay_microseconds == 1234
        (group,) = config.instance_group
        assert (config_pb2.ModelInstanceGroup.Kind.Name(group.kind), group.count) == (kind, count)


def test_backends_and_accelerator(configs):
    assert configs["tiny_python"].backend == "python"
    onnx = configs["tiny_onnx"]
    assert onnx.backend == "onnxruntime"
    (accelerator,) = onnx.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP32"  # the graph's own precision, not a silent FP16
    # Triton's onnxruntime backend parses it as an integer byte count
    assert accelerator.parameters["max_workspace_size_bytes"].isdigit()
    assert int(accelerator.parameters["max_workspace_size_bytes"]) > 0


def test_metadata_travels_in_the_config(configs, triton_export):
    from edgeseg.config import ModelMeta
    from edgeseg.export.onnx_io import get_meta, load_onnx

    exported = get_meta(load_onnx(triton_export["out"] / "model.onnx"))
    for config in configs.values():
        assert ModelMeta.from_json(config.parameters["edgeseg"].string_value) == exported


def test_tensorrt_config_and_awkward_class_names():
    """The TensorRT-backend config (engines need a GPU to build, so it is made directly) and class names that need
    escaping: quotes, a backslash and non-ASCII text survive the round trip through Triton's parser."""
    from edgeseg.config import ModelMeta
    from edgeseg.export.triton import Scheduling, model_config

    classes = ('say "hi"', "back\\slash", "Straße", "日本")
    meta = make_meta("m", classes, (32, 40), input_format="uint8_nhwc_bgr", output_format="classmap",
                     dynamic_shapes=((1, 3, 32, 40), (1, 3, 32, 40), (8, 3, 32, 40)), precision="fp16")
    config = parse(model_config("m_trt", "tensorrt", meta, Scheduling(8, queue_delay_us=500, gpu_instances=3)))
    assert (config.platform, config.backend, config.max_batch_size) == ("tensorrt_plan", "", 8)
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].count == 3
    assert ModelMeta.from_json(config.parameters["edgeseg"].string_value).classes == classes
    onnx = parse(model_config("m_onnx", "onnxruntime", meta, Scheduling(8)))
    assert onnx.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters["precision_mode"] == "FP16"


@pytest.mark.parametrize("options, match", [
    ({"argmax": True}, "--triton needs --uint8-input and --argmax"),
    ({"uint8_input": True}, "--triton needs --uint8-input and --argmax"),
    ({"uint8_input": True, "argmax": True, "max_batch": 1}, "dynamic batch axis"),
    ({"uint8_input": True, "argmax": True, "triton_name": "no spaces"}, "--triton-name must be"),
])
def test_bad_requests_are_refused_before_export(tmp_path, options, match):
    from edgeseg.export.formats import check_request

    with pytest.raises(ConfigError, match=match):
        check_request(["fp32"], triton=str(tmp_path / "repo"), **options)
    assert not (tmp_path / "repo").exists()


def test_triton_name_needs_triton():
    from edgeseg.export.formats import check_request

    with pytest.raises(ConfigError, match="--triton-name applies only with --triton"):
        check_request(["fp32"], triton_name="x")


def test_repository_path_that_is_a_file(tmp_path):
    from edgeseg.export.formats import check_request

    taken = tmp_path / "repo"
    taken.write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file"):
        check_request(["fp32"], triton=str(taken), uint8_input=True, argmax=True)


def test_writer_refuses_a_graph_without_the_contract(tmp_path, triton_export):
    """A float-input graph cannot serve the uint8 contract: write_triton_repository says which flags make one."""
    from edgeseg.export.onnx_io import get_meta, load_onnx, save_onnx, set_meta
    from edgeseg.export.triton import write_triton_repository

    model = load_onnx(triton_export["out"] / "model.onnx")
    set_meta(model, get_meta(model).replace(input_format="float_nchw_rgb"))
    save_onnx(model, tmp_path / "float.onnx")
    with pytest.raises(ConfigError, match="--uint8-input --argmax"):
        write_triton_repository(tmp_path / "repo", tmp_path / "float.onnx")
    with pytest.raises(OutputPathError, match="is a file"):
        write_triton_repository(tmp_path / "float.onnx", triton_export["out"] / "model.onnx")


def test_cli_reports_a_missing_contract_flag(tmp_path, capsys, tiny_ckpt):
    code = main(["export", str(tiny_ckpt), "--out", str(tmp_path / "out"), "--triton", str(tmp_path / "repo")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("edgeseg export: error: --triton needs --uint8-input and --argmax")
    assert "Traceback" not in err and not (tmp_path / "out").exists()
