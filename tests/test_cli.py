"""The command line end to end on a tiny dataset: train -> export -> run -> eval (model and --pred) -> bench."""

import json

import cv2
import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.data import write_synthetic_folder, write_synthetic_video
from edgeseg.errors import ConfigError


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = write_synthetic_folder(root / "data", n=8, size=(64, 80), seed=3, val_count=4)
    code = main([
        "train", "--data", str(data), "--model", "fcn8s_mobilenetv3", "--epochs", "1", "--batch-size", "4",
        "--image-size", "64", "80", "--out", str(root / "train"), "--workers", "0",
    ])
    assert code == 0
    assert main(["export", str(root / "train" / "best.pt"), "--out", str(root / "export")]) == 0
    return root, data


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    names = capsys.readouterr().out.split()
    assert len(names) == 14
    assert {"fcn8s_resnet18", "fcn32s_vgg16", "fcn8s_vgg16_paper", "unet_resnet18"} <= set(names)


@pytest.mark.slow
def test_train_writes_the_contract_files(workspace):
    root, _ = workspace
    for name in ("best.pt", "last.pt", "metrics.json"):
        assert (root / "train" / name).is_file()
    metrics = json.loads((root / "train" / "metrics.json").read_text())
    assert {"pixel_acc", "mean_acc", "miou", "fwiou", "per_class_iou"} <= set(metrics["best"])


