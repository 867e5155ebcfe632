"""Issue 12's blocks wired into `edgeseg train`: group hold-out, shared-group warning, recipes, loss, EMA, warm-up,
channels_last / bf16, and their bad values, on tiny folder datasets written here (one epoch, 32x32; no test trains
to a score)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgeseg.cli import main
from edgeseg.cli import train_cmd
from edgeseg.data.photometric import PhotometricDistortion
from edgeseg.data.transforms import TrainTransform
from edgeseg.errors import ConfigError, DataError
from edgeseg.training import trainer
from edgeseg.training.checkpoint import read_checkpoint
from edgeseg.training.losses import LOSSES
from edgeseg.training.recipes import apply_recipe, get_recipe, list_recipes
from edgeseg.training.schedule import lr_at
from edgeseg.training.torch_data import TorchSegmentationDataset, normalize_rgb
from edgeseg.training.trainer import TrainConfig

# CamVid's shape: val shares drive A with train; drive C is only in train, B only in train
SPLITS = {"train": ["A_1", "A_2", "A_3", "B_1", "B_2", "C_1"], "val": ["A_4", "C_2"]}


def write_folder(root: Path, splits: dict[str, list[str]] = SPLITS, size=(24, 32)) -> Path:
    rng = np.random.default_rng(0)
    h, w = size
    for split, names in splits.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for name in names:
            label = (np.arange(h * w).reshape(h, w) // 7 % 3).astype(np.uint8)
            assert cv2.imwrite(str(root / split / "images" / f"{name}.png"),
                               rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            assert cv2.imwrite(str(root / split / "labels" / f"{name}.png"), label)
    (root / "classes.json").write_text(json.dumps({"classes": ["c0", "c1", "c2"]}))
    return root


def names(dataset) -> list[str]:
    return [dataset.name_of(i) for i in range(len(dataset))]


def argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--model", "fcn8s_mobilenetv3", "--epochs", "1", "--batch-size", "2",
            "--image-size", "32", "32", "--workers", "0", "--out", str(out), *extra]


# --- data: hold-out and the shared-group warning --------------------------------------------------------------


def test_val_groups_hold_out_exactly_the_named_groups(tmp_path):
    data = write_folder(tmp_path / "data")
    train_set, val_set = trainer._open_data(TrainConfig(data=str(data), val_groups=("C",)), (32, 32))
    assert names(val_set) == ["C_1", "C_2"]  # C_1 came from the train split, C_2 from val
    assert sorted(names(train_set)) == ["A_1", "A_2", "A_3", "A_4", "B_1", "B_2"]
    train_set, val_set = trainer._open_data(TrainConfig(data=str(data), val_groups=("A", "B")), (32, 32))
    assert sorted(names(val_set)) == ["A_1", "A_2", "A_3", "A_4", "B_1", "B_2"]
    assert names(train_set) == ["C_1", "C_2"]


def test_group_file_and_pattern_choose_the_groups(tmp_path):
    data = write_folder(tmp_path / "data")
    table = tmp_path / "groups.txt"  # drive by hand: A and B frames are one drive 'x', C is 'y'
    table.write_text("".join(f"{n}.png {'y' if n.startswith('C') else 'x'}\n" for s in SPLITS.values() for n in s))
    _, val_set = trainer._open_data(TrainConfig(data=str(data), val_groups=("y",), group_file=str(table)), (32, 32))
    assert names(val_set) == ["C_1", "C_2"]
    # a pattern taking the frame number: frames *_2 are held out
    config = TrainConfig(data=str(data), val_groups=("2",), group_pattern=r"_(\d+)$")
    _, val_set = trainer._open_data(config, (32, 32))
    assert names(val_set) == ["A_2", "B_2", "C_2"]


def test_shared_groups_are_warned_about_without_val_groups(tmp_path, caplog):
    data = write_folder(tmp_path / "data")
    with caplog.at_level(logging.WARNING):
        train_set, val_set = trainer._open_data(TrainConfig(data=str(data)), (32, 32))
    assert (names(train_set), names(val_set)) == (SPLITS["train"], SPLITS["val"])  # the splits as they are
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "share 2 group(s): A (3 train / 1 val frames), C (1 train / 1 val frames)" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        trainer._open_data(TrainConfig(data=str(data), val_groups=("C",)), (32, 32))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_names_without_groups_warn_nothing_unless_a_group_option_was_given(tmp_path, caplog):
    data = write_folder(tmp_path / "data", {"train": ["t0", "t1"], "val": ["v0"]})
    with caplog.at_level(logging.INFO):
        trainer._open_data(TrainConfig(data=str(data)), (32, 32))  # unknown groups: no reason to stop
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "not checking whether train and val share groups" in caplog.text
    with pytest.raises(DataError, match="does not match --group-pattern"):
        trainer._open_data(TrainConfig(data=str(data), group_pattern=r"^(\w+)_"), (32, 32))


# --- recipes: applied, typed options win ----------------------------------------------------------------------


@pytest.fixture
def captured_config(monkeypatch):
    seen: list[TrainConfig] = []

    def fake_train(config):
        seen.append(config)
        return {"rank": 0, "epochs_run": 0, "best": {}}

    monkeypatch.setattr(trainer, "train", fake_train)
    return seen


def test_recipe_values_apply_and_typed_options_override_them(tmp_path, captured_config):
    recipe = get_recipe("camvid").overrides
    assert main(["train", "--recipe", "camvid", "--out", str(tmp_path / "r")]) == 0
    config = captured_config[-1]
    assert config.recipe == "camvid"
    for key, value in recipe.items():
        assert getattr(config, key) == value, key
    assert config.data == "synthetic" and config.seed == 0  # fields the recipe leaves alone keep their defaults

    # typed, even when equal to the parser's default (--epochs 10, --label-smoothing 0.0 and --no-amp aside)
    assert main(["train", "--recipe", "camvid", "--epochs", "10", "--loss", "ce", "--no-photometric",
                 "--no-cpu-bf16", "--ema-decay", "0.9", "--image-size", "64", "80", "--out", str(tmp_path / "r")]) == 0
    config = captured_config[-1]
    assert (config.epochs, config.loss, config.photometric, config.cpu_bf16, config.ema_decay, config.image_size) \
        == (10, "ce", False, False, 0.9, (64, 80))
    typed = {"epochs", "loss", "photometric", "cpu_bf16", "ema_decay", "image_size"}
    for key, value in recipe.items():
        if key not in typed:
            assert getattr(config, key) == value, key


def test_without_recipe_the_parser_defaults_are_train_configs(tmp_path, captured_config):
    assert main(["train", "--out", str(tmp_path / "r")]) == 0
    assert captured_config[-1] == TrainConfig(out=str(tmp_path / "r"))


@pytest.mark.parametrize("name", [n for n in list_recipes() if not n.startswith("test_")])
def test_every_recipe_passes_the_up_front_checks(name):
    config, _ = apply_recipe(TrainConfig(), name)
    trainer._check_config(config)  # raises on a value the trainer refuses
    loss = trainer._criterion(config, None)
    if config.loss == "ohem":  # the probability became a loss in nats: -log(p)
        assert loss.ohem_threshold == pytest.approx(-math.log(config.ohem_thresh))
        assert loss.ohem_min_kept == config.ohem_min_kept


def test_cli_loss_choices_are_the_loss_modules():
    assert train_cmd._LOSSES == LOSSES


# --- bad values: exit 2 naming the flag, before any step, nothing written --------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a training step ran before the bad input was reported")

    monkeypatch.setattr(trainer, "_train_step", refuse)


@pytest.mark.parametrize("extra, message", [
    (["--ema-decay", "1.5"], "--ema-decay must be in [0, 1), got 1.5"),
    (["--loss", "foo"], "argument --loss: invalid choice: 'foo'"),
    (["--val-groups", "NOPE"], "--val-groups: no sample is in group(s) ['NOPE']; the groups are ['A', 'B', 'C']"),
    (["--val-groups", "A", "B", "C"], "--val-groups ['A', 'B', 'C'] holds every sample"),
    (["--scale-range", "2", "1"], "--scale-range must be LOW HIGH with 0 < LOW <= HIGH, got 2.0 1.0"),
    (["--scale-range", "0", "1"], "--scale-range must be LOW HIGH with 0 < LOW <= HIGH, got 0.0 1.0"),
    (["--loss", "ohem"], "--loss ohem needs --ohem-min-kept"),
    (["--loss", "ohem", "--ohem-min-kept", "0"], "--ohem-min-kept must be >= 1 pixel per image, got 0"),
    (["--ohem-thresh", "0"], "--ohem-thresh must be a probability in (0, 1], got 0.0"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1), got 1.0"),
    (["--lr-warmup-steps", "-1"], "--lr-warmup-steps must be >= 0, got -1"),
    (["--group-pattern", "^[^_]+_"], "--group-pattern '^[^_]+_' must have exactly one capture group"),
    (["--group-pattern", "^(x", "--val-groups", "A"], "--group-pattern '^(x' is not a valid regular expression"),
    (["--group-pattern", "^(.)", "--group-file", "g.txt"], "--group-pattern and --group-file both"),
    (["--group-file", "missing.txt"], "--group-file missing.txt cannot be read"),
    (["--recipe", "nope"], "argument --recipe: invalid choice: 'nope'"),
])
def test_bad_values_fail_before_any_step(tmp_path, capsys, no_training, extra, message):
    data = write_folder(tmp_path / "data")
    out = tmp_path / "run"
    try:
        code = main(argv(data, out, *extra))
    except SystemExit as exc:  # argparse's own checks (choices) exit 2 as well
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "edgeseg train: error: " in err, err
    assert message in err, err
    assert not out.exists()


def test_recipe_name_is_checked_by_train_too(tmp_path):
    with pytest.raises(ConfigError, match="unknown --recipe 'nope'"):
        trainer.train(TrainConfig(out=str(tmp_path / "run"), recipe="nope"))


# --- the learning rate schedule, by hand ----------------------------------------------------------------------


def test_warmup_times_poly_by_hand():
    # 100 steps, power 1, 10 warm-up steps: step 0 -> 1/10 * (1 - 0/100), step 4 -> 5/10 * 0.96, step 50 -> 0.5
    assert lr_at(1.0, 0, 100, 1.0, warmup_steps=10) == pytest.approx(0.1)
    assert lr_at(1.0, 4, 100, 1.0, warmup_steps=10) == pytest.approx(0.5 * 0.96)
    assert lr_at(1.0, 9, 100, 1.0, warmup_steps=10) == pytest.approx(1.0 * 0.91)
    assert lr_at(2.0, 50, 100, 0.9) == pytest.approx(2.0 * 0.5 ** 0.9)
    assert lr_at(1.0, 99, 100, 1.0) == pytest.approx(0.01)  # the last step never trains at 0
    assert lr_at(1.0, 500, 100, 1.0) == pytest.approx(0.01)


def test_time_budget_counts_as_progress():
    # step 10 of 1000, but 3 of 4 budget minutes spent: the decay follows the clock
    assert lr_at(1.0, 10, 1000, 1.0, elapsed_s=180, budget_s=240) == pytest.approx(0.25)
    assert lr_at(1.0, 900, 1000, 1.0, elapsed_s=1, budget_s=240) == pytest.approx(0.1)  # the steps lead
    assert lr_at(1.0, 10, 1000, 1.0, elapsed_s=999, budget_s=240) == pytest.approx(0.001)  # capped like steps
    assert lr_at(1.0, 0, 1000, 2.0, warmup_steps=4, elapsed_s=120, budget_s=240) == pytest.approx(0.25 * 0.25)


# --- the training dataset's transform -------------------------------------------------------------------------


def test_training_dataset_uses_the_scale_range_and_photometric_distortion(tmp_path):
    from edgeseg.data import open_dataset

    dataset = open_dataset(str(write_folder(tmp_path / "data")), "train")
    photometric = PhotometricDistortion(p=1.0, blur_p=1.0)
    wrapped = TorchSegmentationDataset(dataset, (16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), train=True, seed=3,
                                       scale_range=(1.5, 1.5), photometric=photometric)
    wrapped.epoch = 2
    image, label = wrapped[4]
    reference = TrainTransform((16, 16), scale_range=(1.5, 1.5), photometric=photometric)
    ref_image, ref_label = reference(*dataset[4], np.random.default_rng((3, 2, 4)))
    np.testing.assert_array_equal(image.numpy(), normalize_rgb(ref_image, (0.5,) * 3, (0.25,) * 3))
    np.testing.assert_array_equal(label.numpy(), ref_label)
    # and it did distort: without the photometric step the same draws give another image
    plain, _ = TrainTransform((16, 16), scale_range=(1.5, 1.5))(*dataset[4], np.random.default_rng((3, 2, 4)))
    assert not np.array_equal(plain, ref_image)


# --- one real epoch: EMA evaluated and kept, channels_last and bf16 in the step, resume ------------------------


class RecordingEma(trainer.ModelEma):
    """ModelEma that keeps, for a reference computed by hand, the initial weights and each update's weights."""

    instances: list[RecordingEma] = []

    def __init__(self, model, decay, **kwargs):
        super().__init__(model, decay, **kwargs)
        self.initial = {k: v.detach().clone() for k, v in model.named_parameters()}
        self.seen: list[dict[str, torch.Tensor]] = []
        RecordingEma.instances.append(self)

    def update(self, model):
        self.seen.append({k: v.detach().clone() for k, v in model.named_parameters()})
        return super().update(model)


