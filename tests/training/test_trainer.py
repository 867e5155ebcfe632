"""The training loop on tiny synthetic data: files written, loss falls, resume continues."""

import json

import pytest

from edgeseg.errors import ConfigError
from edgeseg.training.trainer import TrainConfig, train


def _config(tmp_path, **overrides):
    base = dict(
        data="synthetic", model="fcn8s_resnet18", epochs=3, batch_size=4, image_size=(64, 80),
        out=str(tmp_path / "run"), synthetic_count=16, workers=0, optimizer="adamw", lr=2e-3,
    )
    base.update(overrides)
    return TrainConfig(**base)


@pytest.mark.slow
def test_train_writes_checkpoints_and_loss_falls_then_resume(tmp_path):
    result = train(_config(tmp_path))
    run = tmp_path / "run"
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    written = json.loads((run / "metrics.json").read_text())
    assert written["epochs_run"] == 3
    assert set(written["best"]) >= {"pixel_acc", "mean_acc", "miou", "fwiou", "per_class_iou"}
    losses = [epoch["train_loss"] for epoch in result["history"]]
    assert losses[-1] < losses[0]

    resumed = train(_config(tmp_path, epochs=4, resume=True))
    assert [e["epoch"] for e in resumed["history"]] == [1, 2, 3, 4]


def test_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="optimizer"):
        train(_config(tmp_path, optimizer="rmsprop", epochs=1))
    with pytest.raises(ConfigError, match="no full batch"):
        train(_config(tmp_path, batch_size=64, epochs=1))
    # config.size_hw parses the size: too small, or not a pair, is a ConfigError naming the option
    with pytest.raises(ConfigError, match=r"--image-size must be at least 16x16"):
        train(_config(tmp_path, image_size=(8, 80)))
    with pytest.raises(ConfigError, match=r"--image-size must be \(height, width\)"):
        train(_config(tmp_path, image_size=(64,)))
    with pytest.raises(ConfigError, match="--class-weights"):
        train(_config(tmp_path, class_weights="inverse"))
    assert not (tmp_path / "run").exists()  # every option is checked before any work


@pytest.mark.slow
def test_torchrun_ddp_on_cpu(tmp_path):
    """The same command under torchrun runs DistributedDataParallel (gloo on CPU); rank 0 alone writes and reports."""
    import subprocess
    import sys

    from edgeseg.data import write_synthetic_folder

    data = write_synthetic_folder(tmp_path / "data", n=8, size=(64, 80), seed=1, val_count=4)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "edgeseg", "train",
               "--data", str(data), "--model", "fcn8s_mobilenetv3", "--epochs", "1", "--batch-size", "2",
               "--image-size", "64", "80", "--out", str(tmp_path / "run"), "--workers", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("trained 1 epochs") == 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_run"] == 1


def test_eval_every_validates_only_every_nth_epoch_and_the_last(tmp_path):
    """--eval-every 2 over 3 epochs: epochs 2 and 3 (the last) are scored, epoch 1 is n/a (NaN) in the history, and
    best.pt comes from a scored epoch."""
    import math

    result = train(_config(tmp_path, eval_every=2, synthetic_count=8, image_size=(32, 48)))
    scored = [not math.isnan(epoch["miou"]) for epoch in result["history"]]
    assert scored == [False, True, True]
    history_csv = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history_csv) == 4 and ",nan," in history_csv[1].lower() + ","
    assert (tmp_path / "run" / "best.pt").is_file()
    with pytest.raises(ConfigError, match="--amp-dtype must be one of"):
        train(_config(tmp_path, amp_dtype="float8"))
