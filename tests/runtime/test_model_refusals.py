"""Issue 18's model and runtime cases that were silently wrong or ended in a traceback, through the command line:
class maps with ids beyond the classes, graphs EdgeSeg cannot run, metadata errors that name no field or file, sizes
whose buffers cannot fit, bench frames held all at once, and API misuse with a misleading message."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.cli import main
from edgeseg.config import META_KEY
from edgeseg.errors import ConfigError, DataError

from .onnx_graphs import write_pixel_classifier

FACTS = ["--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fails(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert f"edgeseg {argv[0]}: error: " in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _graph(path: Path, in_shape, out_shape, channels_in=3, classes=4) -> Path:
    """A 1x1 conv from `in_shape` to `out_shape` (float, no EdgeSeg metadata); out_shape None: no output at all."""
    weight = numpy_helper.from_array(np.ones((classes, channels_in, 1, 1), np.float32), "W")
    outputs = [] if out_shape is None else [helper.make_tensor_value_info("o", TensorProto.FLOAT, out_shape)]
    nodes = [helper.make_node("Conv", ["input", "W"], ["o"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
                              outputs, [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# ----- class maps and palettes -----------------------------------------------------------------------------------
def test_class_map_ids_beyond_classes_are_refused(tmp_path, capsys):
    """The pixel classifier's in-graph argmax gives ids 0..3; with --classes 2 every id 2 and 3 is out of range."""
    model = write_pixel_classifier(tmp_path / "classmap.onnx", argmax=True)
    _fails(capsys, ["run", str(model), "--source", "synthetic:3", "--classes", "2", "--masks", str(tmp_path / "m")],
           "class map holds class id 3, but it has 2 classes (0..1)")
    assert not list((tmp_path / "m").glob("*.png"))
    # the model's own class count runs, and its masks stay within it
    assert main(["run", str(model), "--source", "synthetic:3", "--masks", str(tmp_path / "ok")]) == 0
    assert max(int(np.max(__import__("cv2").imread(str(p), -1))) for p in (tmp_path / "ok").glob("*.png")) <= 3


def test_colorize_and_overlay_refuse_ids_beyond_the_palette_but_not_void(tmp_path):
    from edgeseg.runtime.segmenter import Segmenter

    with Segmenter(write_pixel_classifier(tmp_path / "m.onnx")) as segmenter:
        frame = np.full((4, 5, 3), 100, np.uint8)
        mask = np.zeros((4, 5), np.uint8)
        mask[0, 0] = 255  # void: left unpainted, as documented
        assert segmenter.colorize(mask)[0, 0].tolist() == [0, 0, 0]
        assert segmenter.overlay(frame, mask)[0, 0].tolist() == [100, 100, 100]
        mask[1, 1] = 7  # 4 classes: id 7 has no colour
        for paint in (lambda: segmenter.colorize(mask), lambda: segmenter.overlay(frame, mask),
                      lambda: segmenter.render(frame, mask, ["color"])):
            with pytest.raises(DataError, match=r"class ids \[7\] beyond the palette's 4 colours"):
                paint()


# ----- graphs EdgeSeg cannot run, said plainly --------------------------------------------------------------------
def test_a_graph_with_no_output_is_a_clear_error(tmp_path, capsys):
    model = _graph(tmp_path / "noout.onnx", [1, 3, 24, 32], None)
    _fails(capsys, ["run", str(model), "--source", "synthetic:1", *FACTS, "--masks", str(tmp_path / "m")], "noout.onnx has 1 inputs and 0 outputs")


def test_a_one_channel_input_is_called_unsupported_not_a_layout_question(tmp_path, capsys):
    model = _graph(tmp_path / "grey.onnx", [1, 1, 24, 32], [1, 4, 24, 32], channels_in=1)
    err = _fails(capsys, ["run", str(model), "--source", "synthetic:1", *FACTS, "--masks", str(tmp_path / "m")],
                 "grey.onnx's input (1, 1, 24, 32) has no axis of 3 colour channels", "not supported")
    assert "--layout" not in err


def test_more_than_256_classes_is_called_unsupported(tmp_path, capsys):
    model = _graph(tmp_path / "many.onnx", [1, 3, 24, 32], [1, 300, 24, 32], classes=300)
    err = _fails(capsys, ["run", str(model), "--source", "synthetic:1", *FACTS, "--masks", str(tmp_path / "m")],
                 "many.onnx outputs 300 classes", "at most 256 classes")
    assert "out_dtype" not in err


def test_malformed_metadata_names_the_field_and_the_file(tmp_path, capsys):
    model = write_pixel_classifier(tmp_path / "m.onnx")
    proto = onnx.load(str(model))
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == META_KEY))
    meta["input_size"] = ["b", "c"]
    helper.set_model_props(proto, {META_KEY: json.dumps(meta)})
    onnx.save(proto, str(model))
    err = _fails(capsys, ["run", str(model), "--source", "synthetic:1", "--masks", str(tmp_path / "m")], str(model), "field 'input_size'")
    assert err.count("\n") == 1


