"""`edgeseg export --deepstream DIR`: the nvinfer config parsed back with configparser and checked key by key against
the model's metadata; nvinfer's preprocessing, redone in numpy from the parsed config, fed to model_deepstream.onnx
gives the FP32 model's classes; the sample pipeline scripts build nvstreammux -> nvinfer -> nvsegvisual ->
nvmultistreamtiler -> sink."""

import configparser
import os
import runpy
import shutil
import stat
import subprocess

import cv2
import numpy as np
import onnx
import pytest

from edgeseg.cli import main
from edgeseg.errors import ConfigError, ExportError, OutputPathError
from edgeseg.export.deepstream import (CONFIG_NAME, DEEPSTREAM_ONNX, LABELS_NAME, PIPELINE_PY, PIPELINE_SH,
                                       PROBABILITIES, nvinfer_properties, write_deepstream)
from edgeseg.export.formats import check_request
from edgeseg.export.onnx_io import read_meta
from edgeseg.export.pipeline import export_model

# Every key the config may hold, each a documented Gst-nvinfer [property] key (gstnvinfer_property_parser).
NVINFER_KEYS = {
    "gpu-id", "gie-unique-id", "process-mode", "network-type", "onnx-file", "model-engine-file", "labelfile-path",
    "batch-size", "network-mode", "infer-dims", "model-color-format", "net-scale-factor", "offsets", "scaling-filter",
    "maintain-aspect-ratio", "num-detected-classes", "output-blob-names", "segmentation-threshold",
    "segmentation-output-order", "interval",
}


def _parse(path):
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    assert parser.read(path) == [str(path)]
    assert parser.sections() == ["property"]
    return parser["property"]


MEAN, STD = (0.40, 0.50, 0.30), (0.20, 0.25, 0.50)  # far apart: a wrong fold, order or offset shows


@pytest.fixture(scope="module")
def distinct_std_ckpt(tiny_ckpt, tiny_model, tiny_meta, tmp_path_factory):
    """TinyFCN saved with a normalisation whose stds differ a lot (tiny_ckpt registers the model's name)."""
    from edgeseg.training.checkpoint import load_model, save_checkpoint

    _, meta = load_model(tiny_ckpt)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "std.pt", tiny_model, meta.replace(mean=MEAN, std=STD))


@pytest.fixture(scope="module")
def exported(distinct_std_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    result = export_model(distinct_std_ckpt, out, deepstream=out / "deepstream", max_batch=3, progress=False)
    return out, result


def test_config_keys_match_the_model_metadata(exported):
    out, result = exported
    ds_dir = out / "deepstream"
    assert result["deepstream"]["config"] == str(ds_dir / CONFIG_NAME)
    props = _parse(ds_dir / CONFIG_NAME)
    assert set(props) == NVINFER_KEYS
    original = read_meta(out / "model.onnx")  # the model as trained: per-channel mean and std
    assert original.mean == MEAN and original.std == STD
    ds_meta = read_meta(out / DEEPSTREAM_ONNX)
    s = float(np.mean(original.std))  # the one std left after folding
    assert float(props["net-scale-factor"]) == pytest.approx(1.0 / (255.0 * s), rel=1e-12)
    assert [float(v) for v in props["offsets"].split(";")] == pytest.approx([255.0 * m for m in original.mean])
    assert ds_meta.std == pytest.approx((s, s, s)) and ds_meta.mean == original.mean
    assert props["model-color-format"] == "0"  # RGB: the graph takes RGB planes
    assert props["network-type"] == "2" and props["network-mode"] == "0"  # segmentation, FP32
    assert int(props["num-detected-classes"]) == original.num_classes == 4
    assert int(props["batch-size"]) == 3 == ds_meta.dynamic_shapes[2][0]
    assert props["infer-dims"] == "3;64;64" and ds_meta.input_size == (64, 64)
    assert float(props["segmentation-threshold"]) == 0.0 and props["segmentation-output-order"] == "0"
    graph = onnx.load(str(out / DEEPSTREAM_ONNX)).graph
    assert props["output-blob-names"] == PROBABILITIES == graph.output[0].name
    assert graph.node[-1].op_type == "Softmax"
    # Paths are relative to the config file, as nvinfer resolves them.
    assert (ds_dir / props["onnx-file"]).resolve() == (out / DEEPSTREAM_ONNX).resolve()
    assert (ds_dir / props["model-engine-file"]).resolve() == (out / f"{DEEPSTREAM_ONNX}_b3_gpu0_fp32.engine").resolve()
    labels = (ds_dir / props["labelfile-path"]).read_text().splitlines()
    assert labels == list(original.classes)


def test_nvinfer_preprocessing_from_the_config_gives_the_fp32_classes(exported, frames, run_onnx):
    """What nvinfer does with the config (scale to the network size, RGB planes, y = net-scale-factor * (x -
    offsets)), in float64 numpy, into the DeepStream graph, against softmax of the FP32 graph on the same pixels
    normalised by the ModelMeta's per-channel mean and std."""
    out, _ = exported
    meta = read_meta(out / "model.onnx")
    props = _parse(out / "deepstream" / CONFIG_NAME)
    channels, height, width = (int(v) for v in props["infer-dims"].split(";"))
    offsets = np.array([float(v) for v in props["offsets"].split(";")]).reshape(1, 3, 1, 1)
    batch = frames[:3]
    rgb = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR)[..., ::-1] for f in batch])
    pixels = rgb.transpose(0, 3, 1, 2).astype(np.float64)
    y = (float(props["net-scale-factor"]) * (pixels - offsets)).astype(np.float32)
    got = run_onnx(out / DEEPSTREAM_ONNX, y)
    x = (pixels / 255.0 - np.reshape(meta.mean, (1, 3, 1, 1))) / np.reshape(meta.std, (1, 3, 1, 1))
    logits = run_onnx(out / "model.onnx", x.astype(np.float32)).astype(np.float64)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert got.shape == expected.shape == (3, 4, 64, 64)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.999
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_deepstream_graph_runs_in_the_runtime_too(exported, frames):
    """Its ModelMeta (std folded to one value) is all the Segmenter needs: same masks as model.onnx."""
    from edgeseg.runtime import Segmenter

    out, _ = exported
    with Segmenter(out / DEEPSTREAM_ONNX, backend="onnxruntime") as ds, Segmenter(out / "model.onnx") as ref:
        for a, b in zip(ds.predict(frames[:3]), ref.predict(frames[:3])):
            assert (a == b).mean() >= 0.999


