from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeseg.cli.explicit_options import explicit_options, track_explicit
from edgeseg.errors import ConfigError
from edgeseg.training.recipes import (Recipe, apply_recipe, get_recipe, list_recipes, register_recipe,
                                      registered_recipe)


@dataclass
class Config:  # a stand-in with TrainConfig's shape, so the mechanics are tested whatever TrainConfig holds today
    model: str = "fcn8s_resnet18"
    epochs: int = 10
    lr: float | None = None
    image_size: tuple[int, int] = (128, 160)
    amp: bool = True
    ema_decay: float | None = None


@pytest.fixture
def recipe():
    """A recipe registered for one test only: it must not reach other tests or `edgeseg train --help`."""
    with registered_recipe(Recipe("test_recipe_for_mechanics", "for the tests",
                                  {"epochs": 40, "lr": 5e-4, "image_size": (180, 240), "amp": False,
                                   "ema_decay": 0.99})) as registered:
        yield registered.name


def test_recipe_fills_what_was_not_given_and_explicit_wins(recipe):
    config, applied = apply_recipe(Config(), recipe)
    assert config == Config(epochs=40, lr=5e-4, image_size=(180, 240), amp=False, ema_decay=0.99)
    assert applied == {"epochs": 40, "lr": 5e-4, "image_size": (180, 240), "amp": False, "ema_decay": 0.99}
    # the user typed --epochs 10 (the default value) and --lr 0.01: both stay; the rest comes from the recipe
    config, applied = apply_recipe(Config(epochs=10, lr=0.01), recipe, explicit={"epochs", "lr"})
    assert (config.epochs, config.lr, config.image_size, config.ema_decay) == (10, 0.01, (180, 240), 0.99)
    assert set(applied) == {"image_size", "amp", "ema_decay"}


def test_unknown_names_and_fields_and_duplicates(recipe):
    with pytest.raises(ConfigError, match=r"unknown --recipe 'nope'; available: .*camvid"):
        get_recipe("nope")

    @dataclass
    class Older:
        epochs: int = 1

    with pytest.raises(ConfigError, match=r"sets \['amp', 'ema_decay', 'image_size', 'lr'\], which Older has no"):
        apply_recipe(Older(), recipe)
    with pytest.raises(ConfigError, match="already registered"):
        register_recipe(Recipe(recipe, "again", {}))


def test_registered_recipes_set_only_train_config_fields():
    from edgeseg.training.trainer import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in list_recipes():
        unknown = set(get_recipe(name).overrides) - fields
        assert not unknown, f"recipe {name} sets {unknown}"


def test_no_test_recipe_is_left_behind():
    """Runs after the tests above in this module: nothing they registered is still listed (nor in --help)."""
    from edgeseg.cli import build_parser

    assert not [name for name in list_recipes() if name.startswith("test_")]
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert "test_recipe_for_mechanics" not in train.format_help()


def test_the_camvid_recipe_is_what_the_readme_says():
    """The README quotes measured scores for the camvid recipe; `edgeseg train --recipe camvid` must resolve to the
    settings it lists there (fcn8s_resnet18, 360x480, AdamW, OHEM, scale 0.5-2, photometric, EMA, bf16 +
    channels-last, 30 minutes), and an option typed on the command line must still beat it."""
    from edgeseg.cli import build_parser
    from edgeseg.cli.train_cmd import config_from_args

    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert ("The `camvid` recipe (fcn8s_resnet18 from scratch, 360x480, AdamW with warm-up, OHEM, scale 0.5-2 and "
            "photometric augmentation, EMA weights, bf16 + channels-last, 30 minutes)") in readme
    base = ["train", "--data", "synthetic", "--out", "unused", "--recipe", "camvid"]
    config = config_from_args(build_parser().parse_args(base))
    assert config.model == "fcn8s_resnet18" and config.image_size == (360, 480)
    assert config.optimizer == "adamw" and config.lr_warmup_steps > 0 and config.loss == "ohem"
    assert config.scale_range == (0.5, 2.0) and config.photometric and config.ema_decay is not None
    assert config.cpu_bf16 and config.channels_last and config.max_minutes == 30
    typed = config_from_args(build_parser().parse_args([*base, "--image-size", "180", "240"]))
    assert typed.image_size == (180, 240) and typed.model == "fcn8s_resnet18"


def train_like_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="edgeseg")
    top.add_argument("-v", "--verbose", action="store_true")
    sub = top.add_subparsers(dest="command")
    train = sub.add_parser("train", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--epochs", type=int, default=10, help="epochs")
    train.add_argument("--lr", type=float, default=None, help="learning rate")
    train.add_argument("--image-size", type=int, nargs=2, default=(128, 160), help="size")
    train.add_argument("--no-amp", action="store_true", help="no AMP")
    train.add_argument("--recipe", default=None, help="recipe")
    track_explicit(train)
    return top


@pytest.mark.parametrize("argv, given", [
    (["train"], set()),
    (["train", "--epochs", "10"], {"epochs"}),  # equal to the default, still given
    (["train", "--epochs=3", "--no-amp"], {"epochs", "no_amp"}),
    (["train", "--epo", "3", "--image-size", "128", "160"], {"epochs", "image_size"}),  # abbreviation
    (["-v", "train", "--recipe", "camvid", "--lr", "1e-3"], {"recipe", "lr"}),
])
def test_explicit_options_knows_what_was_typed(argv, given):
    args = train_like_parser().parse_args(argv)
    assert explicit_options(args) == given
    assert args.epochs == (3 if "3" in argv or "--epochs=3" in argv else 10)


def test_tracking_keeps_help_and_defaults():
    parser = train_like_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    text = train.format_help()
    assert "(default: 10)" in text and "(default: (128, 160))" in text
    assert explicit_options(argparse.Namespace()) == set()
