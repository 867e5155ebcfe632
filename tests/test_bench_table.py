"""`edgeseg bench A B ...`: one table across model files, checked against references computed here.

Two tiny hand-built ONNX models (tests/runtime/onnx_graphs.py) that segment differently, scored on a 4-class folder
dataset written by the test: each row's mIoU must equal evaluate_predictor run directly on that model, a corrupt
.onnx and an engine this machine cannot run must get rows with the very error a Segmenter raises and no numbers,
the printed table one line per model, the JSON the keys its readers use, and the chart must decode.
Timing values are only checked to be positive and finite.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgeseg.cli import main  # noqa: E402
from edgeseg.config import make_meta  # noqa: E402
from edgeseg.errors import BackendUnavailableError, EdgeSegError  # noqa: E402
from tests.runtime.onnx_graphs import CLASSES, random_scene, reference_logits, write_pixel_classifier  # noqa: E402

FAST = ["--min-seconds", "0", "--min-iters", "3", "--warmup", "1", "--frames", "2", "--frame-size", "40", "56"]
IMAGE_SIZE = (40, 56)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two models that disagree at region borders (full-resolution logits vs stride-2 pooled logits), a corrupt
    .onnx, and an .engine whose sidecar is valid but whose plan is not (no GPU here: it cannot even be tried)."""
    from edgeseg.files import sha256_file
    from edgeseg.sidecar import EngineSidecar, TensorInfo, write_sidecar

    root = tmp_path_factory.mktemp("models")
    full = write_pixel_classifier(root / "full.onnx", input_size=(24, 32))
    pooled = write_pixel_classifier(root / "pooled.onnx", input_size=(16, 24), stride=2)
    corrupt = root / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 this is not a protobuf ONNX model")
    engine = root / "model_fp16.engine"
    engine.write_bytes(b"not a serialized TensorRT plan")
    meta = make_meta("pixel_classifier", CLASSES, (24, 32)).replace(precision="fp16")
    write_sidecar(engine, EngineSidecar(
        flavour="tensorrt_rtx", trt_version="1.7.1", precision="fp16",
        inputs=(TensorInfo("input", (1, 3, 24, 32), "float32"),),
        outputs=(TensorInfo("logits", (1, 4, 24, 32), "float32"),),
        meta=meta, engine_sha256=sha256_file(engine),
    ))
    return {"full": full, "pooled": pooled, "corrupt": corrupt, "engine": engine}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """A folder dataset (val split, the 4 pixel-classifier classes) labelled by the float64 classifier at full
    resolution, so models that see downscaled frames score below 100 % and differently from each other."""
    root = tmp_path_factory.mktemp("data")
    for part in ("images", "labels"):
        (root / "val" / part).mkdir(parents=True)
    rng = np.random.default_rng(5)
    for index in range(5):
        frame = random_scene(rng, *IMAGE_SIZE)
        label = reference_logits(frame, IMAGE_SIZE).argmax(0).astype(np.uint8)
        label[:2] = 255  # void pixels count nowhere
        cv2.imwrite(str(root / "val" / "images" / f"v{index}.png"), frame)
        cv2.imwrite(str(root / "val" / "labels" / f"v{index}.png"), label)
    (root / "classes.json").write_text(json.dumps({"classes": list(CLASSES), "ignore_index": 255}))
    return root


def _direct_error(path: Path) -> EdgeSegError:
    """The error opening `path` raises when done directly: the reference for a row's status and reason."""
    from edgeseg.runtime.segmenter import Segmenter

    with pytest.raises(EdgeSegError) as caught:
        Segmenter(path)
    return caught.value


def _direct_miou(path: Path, data: Path, limit: int | None = None) -> float:
    from edgeseg.data import open_dataset
    from edgeseg.evaluation import evaluate_predictor
    from edgeseg.runtime.segmenter import Segmenter

    with Segmenter(path) as segmenter:
        return evaluate_predictor(segmenter.predict, open_dataset(data, "val"), CLASSES, limit=limit,
                                  progress=False).miou