def test_one_epoch_with_ema_ohem_bf16_channels_last_and_resume(tmp_path, monkeypatch):
    data = write_folder(tmp_path / "data")
    out = tmp_path / "run"
    RecordingEma.instances = []
    monkeypatch.setattr(trainer, "ModelEma", RecordingEma)
    evaluated: list[tuple[torch.nn.Module, list[str]]] = []
    real_evaluate = trainer.evaluate_model

    def spy_evaluate(model, dataset, *args, **kwargs):
        evaluated.append((model, names(dataset)))
        return real_evaluate(model, dataset, *args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate_model", spy_evaluate)
    steps_seen: list[tuple[bool, bool, torch.dtype]] = []
    real_build = trainer.build_model

    def spy_build(*args, **kwargs):
        model = real_build(*args, **kwargs)

        def record(module, inputs):
            if module.training:  # training steps only, not validation
                steps_seen.append((inputs[0].is_contiguous(memory_format=torch.channels_last),
                                   torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))

        model.register_forward_pre_hook(record)
        return model

    monkeypatch.setattr(trainer, "build_model", spy_build)
    extra = ["--val-groups", "C", "--ema-decay", "0.9", "--loss", "ohem", "--ohem-min-kept", "50",
             "--label-smoothing", "0.1", "--photometric", "--channels-last", "--cpu-bf16", "--lr-warmup-steps", "2",
             "--optimizer", "adamw"]
    assert main(argv(data, out, *extra)) == 0

    # train: A_1..A_4, B_1, B_2 (6 samples, 3 batches of 2); val: C_1, C_2
    ema = RecordingEma.instances[-1]
    assert len(ema.seen) == 3 and steps_seen == [(True, True, torch.bfloat16)] * 3
    assert len(evaluated) == 1 and evaluated[0][0] is ema.module and evaluated[0][1] == ["C_1", "C_2"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["train_samples"], metrics["val_samples"], metrics["val_groups"]) == (6, 2, ["C"])

    # the EMA by hand: e <- d_n e + (1 - d_n) p_n with d_n = min(0.9, (1 + n) / (10 + n))
    expected = dict(ema.initial)
    for n, weights in enumerate(ema.seen, 1):
        d = min(0.9, (1 + n) / (10 + n))
        expected = {k: d * expected[k] + (1 - d) * weights[k] for k in expected}
    best, last = read_checkpoint(out / "best.pt"), read_checkpoint(out / "last.pt")
    assert best["weights"] == "ema"
    for key, value in expected.items():
        torch.testing.assert_close(best["state_dict"][key], value, rtol=1e-5, atol=1e-6)
    # last.pt: the live weights (not the EMA) plus the EMA state; the buffers are the live model's in both
    live_differs = [k for k in expected if not torch.equal(last["state_dict"][k], best["state_dict"][k])]
    assert live_differs, "last.pt should hold the live weights, which differ from their average"
    assert last["ema"]["updates"] == 3
    for key, value in last["ema"]["module"].items():
        torch.testing.assert_close(value, best["state_dict"][key])
        if key not in expected:  # a buffer (BatchNorm statistics): copied from the live model
            torch.testing.assert_close(value, last["state_dict"][key])

    # --resume restores the EMA: it continues from 3 updates instead of starting again
    assert main(argv(data, out, *extra, "--resume", "--epochs", "2")) == 0
    resumed = RecordingEma.instances[-1]
    assert resumed.updates == 6 and read_checkpoint(out / "last.pt")["ema"]["updates"] == 6
    assert math.isfinite(json.loads((out / "metrics.json").read_text())["history"][-1]["train_loss"])