# ----- sizes whose buffers cannot fit -------------------------------------------------------------------------------
def test_an_input_size_that_cannot_fit_is_refused_in_gb(tmp_path, capsys):
    model = _graph(tmp_path / "dyn.onnx", [1, 3, "H", "W"], [1, 4, "h", "w"])
    _fails(capsys, ["run", str(model), "--source", "synthetic:1", "--classes", "4", *FACTS, "--input-size",
                    "100000", "100000", "--masks", str(tmp_path / "m")], "--input-size 100000 100000", "GB of memory")
    out = tmp_path / "annotated.onnx"
    _fails(capsys, ["annotate", str(model), "--out", str(out), "--classes", "4", *FACTS, "--input-size", "100000",
                    "100000"], "GB of memory")
    assert not out.exists()


def test_a_static_model_input_that_cannot_fit_is_refused_in_gb(tmp_path, capsys):
    model = _graph(tmp_path / "huge.onnx", [1, 3, 100000, 100000], [1, 4, 100000, 100000])
    _fails(capsys, ["run", str(model), "--source", "synthetic:1", "--classes", "4", *FACTS,
                    "--masks", str(tmp_path / "m")], "huge.onnx's input size 100000x100000", "GB of memory")


def test_a_bench_frame_size_that_cannot_fit_is_refused_before_the_model_loads(tmp_path, capsys):
    out = tmp_path / "b.json"
    _fails(capsys, ["bench", str(tmp_path / "absent.onnx"), "--json", str(out), "--frame-size", "100000", "100000"],
           "--frame-size 100000 100000", "GB of memory")
    assert not out.exists()


def test_bench_frames_are_streamed_and_equal_the_rendered_ones():
    """FrameStream gives exactly the frames synthetic_frames renders, in order and cycling, holding only as many
    as fit in its budget (here 3), so `bench --frames 20000` no longer needs 20000 frames in memory."""
    from edgeseg.bench import FrameStream
    from edgeseg.data import synthetic_frames

    reference = list(synthetic_frames(7, (32, 40)))
    stream = FrameStream(lambda: synthetic_frames(7, (32, 40)), 7, keep_bytes=3 * reference[0].nbytes)
    for index in [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 5, 6, 13]:
        assert np.array_equal(stream[index], reference[index % 7]), index
    assert len(stream._kept) == 3
    short = FrameStream(lambda: synthetic_frames(4, (32, 40)), 10)  # a source shorter than asked cycles what it has
    assert np.array_equal(short[5], reference[1]) and len(short) == 4


# ----- API misuse and empty sources -------------------------------------------------------------------------------
def test_predict_given_one_frame_instead_of_a_list(tmp_path):
    from edgeseg.runtime.segmenter import Segmenter

    with Segmenter(write_pixel_classifier(tmp_path / "m.onnx")) as segmenter:
        frame = np.zeros((320, 240, 3), np.uint8)
        with pytest.raises(DataError, match=r"predict takes a list of frames, got one \(320, 240, 3\) array"):
            segmenter.predict(frame)
        assert segmenter.predict([frame])[0].shape == (24, 32)


def test_a_synthetic_source_of_zero_frames_is_refused(tmp_path, capsys):
    model = write_pixel_classifier(tmp_path / "m.onnx")
    _fails(capsys, ["run", str(model), "--source", "synthetic:0", "--out", str(tmp_path / "o.mp4")],
           "'synthetic:0'", "must be >= 1")
    assert not (tmp_path / "o.mp4").exists()


def test_mean_nan_is_refused_before_annotate_writes(tmp_path, capsys):
    model = _graph(tmp_path / "foreign.onnx", [1, 3, 24, 32], [1, 4, 24, 32])
    before = _sha(model)
    with pytest.raises(SystemExit):
        main(["annotate", str(model), "--out", str(tmp_path / "a.onnx"), "--classes", "4", "--mean", "nan", "0",
              "0", "--std", "1", "1", "1"])
    assert "--mean: 'nan' is not a finite number" in capsys.readouterr().err
    assert not (tmp_path / "a.onnx").exists() and _sha(model) == before
    from edgeseg.model_facts import ModelFacts  # the Python API refuses it too

    with pytest.raises(ConfigError, match="--mean must be 3 finite numbers"):
        ModelFacts(mean=(float("nan"), 0.0, 0.0), std=(1.0, 1.0, 1.0))


def test_stats_to_a_closed_stdout_ends_quietly(tmp_path):
    model = write_pixel_classifier(tmp_path / "m.onnx")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "edgeseg", "run", str(model), "--source", "synthetic:3",
                                 "--stats", "/dev/stdout"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                                timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert result.returncode == 141