def _positive_finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_one_table_across_models_matches_the_references(models, dataset_dir, tmp_path, capsys):
    out = tmp_path / "results" / "bench.json"  # a folder that does not exist yet
    argv = [str(models[k]) for k in ("full", "pooled", "corrupt", "engine")]
    code = main(["bench", *argv, "--data", str(dataset_dir), "--json", str(out), *FAST])
    printed = capsys.readouterr().out
    assert code == 1  # two ran, one file is broken: 'failed' makes the exit status 1, a skip alone would not

    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [row["model"] for row in rows] == argv
    assert "stages" not in result and "fps" not in result  # several models: per-model keys live in the rows
    assert result["device"]["cpu"] and result["data"] == {"path": str(dataset_dir), "split": "val", "limit": None}

    mious = {}
    for name, row in zip(("full", "pooled"), rows[:2]):
        assert row["status"] == "ok" and row["reason"] is None
        assert (row["format"], row["precision"], row["backend"]) == ("onnx", "fp32", "onnxruntime")
        assert row["size_mb"] == models[name].stat().st_size / 1e6
        mious[name] = _direct_miou(models[name], dataset_dir)
        assert row["miou"] == mious[name] and row["eval_images"] == 5
        for percentile in ("latency_ms_p50", "latency_ms_p99"):
            assert set(row[percentile]) == {"frame", "preprocess", "infer", "postprocess"}
            assert all(_positive_finite(v) for v in row[percentile].values())
            assert row[percentile]["frame"] == row["stages"]["frame"][percentile]
        assert row["fps"] == pytest.approx(1e3 / row["latency_ms_p50"]["frame"], rel=1e-12)
    assert 0 < mious["pooled"] < mious["full"] < 1  # the two rows are not interchangeable

    for key, status in (("corrupt", "failed"), ("engine", None)):
        row = rows[argv.index(str(models[key]))]
        error = _direct_error(models[key])
        expected = status or ("skipped" if isinstance(error, BackendUnavailableError) else "failed")
        assert (row["status"], row["reason"]) == (expected, str(error))
        assert row["size_mb"] == models[key].stat().st_size / 1e6
        for number in ("miou", "fps", "latency_ms_p50", "latency_ms_p99", "stages", "backend"):
            assert row[number] is None, number  # never zeros
    assert rows[2]["precision"] is None and rows[3]["precision"] == "fp16"  # the engine's from its sidecar

    lines = printed.splitlines()
    for path in models.values():
        assert sum(line.startswith(path.name + " ") for line in lines) == 1, path.name
    full_line = next(line for line in lines if line.startswith("full.onnx "))
    from edgeseg.metrics import format_score

    assert format_score(mious["full"]) in full_line and "ok" in full_line
    reason_lines = [line for line in lines if line.startswith("[")]
    assert str(_direct_error(models["corrupt"])) in "\n".join(reason_lines)

    chart = cv2.imread(str(out.with_suffix(".png")))
    assert chart is not None and chart.shape[0] > 200 and chart.shape[1] > 400
    assert len(np.unique(chart.reshape(-1, 3), axis=0)) > 10  # bars and text, not a blank canvas


def test_one_model_keeps_the_top_level_keys_it_always_wrote(models, dataset_dir, tmp_path):
    out = tmp_path / "one.json"
    assert main(["bench", str(models["full"]), "--json", str(out), "--data", str(dataset_dir), "--limit", "2",
                 *FAST]) == 0
    result = json.loads(out.read_text())
    for key in ("model", "backend", "precision", "input_size", "frame_size", "stages", "fps", "device"):
        assert key in result, key
    (row,) = result["rows"]
    assert result["fps"] == row["fps"] and result["stages"] == row["stages"]
    assert result["input_size"] == [24, 32] and result["frame_size"] == [40, 56]
    assert result["miou"] == row["miou"] == _direct_miou(models["full"], dataset_dir, limit=2)
    assert row["eval_images"] == 2


