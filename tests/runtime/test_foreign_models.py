"""Models from other tools: ONNX files without EdgeSeg's metadata and engines without a sidecar.

They are refused with the flags to pass, run when the flags say what the graph does not (masks checked against a
float64 numpy reference of the same preprocessing and argmax), and run without flags after `edgeseg annotate`.
Metadata whose class count differs from the graph's output channels is refused. Engines run on the recorded fakes of
TensorRT and CUDA (tests/runtime/gpu_fakes.py), since a real engine needs a GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import types
import warnings

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.cli import main
from edgeseg.config import META_KEY, make_meta
from edgeseg.errors import ConfigError, ModelFileError, OutputPathError
from edgeseg.model_facts import ModelFacts
from edgeseg.runtime.segmenter import Segmenter

from .onnx_graphs import CLASSES, pixel_classifier_weights, random_scene, write_pixel_classifier

# Not ImageNet's: a foreign model normalised its own way (mmseg-style 127.5 / 63.75 in 0-255 units).
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
FLAGS = ["--mean", *map(str, MEAN), "--std", *map(str, STD)]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reference_logits(frame_bgr, size_hw, mean=MEAN, std=STD) -> np.ndarray:
    """float64: cv2 bilinear resize, BGR -> RGB, /255, (x - mean) / std, the 1x1 conv of the pixel classifier."""
    resized = cv2.resize(frame_bgr, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)
    x = ((resized[:, :, ::-1] / 255.0 - np.array(mean)) / np.array(std)).transpose(2, 0, 1)
    weight, bias = pixel_classifier_weights()
    return np.einsum("kc,chw->khw", weight[:, :, 0, 0].astype(np.float64), x) + bias[:, None, None]


def _assert_masks_match(mask, logits) -> None:
    """Equal to the reference argmax on every pixel whose top-2 margin is not a near-tie (the resize is exact fixed
    point, within 1 LSB of cv2's); those are nearly all pixels of the blocky scenes."""
    top2 = np.sort(logits, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-2
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(mask[clear], logits.argmax(0)[clear])


def _frames(n=3, seed=0, size=(45, 70)):
    rng = np.random.default_rng(seed)
    return [random_scene(rng, *size) for _ in range(n)]


def _save(graph, path, opset=17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _classifier_graph(path, in_shape, *, argmax=False, channels_out=4):
    """Conv1x1 [-> ArgMax(int64)], no metadata. `in_shape` may hold names (dynamic axes)."""
    weight, bias = pixel_classifier_weights()
    weight, bias = np.resize(weight, (channels_out, 3, 1, 1)), np.resize(bias, channels_out)  # repeats past 4
    nodes = [helper.make_node("Conv", ["pixels", "W", "B"], ["scores"])]
    output = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", channels_out, "h", "w"])
    if argmax:
        nodes.append(helper.make_node("ArgMax", ["scores"], ["labels"], axis=1, keepdims=0))
        output = helper.make_tensor_value_info("labels", TensorProto.INT64, ["n", "h", "w"])
    graph = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, in_shape)],
                              [output], [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")])
    return _save(graph, path)


@pytest.fixture
def torch_onnx(tmp_path):
    """A model exported the way torchvision users do: torch.onnx.export, dynamic batch/height/width, no metadata."""
    torch = pytest.importorskip("torch")
    weight, bias = pixel_classifier_weights()
    conv = torch.nn.Conv2d(3, 4, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.copy_(torch.from_numpy(bias))
    path = tmp_path / "foreign.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter, as users call it
        torch.onnx.export(conv.eval(), torch.zeros(1, 3, 32, 48), str(path), input_names=["image"],
                          output_names=["out"], dynamic_axes={"image": axes, "out": axes}, opset_version=17,
                          dynamo=False)
    assert not any(p.key == META_KEY for p in onnx.load(str(path)).metadata_props)
    return path


# ----- refused without the facts, naming the flags -------------------------------------------------------------


def test_foreign_onnx_without_flags_is_refused_naming_the_flags(torch_onnx):
    with pytest.raises(ModelFileError, match=r"foreign.onnx has no EdgeSeg metadata.*input size is dynamic") as info:
        Segmenter(torch_onnx)
    for flag in ("--input-size H W", "--mean R G B --std R G B", "edgeseg annotate"):
        assert flag in str(info.value)
    assert "--classes" not in str(info.value)  # the output's 4 channels say how many classes there are


def test_cli_refuses_a_foreign_model_with_exit_2_and_no_traceback(torch_onnx, tmp_path, capsys):
    code = main(["run", str(torch_onnx), "--source", "synthetic:2", "--masks", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("edgeseg run: error: foreign.onnx has no EdgeSeg metadata")
    assert "--input-size H W" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_missing_normalisation_alone_names_mean_and_std(tmp_path):
    path = _classifier_graph(tmp_path / "static.onnx", [1, 3, 24, 32])
    with pytest.raises(ModelFileError, match=r"normalisation is unknown.*: pass --mean R G B --std R G B \("):
        Segmenter(path, model_facts=ModelFacts(input_size=(24, 32)))


def test_fully_dynamic_input_asks_for_layout_and_size(tmp_path):
    path = _classifier_graph(tmp_path / "dyn.onnx", ["n", "c", "h", "w"])
    with pytest.raises(ModelFileError, match="pass --layout nchw\\|nhwc --input-size H W --mean"):
        Segmenter(path)
    facts = ModelFacts(layout="nchw", input_size=(24, 32), mean=MEAN, std=STD)
    with Segmenter(path, model_facts=facts) as seg:
        assert seg.meta.input_format == "float_nchw_rgb" and seg.meta.input_size == (24, 32)


# ----- accepted with the facts: masks against the numpy reference ----------------------------------------------


def test_foreign_torch_export_with_flags_matches_numpy_reference(torch_onnx, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(CLASSES) + "\n")
    from edgeseg.model_facts import parse_classes

    classes = parse_classes(str(names))[0]
    facts = ModelFacts(classes=classes, input_size=(36, 52), mean=MEAN, std=STD)
    with Segmenter(torch_onnx, model_facts=facts) as seg:
        assert seg.meta.classes == CLASSES and seg.meta.num_classes == 4
        assert seg.meta.mean == MEAN and seg.meta.std == STD and seg.meta.output_stride == 1
        frames = _frames()
        masks = seg.predict(frames)
    for frame, mask in zip(frames, masks):
        assert mask.shape == (36, 52)
        _assert_masks_match(mask, _reference_logits(frame, (36, 52)))


def test_class_count_comes_from_the_output_channels(tmp_path):
    path = _classifier_graph(tmp_path / "static.onnx", [1, 3, 24, 32])
    with Segmenter(path, model_facts=ModelFacts(mean=MEAN, std=STD)) as seg:
        assert seg.meta.classes == ("class_0", "class_1", "class_2", "class_3")
        assert seg.meta.input_size == (24, 32)  # the graph's static size: no flag needed
        np.testing.assert_array_equal(seg.palette_bgr[1], [0, 0, 128])  # VOC colour 1 is RGB (128, 0, 0)


def test_classmap_output_graph(tmp_path):
    path = _classifier_graph(tmp_path / "argmax.onnx", ["n", 3, 24, 32], argmax=True)
    with pytest.raises(ModelFileError, match=r"does not say how many classes.*pass --classes FILE\|N"):
        Segmenter(path, model_facts=ModelFacts(mean=MEAN, std=STD))
    with pytest.raises(ConfigError, match="--output logits, but argmax.onnx's output is a classmap"):
        Segmenter(path, model_facts=ModelFacts(num_classes=4, mean=MEAN, std=STD, output="logits"))
    with Segmenter(path, model_facts=ModelFacts(num_classes=4, mean=MEAN, std=STD, output="classmap")) as seg:
        assert seg.meta.output_format == "classmap"
        frames = _frames(2, seed=3)
        masks = seg.predict(frames)
    for frame, mask in zip(frames, masks):
        _assert_masks_match(mask, _reference_logits(frame, (24, 32)))


def test_uint8_nhwc_graph_needs_no_normalisation_flags(tmp_path):
    """A graph taking BGR uint8 NHWC and normalising itself (as `edgeseg export --uint8-input` makes them)."""
    weight, bias = pixel_classifier_weights()
    mean_bgr = np.array(MEAN[::-1], np.float32).reshape(1, 3, 1, 1)
    std_bgr = np.array(STD[::-1], np.float32).reshape(1, 3, 1, 1)
    weight_bgr = np.ascontiguousarray(weight[:, ::-1])  # the conv reads B, G, R
    nodes = [
        helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Div", ["nchw", "k255"], ["unit"]),
        helper.make_node("Sub", ["unit", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["x"]),
        helper.make_node("Conv", ["x", "W", "B"], ["scores"]),
    ]
    inits = [numpy_helper.from_array(np.array(255.0, np.float32), "k255"), numpy_helper.from_array(mean_bgr, "mean"),
             numpy_helper.from_array(std_bgr, "std"), numpy_helper.from_array(weight_bgr, "W"),
             numpy_helper.from_array(bias, "B")]
    graph = helper.make_graph(nodes, "u8", [helper.make_tensor_value_info("frames", TensorProto.UINT8,
                                                                          ["n", 24, 32, 3])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 4, 24, 32])], inits)
    path = _save(graph, tmp_path / "u8.onnx")
    with Segmenter(path) as seg:  # everything it needs is in the graph
        assert seg.meta.input_format == "uint8_nhwc_bgr" and seg.meta.input_size == (24, 32)
        frames = _frames(2, seed=5)
        masks = seg.predict(frames)
    for frame, mask in zip(frames, masks):
        _assert_masks_match(mask, _reference_logits(frame, (24, 32)))


def test_unsupported_layout_and_bad_units_are_config_errors(tmp_path):
    path = _classifier_graph(tmp_path / "nhwc.onnx", ["n", 24, 32, 3])  # float NHWC (Conv would not run it anyway)
    with pytest.raises(ConfigError, match="takes float NHWC input; EdgeSeg runs float inputs as NCHW RGB"):
        Segmenter(path, model_facts=ModelFacts(mean=MEAN, std=STD))
    static = _classifier_graph(tmp_path / "static.onnx", [1, 3, 24, 32])
    with pytest.raises(ConfigError, match="--layout nhwc, but static.onnx's input \\(1, 3, 24, 32\\) is NCHW"):
        Segmenter(static, model_facts=ModelFacts(layout="nhwc", mean=MEAN, std=STD))
    with pytest.raises(ConfigError, match="--input-size 48 64, but static.onnx has a fixed input size 24 32"):
        Segmenter(static, model_facts=ModelFacts(input_size=(48, 64), mean=MEAN, std=STD))
    with pytest.raises(ConfigError, match="--mean 123.675 116.28 103.53 is not in 0-1 pixel units"):
        ModelFacts(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))


# ----- class count against the output channels (metadata and flags) ---------------------------------------------


def test_metadata_class_count_must_match_output_channels(tmp_path):
    path = write_pixel_classifier(tmp_path / "model.onnx")  # 4 output channels
    model = onnx.load(str(path))
    meta = make_meta("pixel_classifier", CLASSES + ("extra",), (24, 32))
    helper.set_model_props(model, {META_KEY: meta.to_json()})
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match="metadata lists 5 classes but its output has 4 channels.*--classes 4"):
        Segmenter(path)
    with Segmenter(path, model_facts=ModelFacts(num_classes=4)) as seg:  # the flag repairs it
        assert seg.meta.num_classes == 4


def test_class_flag_must_match_output_channels(torch_onnx):
    with pytest.raises(ConfigError, match="--classes gives 3 classes, but foreign.onnx's output has 4 channels"):
        Segmenter(torch_onnx, model_facts=ModelFacts(num_classes=3, input_size=(24, 32), mean=MEAN, std=STD))


def test_flags_override_metadata_with_a_warning(tmp_path, caplog):
    path = write_pixel_classifier(tmp_path / "model.onnx")
    palette = tmp_path / "palette.txt"
    palette.write_text("1 2 3\n4 5 6\n7 8 9\n10 11 12\n")
    from edgeseg.model_facts import parse_palette

    with caplog.at_level(logging.WARNING, logger="edgeseg.model_facts"):
        facts = ModelFacts(classes=("a", "b", "c", "d"), palette=parse_palette(str(palette)), mean=MEAN, std=STD)
        with Segmenter(path, model_facts=facts) as seg:
            assert seg.meta.classes == ("a", "b", "c", "d") and seg.meta.mean == MEAN
            assert seg.meta.palette[3] == (10, 11, 12) and seg.meta.model_name == "pixel_classifier"
    text = caplog.text
    assert "--classes" in text and "--mean 0.5 0.5 0.5 overrides 0.485 0.456 0.406" in text and "--palette" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgeseg.model_facts"), Segmenter(path, model_facts=ModelFacts(
            num_classes=4)) as seg:
        assert seg.meta.classes == CLASSES  # a count that agrees keeps the names
    assert caplog.text == ""