def test_fp16_export_sets_network_mode_fp16(tiny_ckpt, tmp_path):
    export_model(tiny_ckpt, tmp_path, precisions=("fp32", "fp16"), deepstream=tmp_path / "ds", progress=False)
    props = _parse(tmp_path / "ds" / CONFIG_NAME)
    assert props["network-mode"] == "2" and props["model-engine-file"].endswith("_gpu0_fp16.engine")
    model = onnx.load(str(tmp_path / DEEPSTREAM_ONNX))
    assert read_meta(tmp_path / DEEPSTREAM_ONNX).precision == "fp16"
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # nvinfer feeds float32


def test_a_built_engine_is_what_the_config_loads(exported, tmp_path):
    out, _ = exported
    engine = out / "model_deepstream.engine"
    write_deepstream(out / DEEPSTREAM_ONNX, tmp_path / "ds", engine=engine)
    props = _parse(tmp_path / "ds" / CONFIG_NAME)
    assert (tmp_path / "ds" / props["model-engine-file"]).resolve() == engine.resolve()


def test_unfolded_graph_is_refused_for_nvinfer(exported):
    out, _ = exported
    with pytest.raises(ExportError, match="one net-scale-factor"):
        nvinfer_properties(read_meta(out / "model.onnx"), onnx_file="m.onnx", engine_file="m.engine")


def test_shell_pipeline_runs_the_launch_line(exported, tmp_path):
    """deepstream_pipeline.sh with a stand-in gst-launch-1.0 that prints its arguments."""
    if shutil.which("sh") is None:
        pytest.skip("no POSIX sh on this machine")
    out, _ = exported
    fake = tmp_path / "bin" / "gst-launch-1.0"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "SINK": "fakesink"}
    script = out / "deepstream" / PIPELINE_SH
    uris = ["file:///a.mp4", "rtsp://cam/1", "file:///b.mp4"]
    run = subprocess.run(["sh", str(script), *uris], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    words = run.stdout.split()
    chain = [w for w in words if w.startswith(("nvstreammux", "nvinfer", "nvsegvisual", "nvmultistreamtiler",
                                               "nvvideoconvert", "fakesink"))]
    assert chain == ["nvstreammux", "nvinfer", "nvsegvisual", "nvmultistreamtiler", "nvvideoconvert", "fakesink"]
    assert f"config-file-path={CONFIG_NAME}" in words and "batch-size=3" in words
    assert {"rows=2", "columns=2", "width=64", "height=64"} <= set(words)
    assert [w for w in words if w.startswith("mux.sink_")] == ["mux.sink_0", "mux.sink_1", "mux.sink_2"]
    assert [w for w in words if w.startswith("uri=")] == [f"uri={u}" for u in uris]
    too_many = subprocess.run(["sh", str(script), *uris, "file:///c.mp4"], env=env, capture_output=True, text=True)
    assert too_many.returncode == 2 and "1 to 3 sources" in too_many.stderr


def test_python_pipeline_builds_the_same_chain(exported):
    out, _ = exported
    script = runpy.run_path(str(out / "deepstream" / PIPELINE_PY))  # not __main__: builds nothing, imports no gi
    description = script["description"](["file:///a.mp4", "file:///b.mp4"], "fakesink")
    elements = [part.split()[0] for part in description.split(" ! ")]
    assert elements[:6] == ["nvstreammux", "nvinfer", "nvsegvisual", "nvmultistreamtiler", "nvvideoconvert", "fakesink"]
    config = description.split("config-file-path=")[1].split()[0]
    assert os.path.samefile(config, out / "deepstream" / CONFIG_NAME)
    assert "mux.sink_1" in description and "rows=1 columns=2" in description
    with pytest.raises(SystemExit) as exit_info:  # more sources than the engine's batch: refused before gi
        script["main"]([f"file:///{i}.mp4" for i in range(4)])
    assert exit_info.value.code == 2


def test_deepstream_refusals(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--deepstream and --lowres"):
        check_request(["fp32"], deepstream=str(tmp_path), lowres=True)
    taken = tmp_path / "a_file"
    taken.write_text("x")
    code = main(["export", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "out"), "--deepstream", str(taken)])
    assert code == 2 and "--deepstream" in capsys.readouterr().err and not (tmp_path / "out").exists()
    with pytest.raises(OutputPathError, match="existing file"):
        write_deepstream(tmp_path / "m.onnx", taken)