@pytest.mark.slow
def test_run_gives_one_output_frame_and_mask_per_input_frame(workspace, capsys):
    root, _ = workspace
    video = write_synthetic_video(root / "in.mp4", frames=23, size=(90, 120), seed=1)
    out = root / "out.mp4"
    code = main(["run", str(root / "export" / "model.onnx"), "--source", str(video), "--out", str(out),
                 "--masks", str(root / "masks"), "--alpha", "0.4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "23" in printed and str(out) in printed
    capture = cv2.VideoCapture(str(out))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 23
    masks = sorted((root / "masks").glob("*.png"))
    assert len(masks) == 23
    mask = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (90, 120) and mask.max() < 8


@pytest.mark.slow
def test_eval_model_and_pred_dir_agree(workspace, tmp_path):
    root, data = workspace
    onnx_json, pred_json, pt_json = tmp_path / "onnx.json", tmp_path / "pred.json", tmp_path / "pt.json"
    assert main(["eval", str(root / "export" / "model.onnx"), "--data", str(data), "--json", str(onnx_json)]) == 0
    assert main(["eval", str(root / "train" / "best.pt"), "--data", str(data), "--json", str(pt_json)]) == 0
    # masks written by `edgeseg run` over the val images, scored as ready-made predictions
    assert main(["run", str(root / "export" / "model.onnx"), "--source", str(data / "val" / "images"),
                 "--masks", str(tmp_path / "pred")]) == 0
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--data", str(data), "--json", str(pred_json)]) == 0
    onnx_scores, pred_scores, pt_scores = (json.loads(p.read_text()) for p in (onnx_json, pred_json, pt_json))
    assert onnx_scores["num_images"] == pred_scores["num_images"] == 4
    for key in ("pixel_acc", "mean_acc", "miou", "fwiou"):
        assert pred_scores[key] == pytest.approx(onnx_scores[key], abs=1e-9)  # same runtime, same resize
        # torch and ORT share the ProcessingPlan: only float32 rounding in the graph differs (rare argmax ties)
        assert pt_scores[key] == pytest.approx(onnx_scores[key], abs=2e-3)
    assert set(onnx_scores["per_class_iou"]) == set(json.loads((data / "classes.json").read_text())["classes"])


@pytest.mark.slow
def test_bench_json_holds_the_percentiles_of_the_timed_samples(workspace, tmp_path, monkeypatch):
    import edgeseg.bench

    recorded: list[dict] = []
    time_loop = edgeseg.bench.time_loop

    def recording_time_loop(step, **options):
        samples = time_loop(step, **options)
        recorded.append(samples)
        return samples

    monkeypatch.setattr(edgeseg.bench, "time_loop", recording_time_loop)
    root, _ = workspace
    out = tmp_path / "bench.json"
    assert main(["bench", str(root / "export" / "model.onnx"), "--json", str(out), "--min-seconds", "0.2",
                 "--min-iters", "5", "--warmup", "1", "--frames", "3"]) == 0
    result = json.loads(out.read_text())
    (samples,) = recorded
    assert set(result["stages"]) == set(samples) == {"preprocess", "infer", "postprocess", "frame"}
    for stage, values in samples.items():
        summary = result["stages"][stage]
        assert summary["count"] == len(values) >= 5
        p50, p90, p99 = np.percentile(np.asarray(values, np.float64), [50, 90, 99])
        assert (summary["latency_ms_p50"], summary["latency_ms_p90"], summary["latency_ms_p99"]) == (p50, p90, p99)
        assert summary["latency_ms_mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert summary["latency_ms_max"] == max(values)
    # each frame's time contains its three stages (all in ms: a unit slip in one stage would break this)
    stage_sum = np.sum([samples[s] for s in ("preprocess", "infer", "postprocess")], axis=0)
    assert (np.asarray(samples["frame"]) >= stage_sum).all()
    assert result["fps"] == pytest.approx(1e3 / np.percentile(samples["frame"], 50), rel=1e-12)
    assert result["frame_size"] == [360, 480] and result["device"]["cpu"]


def test_clear_errors_exit_2(tmp_path, capsys):
    assert main(["eval", "--data", "synthetic"]) == 2
    assert "either a MODEL file or --pred" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.onnx"), "--source", "synthetic:3", "--out", str(tmp_path / "o.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", str(bad), "--out", str(tmp_path / "e")]) == 2
    assert "not an EdgeSeg checkpoint (corrupt" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_compare_with_naive_pipelines(workspace, tmp_path):
    root, _ = workspace
    video = write_synthetic_video(tmp_path / "clip.mp4", frames=12, size=(90, 120), seed=2)
    out = tmp_path / "bench.json"
    assert main(["bench", str(root / "export" / "model.onnx"), "--json", str(out), "--min-seconds", "0.1",
                 "--min-iters", "3", "--warmup", "1", "--frames", "2",
                 "--compare", str(root / "train" / "best.pt"), "--video", str(video)]) == 0
    contenders = json.loads(out.read_text())["end_to_end"]["contenders"]
    assert set(contenders) == {"naive_torch_fp32", "naive_ort", "edgeseg"}
    assert all(c["frames"] == 12 for c in contenders.values())
    assert contenders["naive_torch_fp32"]["ratio_to_naive_torch"] == pytest.approx(1.0)
    assert out.with_suffix(".png").stat().st_size > 1000


@pytest.mark.slow
def test_demo_runs_the_whole_path(tmp_path, capsys):
    """The README's first command, shrunk: train -> eval -> export -> run -> bench on the synthetic default."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--max-minutes", "0.05", "--image-size", "64", "80",
                 "--video-frames", "6", "--workers", "0", "--batch-size", "4"]) == 0
    for name in ("overlay.mp4", "metrics.json", "latency.json", "summary.json", "export/model.onnx",
                 "train/best.pt"):
        assert (out / name).is_file(), name
    assert len(list((out / "masks").glob("*.png"))) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stream"]["total"]["processed"] == summary["stream"]["total"]["read"] == 6
    # the reported mIoU is best.pt's on the val split, recomputed here by hand (IoU per class by set counting)
    from edgeseg.data import open_dataset
    from edgeseg.training.checkpoint import load_model
    from edgeseg.training.predictor import TorchPredictor

    model, meta = load_model(out / "train" / "best.pt")
    predictor = TorchPredictor(model, meta)
    val = open_dataset("synthetic", "val", synthetic_size=(64, 80))
    inter, union = np.zeros(meta.num_classes), np.zeros(meta.num_classes)
    for image, label in val:
        pred = predictor.predict([np.ascontiguousarray(image[:, :, ::-1])])[0]
        valid = label != 255
        for c in range(meta.num_classes):
            inter[c] += np.count_nonzero((label == c) & (pred == c) & valid)
            union[c] += np.count_nonzero(((label == c) | (pred == c)) & valid)
    miou = float(np.mean(inter[union > 0] / union[union > 0]))
    assert summary["metrics"]["miou"] == pytest.approx(miou, abs=1e-12)
    assert json.loads((out / "metrics.json").read_text())["miou"] == summary["metrics"]["miou"]
    assert summary["metrics"]["num_images"] == len(val) == 64


def test_demo_image_size_is_half_the_datasets_images(tmp_path):
    """Without --image-size the demo trains at half the size of the data's images (read from the images)."""
    import argparse

    from edgeseg.cli.demo_cmd import _image_size

    data = write_synthetic_folder(tmp_path / "data", n=1, size=(96, 130), val_count=1)
    assert _image_size(argparse.Namespace(image_size=None, data=str(data))) == (48, 65)
    assert _image_size(argparse.Namespace(image_size=None, data="synthetic")) == (128, 160)
    assert _image_size(argparse.Namespace(image_size=[40, 56], data=str(data))) == (40, 56)
    with pytest.raises(ConfigError, match="--image-size"):
        _image_size(argparse.Namespace(image_size=[8, 56], data=str(data)))


@pytest.mark.slow
def test_tta_on_eval_and_run(workspace, tmp_path, capsys):
    """--tta-scales/--tta-flip: a dynamic-size export takes them on eval and run, the checkpoint too (torch and ONNX
    Runtime then score alike), scale 1 alone writes the plain masks, and a static export is refused naming --dynamic."""
    root, data = workspace
    dynamic = tmp_path / "dynamic"
    assert main(["export", str(root / "train" / "best.pt"), "--out", str(dynamic),
                 "--dynamic", "1x48x60", "1x64x80", "1x80x100"]) == 0
    tta = ["--tta-scales", "0.75", "1", "1.25", "--tta-flip"]
    onnx_json, pt_json = tmp_path / "onnx.json", tmp_path / "pt.json"
    assert main(["eval", str(dynamic / "model.onnx"), "--data", str(data), "--json", str(onnx_json), *tta]) == 0
    assert main(["eval", str(root / "train" / "best.pt"), "--data", str(data), "--json", str(pt_json), *tta]) == 0
    onnx_scores, pt_scores = (json.loads(p.read_text()) for p in (onnx_json, pt_json))
    for key in ("pixel_acc", "miou"):
        assert pt_scores[key] == pytest.approx(onnx_scores[key], abs=2e-3)
    images = str(data / "val" / "images")
    assert main(["run", str(dynamic / "model.onnx"), "--source", images, "--masks", str(tmp_path / "plain")]) == 0
    assert main(["run", str(dynamic / "model.onnx"), "--source", images, "--masks", str(tmp_path / "one"),
                 "--tta-scales", "1"]) == 0
    assert main(["run", str(dynamic / "model.onnx"), "--source", images, "--masks", str(tmp_path / "tta"), *tta]) == 0
    plain = sorted((tmp_path / "plain").glob("*.png"))
    assert len(plain) == 4
    for path in plain:
        expected = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "one" / path.name), cv2.IMREAD_UNCHANGED), expected)
        assert cv2.imread(str(tmp_path / "tta" / path.name), cv2.IMREAD_UNCHANGED).shape == expected.shape
    capsys.readouterr()
    assert main(["eval", str(root / "export" / "model.onnx"), "--data", str(data), "--tta-scales", "0.5", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeseg eval: error: --tta-scales 0.5 1") and "--dynamic" in err and err.count("\n") == 1
    assert main(["eval", str(root / "export" / "model.onnx"), "--data", str(data), "--tta-flip"]) == 0