def test_no_model_ran_exits_2_with_every_reason_and_still_writes_the_rows(models, tmp_path, capsys):
    out = tmp_path / "none.json"
    code = main(["bench", str(models["corrupt"]), str(models["engine"]), "--json", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("edgeseg bench: error: none of the 2 models ran")
    assert str(_direct_error(models["corrupt"])) in err and str(_direct_error(models["engine"])) in err
    assert [row["status"] for row in json.loads(out.read_text())["rows"]][0] == "failed"
    assert not out.with_suffix(".png").exists()  # nothing to draw

    # one model: its own error, as `bench MODEL` always reported it
    code = main(["bench", str(models["corrupt"]), "--json", str(out), *FAST])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"edgeseg bench: error: {_direct_error(models['corrupt'])}"


def test_the_same_model_twice_and_glob_patterns(models, tmp_path):
    out = tmp_path / "dup.json"
    folder = models["full"].parent
    link = tmp_path / "alias.onnx"
    link.symlink_to(models["full"])
    pattern = str(folder / "*l*.onnx")  # full.onnx and pooled.onnx, expanded by bench (no shell here)
    assert main(["bench", str(models["full"]), str(link), pattern, "--json", str(out), *FAST]) == 0
    assert [row["model"] for row in json.loads(out.read_text())["rows"]] == [str(models["full"]),
                                                                              str(models["pooled"])]


def test_a_pattern_that_matches_no_model_is_a_skipped_row(models, tmp_path, capsys):
    """`OUT/*.onnx OUT/*.engine` where no engine was built: the .onnx files run, the table says what was missing."""
    out = tmp_path / "glob.json"
    (tmp_path / "notes.plan.txt").write_text("matches *.plan* but is no model")
    pattern = str(tmp_path / "*.plan*")
    assert main(["bench", str(models["full"]), pattern, "--json", str(out), *FAST]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["status"] for row in rows] == ["ok", "skipped"]
    assert rows[1]["model"] == pattern and rows[1]["reason"] == f"no model file matches {pattern}"
    assert rows[1]["size_mb"] is None and rows[1]["fps"] is None
    assert f"no model file matches {pattern}" in capsys.readouterr().out
    code = main(["bench", pattern, "--json", str(out), *FAST])
    assert code == 2 and f"error: no model file matches {pattern}" in capsys.readouterr().err


@pytest.mark.parametrize("more_models, options, message", [
    (["{folder}/absent.onnx"], [], "does not exist"),
    (["{folder}"], [], "is a folder"),
    ([], ["--limit", "3"], "--limit counts --data images"),
    ([], ["--data", "{data}", "--limit", "0"], "--limit must be at least 1"),
    (["{engine}"], ["--backend", "onnxruntime"], "--backend onnxruntime runs only .onnx files"),
    ([], ["--frame-size", "0", "48"], "--frame-size must be at least"),
    (["{engine}"], ["--compare", "{model}", "--video", "{model}"], "--compare races one model"),
    ([], ["--data", "{folder}/no-data"], "does not exist"),
])
def test_bad_input_is_refused_before_any_model_is_loaded(models, dataset_dir, tmp_path, capsys, monkeypatch,
                                                         more_models, options, message):
    import edgeseg.runtime.segmenter

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(edgeseg.runtime.segmenter.Segmenter, "__init__", no_loading)
    fill = {"folder": models["full"].parent, "engine": models["engine"], "model": models["full"], "data": dataset_dir}
    more_models, options = ([arg.format(**fill) for arg in args] for args in (more_models, options))
    out = tmp_path / "b.json"
    code = main(["bench", str(models["full"]), *more_models, "--json", str(out), *FAST, *options])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("json_name", ["{model}", "{engine}.json", "chart.png"])
def test_outputs_never_overwrite_inputs(models, tmp_path, capsys, json_name):
    before = {p: p.read_bytes() for p in models.values()}
    target = json_name.format(model=models["full"], engine=models["engine"])
    if target == "chart.png":
        target = str(tmp_path / "chart.png")
    code = main(["bench", str(models["full"]), str(models["engine"]), "--json", target, *FAST])
    assert code == 2 and "edgeseg bench: error: --json" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in models.values()} == before


# ----- --compare: its scratch folder ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pixel_ckpt(tmp_path_factory):
    """A checkpoint of a registered 1x1-conv torch model (the pixel classifier's weights), for the naive loop."""
    torch = pytest.importorskip("torch")
    from edgeseg.models.registry import registered_model
    from edgeseg.training.checkpoint import save_checkpoint
    from tests.runtime.onnx_graphs import pixel_classifier_weights

    name = "test_bench_pixel_fcn"

    def build(*, num_classes, pretrained_backbone=None):
        conv = torch.nn.Conv2d(3, num_classes, 1)
        weight, bias = pixel_classifier_weights()
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight))
            conv.bias.copy_(torch.from_numpy(bias))
        return conv

    with registered_model(name, build):
        yield save_checkpoint(tmp_path_factory.mktemp("ckpt") / "pixel.pt", build(num_classes=4),
                              make_meta(name, CLASSES, (24, 32)))


@pytest.mark.slow
def test_compare_creates_the_json_folder_and_removes_its_scratch_folder(models, pixel_ckpt, tmp_path, monkeypatch):
    from edgeseg.data import write_synthetic_video

    made: list[Path] = []
    mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args, **kwargs):
        made.append(Path(mkdtemp(*args, **kwargs)))
        return str(made[-1])

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    video = write_synthetic_video(tmp_path / "clip.mp4", frames=5, size=(40, 56), seed=2)
    out = tmp_path / "new" / "folder" / "bench.json"
    assert main(["bench", str(models["full"]), "--json", str(out), *FAST, "--compare", str(pixel_ckpt),
                 "--video", str(video)]) == 0
    contenders = json.loads(out.read_text())["end_to_end"]["contenders"]
    assert set(contenders) == {"naive_torch_fp32", "naive_ort", "edgeseg"}
    assert all(c["frames"] == 5 for c in contenders.values())
    assert cv2.imread(str(out.with_name("bench_compare.png"))) is not None
    assert cv2.imread(str(out.with_suffix(".png"))) is not None  # the table chart, not overwritten by the race's
    assert len(made) == 1 and not made[0].exists()

    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    assert main(["bench", str(models["full"]), "--json", str(tmp_path / "f.json"), *FAST, "--compare",
                 str(pixel_ckpt), "--video", str(not_a_video)]) == 2
    assert len(made) == 2 and not made[1].exists()  # removed after the failure too


def test_labels_show_as_much_of_the_path_as_tells_models_apart():
    from edgeseg.bench_table import display_labels

    paths = [Path("runs/a/export/model.onnx"), Path("runs/b/export/model.onnx"), Path("runs/a/export/m.engine")]
    assert display_labels(paths) == ["a/export/model.onnx", "b/export/model.onnx", "m.engine"]