# ----- a folder as the model -------------------------------------------------------------------------------------


def test_a_folder_as_the_model_says_so_and_names_what_to_pass(tmp_path, capsys):
    write_pixel_classifier(tmp_path / "model.onnx")
    with pytest.raises(ModelFileError, match=f"model {tmp_path} is a folder, not a model file: pass one of the "
                                             f"models in it: {tmp_path / 'model.onnx'}"):
        Segmenter(tmp_path)
    empty = tmp_path / "empty.onnx"
    empty.mkdir()
    assert main(["run", str(empty), "--source", "synthetic:1", "--stats", str(tmp_path / "s.json")]) == 2
    assert "empty.onnx is a folder, not a model file: it holds no .onnx" in capsys.readouterr().err


# ----- edgeseg annotate for ONNX ---------------------------------------------------------------------------------


def test_annotate_then_run_without_flags_gives_identical_masks(torch_onnx, tmp_path, capsys):
    names = tmp_path / "classes.json"
    names.write_text(json.dumps({"classes": list(CLASSES), "palette_rgb": [[9, 9, 9], [1, 1, 1], [2, 2, 2],
                                                                           [3, 3, 3]]}))
    before = _sha(torch_onnx)
    out = tmp_path / "annotated.onnx"
    argv = ["annotate", str(torch_onnx), "--classes", str(names), "--input-size", "36", "52", *FLAGS]
    assert main([*argv, "--out", str(out)]) == 0
    assert f"wrote {out}: 4 classes, input 36x52" in capsys.readouterr().out
    assert _sha(torch_onnx) == before  # the input is untouched

    frames = _frames(4, seed=7)
    facts = ModelFacts(classes=CLASSES, palette=((9, 9, 9), (1, 1, 1), (2, 2, 2), (3, 3, 3)), input_size=(36, 52),
                       mean=MEAN, std=STD)
    with Segmenter(torch_onnx, model_facts=facts) as with_flags, Segmenter(out) as annotated:
        assert annotated.meta == with_flags.meta and annotated.meta.palette[0] == (9, 9, 9)
        for a, b in zip(with_flags.predict(frames), annotated.predict(frames)):
            np.testing.assert_array_equal(a, b)

    # never over the input unless asked; never over another file without --force
    assert main([*argv, "--out", str(torch_onnx)]) == 2
    assert f"--out {torch_onnx} is the model {torch_onnx}" in capsys.readouterr().err
    assert main([*argv, "--out", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--force"]) == 0
    assert main(["annotate", str(torch_onnx)]) == 2  # nowhere to write
    assert "--out NEW.onnx, or --in-place" in capsys.readouterr().err
    assert _sha(torch_onnx) == before

    link = tmp_path / "link.onnx"
    link.symlink_to(torch_onnx)
    assert main(["annotate", str(link), *argv[2:], "--in-place"]) == 0
    assert link.is_symlink()  # the real file was replaced, the link kept
    with Segmenter(torch_onnx) as in_place:
        assert in_place.meta.classes == CLASSES


def test_annotate_refuses_what_would_not_run(torch_onnx, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    assert main(["annotate", str(torch_onnx), "--out", str(out), "--input-size", "24", "32"]) == 2
    assert "pass --mean R G B --std R G B" in capsys.readouterr().err and not out.exists()
    assert main(["annotate", str(torch_onnx), "--out", str(out), "--classes", "5", "--input-size", "24", "32",
                 *FLAGS]) == 2
    assert "--classes gives 5 classes, but foreign.onnx's output has 4 channels" in capsys.readouterr().err
    assert main(["annotate", str(torch_onnx), "--out", str(out), "--mean", "0.5", "0.5", "0.5"]) == 2
    assert "--mean and --std go together" in capsys.readouterr().err
    assert not out.exists()


# ----- engines without a sidecar (fakes of TensorRT and CUDA) -----------------------------------------------------


@pytest.fixture
def foreign_engine(monkeypatch, tmp_path):
    """A trtexec-style engine (no sidecar) on the fakes; returns (engine path, backend options)."""
    from edgeseg.runtime.gpu import CudaPythonApi

    from .gpu_fakes import EngineSpec, FakeCudart, FakeEngine, FakeTrt, HostKernels

    spec = EngineSpec(input_name="images", output_name="seg", input_size=(24, 32), max_batch=4)
    rt = FakeCudart()
    for name in ("tensorrt", "tensorrt_rtx", "tensorrt_dispatch", "tensorrt_lean"):
        monkeypatch.setitem(sys.modules, name, None)
    trt = FakeTrt("tensorrt", "10.3.0", rt, spec)
    # What a real engine says about its tensors (the recorded fake has no need of it elsewhere).
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(FakeEngine, "get_tensor_mode", lambda self, name: "INPUT" if name == "images" else "OUTPUT",
                        raising=False)
    monkeypatch.setattr(FakeEngine, "get_tensor_dtype", lambda self, name: types.SimpleNamespace(name="FLOAT"),
                        raising=False)
    monkeypatch.setattr(FakeEngine, "get_tensor_shape", lambda self, name: (-1, *(
        spec.input_shape(1) if name == "images" else spec.output_shape(1))[1:]), raising=False)
    monkeypatch.setattr(FakeEngine, "get_tensor_profile_shape", lambda self, name, index: (
        spec.input_shape(1), spec.input_shape(2), spec.input_shape(4)), raising=False)
    engine = tmp_path / "trtexec.engine"
    engine.write_bytes(b"fake-engine from trtexec")
    return engine, dict(cuda_api=CudaPythonApi(rt), kernels=HostKernels(rt))


def _imagenet_reference(frame):
    return _reference_logits(frame, (24, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_engine_without_sidecar_runs_with_flags(foreign_engine):
    from edgeseg.runtime.backends.tensorrt import TensorRTBackend

    engine, options = foreign_engine
    with pytest.raises(ModelFileError, match="has no sidecar trtexec.engine.json.*--classes FILE\\|N.*annotate"):
        TensorRTBackend(engine, **options)
    with pytest.raises(ModelFileError, match="no sidecar trtexec.engine.json and its input normalisation is unknown"):
        TensorRTBackend(engine, model_facts=ModelFacts(num_classes=4), **options)
    facts = ModelFacts(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    with Segmenter(engine, backend="tensorrt", model_facts=facts, **options) as seg:
        assert seg.meta.num_classes == 4 and seg.meta.input_size == (24, 32)  # from the engine's tensors
        assert seg.backend.sidecar.profile[-1] == (4, 3, 24, 32)
        frames = _frames(3, seed=11)
        masks = seg.predict(frames)
    for frame, mask in zip(frames, masks):
        _assert_masks_match(mask, _imagenet_reference(frame))


def test_annotate_engine_writes_a_sidecar_the_runner_reads_back(foreign_engine, capsys):
    from edgeseg.annotate import annotate_engine
    from edgeseg.runtime.backends.tensorrt import TensorRTBackend
    from edgeseg.sidecar import read_sidecar, sidecar_path

    engine, options = foreign_engine
    facts = ModelFacts(classes=CLASSES, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    written, _ = annotate_engine(engine, facts, **options)
    assert written == sidecar_path(engine)
    data = json.loads(written.read_text())
    assert data["format"] == "edgeseg-engine" and data["flavour"] == "tensorrt" and data["trt_version"] == "10.3.0"
    assert data["inputs"] == [{"name": "images", "shape": [-1, 3, 24, 32], "dtype": "float32"}]
    assert data["outputs"] == [{"name": "seg", "shape": [-1, 4, 24, 32], "dtype": "float32"}]
    assert data["engine_sha256"] == _sha(engine) and data["compute_capability"] == "8.9"
    assert data["meta"]["classes"] == list(CLASSES) and data["meta"]["input_size"] == [24, 32]
    side = read_sidecar(engine)  # what the runner's loader reads
    assert side.meta.classes == CLASSES and side.profile == ((1, 3, 24, 32), (2, 3, 24, 32), (4, 3, 24, 32))

    frames = _frames(2, seed=13)
    with TensorRTBackend(engine, **options) as backend:  # no flags now
        assert backend.meta == side.meta
        annotated = Segmenter(backend).predict(frames)
    with TensorRTBackend(engine, model_facts=facts, **options) as backend:
        flagged = Segmenter(backend).predict(frames)
    for a, b in zip(annotated, flagged):
        np.testing.assert_array_equal(a, b)

    # an existing sidecar is replaced only with --force, and the CLI refuses before touching the GPU
    with pytest.raises(OutputPathError, match="trtexec.engine.json already exists; pass --force"):
        annotate_engine(engine, facts, **options)
    assert main(["annotate", str(engine), "--classes", "4"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["annotate", str(engine), "--out", "x.onnx"]) == 2
    assert "--out and --in-place are for .onnx files" in capsys.readouterr().err
    relabelled = ModelFacts(classes=("w", "x", "y", "z"))
    annotate_engine(engine, relabelled, force=True, **options)
    assert read_sidecar(engine).meta.classes == ("w", "x", "y", "z")


def test_engine_sidecar_class_count_mismatch_is_refused(foreign_engine):
    from edgeseg.annotate import annotate_engine
    from edgeseg.runtime.backends.tensorrt import TensorRTBackend
    from edgeseg.sidecar import sidecar_path

    engine, options = foreign_engine
    annotate_engine(engine, ModelFacts(mean=MEAN, std=STD), **options)
    side = json.loads(sidecar_path(engine).read_text())
    side["meta"]["classes"] = ["a", "b", "c"]
    side["meta"]["palette"] = side["meta"]["palette"][:3]
    sidecar_path(engine).write_text(json.dumps(side))
    with pytest.raises(ModelFileError, match="metadata lists 3 classes but its output has 4 channels"):
        TensorRTBackend(engine, **options)


# ----- the same flags on eval and bench ----------------------------------------------------------------------------


def test_eval_and_bench_take_the_model_facts(tmp_path, capsys):
    path = _classifier_graph(tmp_path / "f.onnx", ["n", 3, "h", "w"], channels_out=8)  # the synthetic classes
    facts = ["--input-size", "32", "48", *FLAGS]
    evaluated = ["eval", str(path), "--data", "synthetic", "--limit", "2", "--json", str(tmp_path / "e.json")]
    assert main(evaluated) == 2
    assert "pass --input-size H W --mean R G B --std R G B" in capsys.readouterr().err
    assert main([*evaluated, *facts]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["num_images"] == 2
    timed = ["bench", str(path), "--json", str(tmp_path / "b.json"), "--frames", "2", "--warmup", "1",
             "--min-seconds", "0.01", "--min-iters", "2"]
    assert main([*timed, *facts]) == 0
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["status"] == "ok"


def test_run_command_with_flags_writes_the_segmenters_masks(torch_onnx, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    frames = _frames(2, seed=17)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(images / f"f{index}.png"), frame)
    argv = ["run", str(torch_onnx), "--source", str(images), "--masks", str(tmp_path / "masks"),
            "--input-size", "36", "52", "--classes", "4", *FLAGS]
    assert main(argv) == 0
    facts = ModelFacts(num_classes=4, input_size=(36, 52), mean=MEAN, std=STD)
    with Segmenter(torch_onnx, model_facts=facts) as seg:
        for index, frame in enumerate(frames):
            written = cv2.imread(str(tmp_path / "masks" / f"f{index}.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(written, seg.segment(frame))
