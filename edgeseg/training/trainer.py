"""The training loop: SGD or AdamW with warm-up and the poly schedule, CE or OHEM loss with optional class weights
and label smoothing, an optional EMA of the weights, AMP on CUDA or bf16 autocast on CPU, DDP via torchrun.

`train(TrainConfig(...))` writes OUT/best.pt (highest val mIoU), OUT/last.pt (for --resume), OUT/metrics.json, and
after every epoch OUT/history.csv and OUT/history.png (edgeseg.training.history).
Under `torchrun --nproc_per_node N` the same call runs DistributedDataParallel; only rank 0 writes files.

With --ema-decay, validation scores the EMA weights (edgeseg.training.ema), best.pt holds those evaluated weights
(so export gets them), and last.pt holds the live weights plus the EMA state, which --resume restores.
With --val-groups the train and val splits are pooled and whole groups (drives, sequences) held out as val
(edgeseg.data.groups); without it a folder dataset whose train and val share a group gets a logged warning.

Everything a user can get wrong is checked before the first training step, in this order: the options
(`_check_config`), the output folder (`_check_out`), --resume's checkpoint, then every train and val sample
(`_open_data`, edgeseg.data.validate_dataset), so a bad label fails in seconds instead of after an epoch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from edgeseg.config import IGNORE_INDEX, ModelMeta, make_meta, size_hw
from edgeseg.data import open_dataset, validate_dataset
from edgeseg.data.folder import FolderDataset
from edgeseg.data.groups import Grouping, holdout_split, warn_shared_groups
from edgeseg.data.photometric import PhotometricDistortion
from edgeseg.errors import ConfigError, DataError, OutputPathError
from edgeseg.evaluation import evaluate_predictor
from edgeseg.files import write_file
from edgeseg.metrics import format_score
from edgeseg.models import build_model
from edgeseg.models.fcn import FCN, PAD_MULTIPLE
from edgeseg.models.registry import get_model_builder
from edgeseg.pipeline.progress import is_terminal, tqdm_options
from edgeseg.training.checkpoint import read_checkpoint, save_checkpoint
from edgeseg.training.deep_supervision import DeepSupervision, DeepSupervisionLoss
from edgeseg.training.ema import ModelEma
from edgeseg.training.history import HISTORY_CSV, HISTORY_PNG, write_history
from edgeseg.training.losses import LOSSES, build_loss, prob_threshold
from edgeseg.training.predictor import TorchPredictor
from edgeseg.training.recipes import get_recipe
from edgeseg.training.schedule import lr_at
from edgeseg.training.torch_data import TorchSegmentationDataset

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
CLASS_WEIGHTS = ("none", "auto")
DEFAULT_LR = {"sgd": 0.01, "adamw": 1e-3}
AMP_DTYPES = ("float16", "bfloat16")
# The val scores recorded per epoch (NaN on epochs that --eval-every skips).
SCORE_KEYS = ("pixel_acc", "mean_acc", "miou", "fwiou")
# What a run writes into --out (rank 0); each must be a file there, or absent.
OUTPUT_FILES = ("best.pt", "last.pt", "metrics.json", HISTORY_CSV, HISTORY_PNG)


@dataclass
class TrainConfig:
    data: str = "synthetic"
    model: str = "fcn8s_resnet18"
    epochs: int = 10
    batch_size: int = 8
    image_size: tuple[int, int] = (128, 160)
    out: str = "runs/train"
    optimizer: str = "sgd"  # sgd | adamw
    lr: float | None = None  # default: 0.01 for SGD, 1e-3 for AdamW
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    class_weights: str = "none"  # none | auto (median-frequency balancing from the training labels)
    workers: int = 2
    seed: int = 0
    resume: bool = False
    force: bool = False  # replace another run's checkpoints in --out (without it, such an --out is refused)
    amp: bool = True  # used only on CUDA
    amp_dtype: str = "float16"  # CUDA autocast dtype: float16 (with a grad scaler) or bfloat16 (Ampere+, no scaler)
    eval_every: int = 1  # validate every N epochs (and the last); cheap epochs on a GPU would otherwise wait on it
    max_minutes: float | None = None  # stop after this much training time (whole epochs still evaluated)
    synthetic_count: int | None = None
    pretrained_backbone: str | None = None
    # The recipe the CLI applied (edgeseg.training.recipes.apply_recipe), recorded with the run; train() checks the
    # name but does not apply it again (it cannot know which fields the user gave).
    recipe: str | None = None
    # Generalisation: hold out whole groups (drives, sequences) of the pooled train+val splits as the val set.
    val_groups: tuple[str, ...] = ()
    group_pattern: str | None = None  # regex with one capture group; None: edgeseg.data.groups' default
    group_file: str | None = None  # 'NAME GROUP' lines, for names that do not carry their group
    scale_range: tuple[float, float] = (0.5, 2.0)  # random scale relative to the evaluation view
    photometric: bool = False  # brightness/contrast/saturation/hue/blur (edgeseg.data.photometric)
    loss: str = "ce"  # ce | ohem (edgeseg.training.losses)
    ohem_thresh: float | None = 0.7  # OHEM: a pixel is hard when its true class gets less than this probability
    ohem_min_kept: int | None = None  # OHEM: the fewest pixels kept per image (needed by --loss ohem)
    label_smoothing: float = 0.0
    # Deep supervision: > 0 adds auxiliary score heads on the stride-8/16 features, weighted by this (training only)
    aux_weight: float = 0.0
    ema_decay: float | None = None  # None: no EMA; validate, keep and export the live weights
    lr_warmup_steps: int = 0  # linear warm-up steps, times the poly factor
    channels_last: bool = False  # NHWC model and batches (faster convolutions on CPU)
    cpu_bf16: bool = False  # bf16 autocast when training on CPU (on CUDA, --amp is the mixed precision)
    extra: dict[str, Any] = field(default_factory=dict)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def median_frequency_weights(dataset: Any, num_classes: int, limit: int = 200) -> torch.Tensor:
    """Eigen & Fergus median-frequency balancing: w_c = median(freq) / freq_c over (up to `limit`) labels."""
    counts = np.zeros(num_classes, np.float64)
    for index in range(min(len(dataset), limit)):
        label = dataset[index][1]
        counts += np.bincount(label[label != IGNORE_INDEX].ravel(), minlength=num_classes)[:num_classes]
    freq = counts / max(counts.sum(), 1.0)
    present = freq > 0
    weights = np.ones(num_classes, np.float64)
    weights[present] = np.median(freq[present]) / freq[present]
    return torch.tensor(weights, dtype=torch.float32)


def evaluate_model(model: torch.nn.Module, dataset: Any, meta: ModelMeta, device: torch.device,
                   progress: bool = False) -> dict:
    """Scores of `model` on `dataset` through the one evaluation loop (edgeseg.evaluation) and the model's
    ProcessingPlan, so the val mIoU of training is the mIoU `edgeseg eval` reports for best.pt."""
    scores = evaluate_predictor(TorchPredictor(model, meta, device).predict, dataset, meta.classes, progress=progress)
    return scores.to_dict()


@dataclass
class _Run:
    """What one training run holds between its steps."""

    config: TrainConfig
    rank: int
    world: int
    device: torch.device
    out: Path
    meta: ModelMeta
    train_set: Any
    val_set: Any
    core: torch.nn.Module  # the model itself (what is saved and evaluated)
    model: torch.nn.Module  # `core`, wrapped in DistributedDataParallel under torchrun
    train_data: TorchSegmentationDataset
    loader: DataLoader
    sampler: DistributedSampler | None
    optimizer: torch.optim.Optimizer
    base_lr: float
    criterion: torch.nn.Module
    trained: torch.nn.Module  # what the optimizer steps: `core`, or DeepSupervision(core) with --aux-weight
    scaler: torch.amp.GradScaler
    use_amp: bool  # CUDA mixed precision (--amp)
    use_bf16: bool = False  # CPU bf16 autocast (--cpu-bf16)
    ema: ModelEma | None = None
    start_epoch: int = 0
    best_miou: float = -1.0
    history: list = field(default_factory=list)
    best_scores: dict | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def total_steps(self) -> int:
        return self.config.epochs * len(self.loader)

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights validation scores and best.pt keeps: the EMA's when there is one, else the live model's."""
        return self.ema.module if self.ema is not None else self.core


@dataclass
class _Epoch:
    """One epoch's outcome: training (loss, steps, speed, last learning rate) and its wall time with validation."""

    loss_sum: float = 0.0
    steps: int = 0
    images: int = 0
    seconds: float = 0.0  # training only, for images_per_s
    lr: float = 0.0  # the learning rate of the epoch's last step (the poly schedule lowers it every step)
    wall_seconds: float = 0.0  # training and validation
    out_of_time: bool = False


def train(config: TrainConfig) -> dict:
    """Train, evaluate every epoch, keep best/last checkpoints and the history. Returns the metrics.json content."""
    size = _check_config(config)
    out = _check_out(config)
    resume = _resume_state(config, out, size)
    run = _prepare(config, size, out, resume)
    for epoch in range(run.start_epoch, config.epochs):
        started = time.perf_counter()
        result = _train_epoch(run, epoch)
        due = (epoch + 1) % config.eval_every == 0 or result.out_of_time or epoch + 1 == config.epochs
        scores = _evaluate_epoch(run) if due else dict.fromkeys(SCORE_KEYS, float("nan"))
        result.wall_seconds = time.perf_counter() - started
        _record_epoch(run, epoch, result, scores)
        if result.out_of_time:
            log.info("stopping after epoch %d: --max-minutes %g reached", epoch + 1, config.max_minutes)
            break
    return _finish(run)


def _check_config(config: TrainConfig) -> tuple[int, int]:
    """The training (H, W), after checking every option that needs no data (so mistakes fail before any work)."""
    size = size_hw(config.image_size, "--image-size", minimum=16)
    get_model_builder(config.model)  # ConfigError listing the registered names
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"--optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")
    if config.class_weights not in CLASS_WEIGHTS:
        raise ConfigError(f"--class-weights must be one of {CLASS_WEIGHTS}, got {config.class_weights!r}")
    if config.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {config.epochs}")
    if config.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {config.batch_size}")
    if config.amp_dtype not in AMP_DTYPES:
        raise ConfigError(f"--amp-dtype must be one of {AMP_DTYPES}, got {config.amp_dtype!r}")
    if config.eval_every < 1:
        raise ConfigError(f"--eval-every must be >= 1 (validate every N epochs), got {config.eval_every}")
    if not 0 <= config.seed < 2**32:  # numpy and torch seeds are unsigned 32-bit
        raise ConfigError(f"--seed must be in 0..{2**32 - 1}, got {config.seed}")
    if config.workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0 loads data in the main process), got {config.workers}")
    if config.lr is not None and not (math.isfinite(config.lr) and config.lr > 0):
        raise ConfigError(f"--lr must be a number > 0, got {config.lr}")
    if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise ConfigError(f"--weight-decay must be a number >= 0, got {config.weight_decay}")
    if config.max_minutes is not None and not (math.isfinite(config.max_minutes) and config.max_minutes > 0):
        raise ConfigError(f"--max-minutes must be a number of minutes > 0, got {config.max_minutes}")
    _check_generalisation_options(config)
    return size


def _check_generalisation_options(config: TrainConfig) -> None:
    """The recipe, group, augmentation, loss, EMA, warm-up options, before any data is read."""
    if config.recipe is not None:
        get_recipe(config.recipe)  # ConfigError listing the recipes
    if isinstance(config.val_groups, str):
        raise ConfigError(f"--val-groups must be a list of group names, got the string {config.val_groups!r}")
    if config.group_pattern is not None and config.group_file is not None:
        raise ConfigError("--group-pattern and --group-file both say how to find a sample's group; give one")
    _grouping(config)  # a bad regex or an unreadable group file fails now, naming its option
    scale = tuple(config.scale_range)
    if len(scale) != 2 or not all(math.isfinite(v) for v in scale) or not 0 < scale[0] <= scale[1]:
        raise ConfigError(f"--scale-range must be LOW HIGH with 0 < LOW <= HIGH, got {' '.join(map(str, scale))}")
    if config.loss not in LOSSES:
        raise ConfigError(f"--loss must be one of {LOSSES}, got {config.loss!r}")
    if config.ohem_thresh is not None and not 0 < config.ohem_thresh <= 1:  # also refuses nan
        raise ConfigError(f"--ohem-thresh must be a probability in (0, 1], got {config.ohem_thresh}")
    if config.ohem_min_kept is not None and config.ohem_min_kept < 1:
        raise ConfigError(f"--ohem-min-kept must be >= 1 pixel per image, got {config.ohem_min_kept}")
    if config.loss == "ohem" and config.ohem_min_kept is None:
        raise ConfigError("--loss ohem needs --ohem-min-kept (the fewest pixels kept per image)")
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError(f"--label-smoothing must be in [0, 1), got {config.label_smoothing}")
    if not (math.isfinite(config.aux_weight) and config.aux_weight >= 0):
        raise ConfigError(f"--aux-weight must be >= 0 (0: no auxiliary heads), got {config.aux_weight}")
    if config.ema_decay is not None and not 0 <= config.ema_decay < 1:
        raise ConfigError(f"--ema-decay must be in [0, 1), got {config.ema_decay}")
    if config.lr_warmup_steps < 0:
        raise ConfigError(f"--lr-warmup-steps must be >= 0, got {config.lr_warmup_steps}")


def _grouping(config: TrainConfig) -> Grouping:
    """How a sample name maps to its group: --group-file, --group-pattern, or the default pattern."""
    if config.group_file is not None:
        return Grouping.from_file(config.group_file)
    return Grouping(config.group_pattern)


def _check_out(config: TrainConfig) -> Path:
    """--out as a folder that exists or can be made (the output guard, without creating anything; see _make_out),
    outside the dataset, and not holding another run's checkpoints unless --resume continues it or --force
    replaces it."""
    from edgeseg.output_guard import Input, Output, check_outputs, dataset_input

    out = Path(config.out)
    if out.is_symlink() and not out.exists():
        raise OutputPathError(f"--out {out} is a symlink to {os.readlink(out)}, which does not exist")
    inputs = dataset_input(config.data)
    inputs += [Input(flag, value) for flag, value in (("--pretrained-backbone", config.pretrained_backbone),
                                                      ("--group-file", config.group_file)) if value is not None]
    check_outputs([Output("--out", config.out, folder=True, files=OUTPUT_FILES)], inputs)
    previous = [name for name in ("best.pt", "last.pt") if (out / name).is_file()]
    if previous and not (config.resume or config.force):
        raise OutputPathError(f"--out {out} holds another run's {' and '.join(previous)}: pass --resume to continue "
                              "that run, --force to replace it, or give a new --out folder")
    return out


def _make_out(out: Path) -> None:
    """Create --out (rank 0), once the options and the data are known to be good."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"--out {out} cannot be created: {exc.strerror or exc}") from exc


def _resume_state(config: TrainConfig, out: Path, size: tuple[int, int]) -> dict | None:
    """OUT/last.pt when --resume is given, checked to hold the same model at the same --image-size and fewer epochs
    than --epochs (the classes are compared with --data's once the data is open, in _prepare)."""
    if not config.resume:
        return None
    last = out / "last.pt"
    state = read_checkpoint(last)
    stored = ModelMeta.from_dict(state["meta"], f"--resume: {last}")  # names a missing or malformed field
    if stored.model_name != config.model:
        raise ConfigError(f"--resume: {last} holds {stored.model_name}, not --model {config.model}; resume with "
                          f"--model {stored.model_name}, or start a new --out")
    if tuple(stored.input_size) != tuple(size):
        raise ConfigError(f"--resume: {last} was trained at --image-size {stored.input_size[0]} "
                          f"{stored.input_size[1]}, not {size[0]} {size[1]}; resume at its size, or start a new --out")
    done = int(state.get("epoch", -1)) + 1
    if config.epochs <= done:
        raise ConfigError(f"--resume: {last} has already trained {done} epochs; give --epochs greater than {done} "
                          f"to train more (--epochs counts all epochs, not the extra ones)")
    # the optimizer state in last.pt covers the auxiliary heads or not; a mismatch would fail inside torch
    if (config.aux_weight > 0) != ("aux_heads" in state):
        was = "with" if "aux_heads" in state else "without"
        raise ConfigError(f"--resume: {last} was trained {was} auxiliary heads (--aux-weight); resume {was} them "
                          f"too, or start a new --out")
    return state


def _prepare(config: TrainConfig, size: tuple[int, int], out: Path, resume: dict | None) -> _Run:
    """Data (validated), model (resumed when asked), loader, loss, optimizer: everything the epochs need."""
    rank, world, local_rank = _distributed()
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed + rank)
    train_set, val_set = _open_data(config, size)
    meta = make_meta(config.model, train_set.info.classes, size, palette=train_set.info.palette)
    if resume is not None and tuple(resume["meta"]["classes"]) != meta.classes:
        raise ConfigError(f"--resume: {out / 'last.pt'} was trained on classes {list(resume['meta']['classes'])}, "
                          f"but --data {config.data} has {list(meta.classes)}")

    core = build_model(config.model, num_classes=meta.num_classes, pretrained_backbone=config.pretrained_backbone)
    _check_batch_norm_fits(core, config.batch_size, size)
    if resume is not None:
        core.load_state_dict(resume["state_dict"])
    core.to(device)
    if config.channels_last:
        core.to(memory_format=torch.channels_last)
    ema = _make_ema(config, core, out, resume)
    trained = _with_aux_heads(config, core, resume).to(device)
    if config.channels_last:
        trained.to(memory_format=torch.channels_last)
    model = trained
    if world > 1:
        device_ids = [local_rank] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(trained, device_ids=device_ids)

    train_data = TorchSegmentationDataset(
        train_set, size, meta.mean, meta.std, train=True, seed=config.seed, scale_range=tuple(config.scale_range),
        photometric=PhotometricDistortion() if config.photometric else None,
    )
    sampler = DistributedSampler(train_data, seed=config.seed) if world > 1 else None
    loader = DataLoader(
        train_data, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True,
        num_workers=config.workers, pin_memory=device.type == "cuda", persistent_workers=config.workers > 0,
    )
    if len(loader) == 0:
        raise ConfigError(
            f"{len(train_set)} training images give no full batch of {config.batch_size}; lower --batch-size"
        )

    weights = None
    if config.class_weights == "auto":
        weights = median_frequency_weights(train_set, meta.num_classes).to(device)
    optimizer, base_lr = _optimizer(config, model)
    use_amp = config.amp and device.type == "cuda"
    if config.cpu_bf16 and device.type != "cpu":
        log.warning("--cpu-bf16 applies to training on the CPU; on %s the mixed precision is --amp (%s)",
                    device.type, "on" if use_amp else "off")
    run = _Run(
        config=config, rank=rank, world=world, device=device, out=out, meta=meta, train_set=train_set,
        val_set=val_set, core=core, model=model, train_data=train_data, loader=loader, sampler=sampler,
        optimizer=optimizer, base_lr=base_lr, criterion=_criterion(config, weights).to(device), trained=trained,
        # bfloat16 has float32's range: no loss scaling (and GradScaler would only cost time)
        scaler=torch.amp.GradScaler("cuda", enabled=use_amp and config.amp_dtype == "float16"), use_amp=use_amp,
        use_bf16=config.cpu_bf16 and device.type == "cpu", ema=ema,
    )
    if resume is not None:
        if "optimizer" in resume:
            optimizer.load_state_dict(resume["optimizer"])
        run.start_epoch = int(resume["epoch"]) + 1
        run.best_miou = float(resume.get("best_miou", -1.0))
        run.history = list(resume.get("history", []))
    if rank == 0:
        _make_out(out)
    return run


def _check_batch_norm_fits(model: torch.nn.Module, batch_size: int, size: tuple[int, int]) -> None:
    """BatchNorm in training mode needs more than one value per channel: at 16x16 with --batch-size 1 an FCN's
    stride-32 features are one pixel, and torch would fail in the first step. Say which options to change."""
    if not isinstance(model, FCN) or not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                             for m in model.modules()):
        return
    cells = math.ceil(size[0] / PAD_MULTIPLE) * math.ceil(size[1] / PAD_MULTIPLE)
    if batch_size * cells < 2:
        raise ConfigError(f"--batch-size {batch_size} at --image-size {size[0]} {size[1]}: the model's stride-"
                          f"{PAD_MULTIPLE} features are {cells} pixel per image, and its BatchNorm layers need "
                          "more than one value per channel to train; use --batch-size 2 or more, or an --image-size "
                          f"above {PAD_MULTIPLE} on one side")


def _make_ema(config: TrainConfig, core: torch.nn.Module, out: Path, resume: dict | None) -> ModelEma | None:
    """The EMA of `core` for --ema-decay (restored from last.pt on --resume), or None without it."""
    if config.ema_decay is None:
        if resume is not None and "ema" in resume:
            log.warning("--resume: %s holds EMA weights, which this run drops (no --ema-decay); validation and "
                        "best.pt now use the live weights", out / "last.pt")
        return None
    ema = ModelEma(core, config.ema_decay)
    if resume is not None:
        if "ema" in resume:
            ema.load_state_dict(resume["ema"])
        else:
            log.warning("--resume: %s holds no EMA state (trained without --ema-decay); the EMA starts from the "
                        "resumed weights", out / "last.pt")
    return ema


def _with_aux_heads(config: TrainConfig, core: torch.nn.Module, resume: dict | None) -> torch.nn.Module:
    """`core` wrapped with the auxiliary heads of --aux-weight (restored from last.pt on --resume), else `core`."""
    if config.aux_weight == 0:
        return core
    trained = DeepSupervision(core)
    if resume is not None and "aux_heads" in resume:
        trained.aux_heads.load_state_dict(resume["aux_heads"])
    return trained


def _criterion(config: TrainConfig, weights: torch.Tensor | None) -> torch.nn.Module:
    """The loss for --loss, --ohem-thresh (a probability, turned into a loss in nats), --ohem-min-kept and
    --label-smoothing, with the class weights of --class-weights, and --aux-weight's auxiliary terms."""
    threshold = prob_threshold(config.ohem_thresh) if config.ohem_thresh is not None else None
    loss = build_loss(config.loss, weight=weights, ignore_index=IGNORE_INDEX, label_smoothing=config.label_smoothing,
                      ohem_threshold=threshold, ohem_min_kept=config.ohem_min_kept)
    return DeepSupervisionLoss(loss, config.aux_weight) if config.aux_weight > 0 else loss


def _open_data(config: TrainConfig, size: tuple[int, int]) -> tuple[Any, Any]:
    """(train split, val split) of --data, every sample of both loaded and checked before training starts.

    With --val-groups: the pooled splits, with those groups held out as val. Synthetic scenes are rendered at the
    training size. A bad label or image (an id outside the classes, a size that differs from its image) is a
    DataError naming the split and file, not a DataLoader worker's traceback after a full epoch."""
    kwargs: dict[str, Any] = {"synthetic_size": size}
    if config.synthetic_count:
        kwargs["synthetic_count"] = config.synthetic_count
    train_set, val_set = open_dataset(config.data, "train", **kwargs), open_dataset(config.data, "val", **kwargs)
    if val_set.info.classes != train_set.info.classes:
        raise DataError(f"--data {config.data}: the val split's classes {list(val_set.info.classes)} differ from "
                        f"the train split's {list(train_set.info.classes)}")
    grouping = _grouping(config)
    if config.val_groups:  # by name only, so a typo in a group fails before any sample is loaded
        train_set, val_set = holdout_split([train_set, val_set], config.val_groups, grouping)
        log.info("--val-groups %s: %d train and %d val samples from the pooled train and val splits",
                 " ".join(config.val_groups), len(train_set), len(val_set))
    else:
        _warn_shared_groups(config, train_set, val_set, grouping)
    started = time.perf_counter()
    for dataset in (train_set, val_set):
        validate_dataset(dataset)
    log.info("checked %d train and %d val samples of %s (%d classes) in %.1f s", len(train_set), len(val_set),
             config.data, train_set.num_classes, time.perf_counter() - started)
    return train_set, val_set


def _warn_shared_groups(config: TrainConfig, train_set: Any, val_set: Any, grouping: Grouping) -> None:
    """Warn when train and val share a group, for folder datasets (CamVid's layout) or when a group option says how
    to find groups. VOC's names are years and Cityscapes' splits are different cities: no warning there."""
    asked = config.group_pattern is not None or config.group_file is not None
    if not (asked or isinstance(train_set, FolderDataset)):
        return
    names = [[dataset.name_of(i) for i in range(len(dataset))] for dataset in (train_set, val_set)]
    try:
        warn_shared_groups(*names, grouping)
    except DataError as exc:
        if asked:
            raise
        # names without the default '<group>_' prefix: the groups are unknown, which is no reason to stop
        log.info("not checking whether train and val share groups: %s", exc)


def _optimizer(config: TrainConfig, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, float]:
    """(optimizer, base learning rate) for --optimizer and --lr."""
    base_lr = config.lr if config.lr is not None else DEFAULT_LR[config.optimizer]
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=base_lr, momentum=config.momentum,
                               weight_decay=config.weight_decay), base_lr
    return torch.optim.AdamW(model.parameters(), lr=base_lr, weight_decay=config.weight_decay), base_lr


def _train_epoch(run: _Run, epoch: int) -> _Epoch:
    """One pass over the training loader with warm-up and the poly schedule (edgeseg.training.schedule, which
    counts --max-minutes' elapsed share as progress); stops early when --max-minutes runs out.

    Progress: a tqdm bar on a terminal, a plain line every few seconds when stderr is a log (tqdm_options)."""
    config = run.config
    run.model.train()
    run.train_data.epoch = epoch  # a fresh, reproducible augmentation per epoch
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    result = _Epoch()
    step = epoch * len(run.loader)
    started = time.perf_counter()
    bar = tqdm(run.loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=run.rank != 0, unit="batch",
               leave=False, **tqdm_options())
    budget_s = config.max_minutes * 60 if config.max_minutes is not None else None
    for images, labels in bar:
        elapsed_s = _elapsed_s(run) if budget_s is not None else None
        if elapsed_s is not None and elapsed_s > budget_s and result.steps:
            result.out_of_time = True  # the time budget ends the epoch early; it is still evaluated and saved
            break
        result.lr = lr_at(run.base_lr, step + result.steps, run.total_steps, config.poly_power,
                          warmup_steps=config.lr_warmup_steps, elapsed_s=elapsed_s, budget_s=budget_s)
        for group in run.optimizer.param_groups:
            group["lr"] = result.lr
        loss = _train_step(run, images, labels)
        if not math.isfinite(loss):
            raise ConfigError(f"loss became {loss} at epoch {epoch + 1}; lower --lr")
        result.steps += 1
        result.images += images.shape[0] * run.world
        result.loss_sum += loss
        # refresh=False: the bar redraws at tqdm's own pace (mininterval), which keeps a log to a line every few s
        bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{result.images / (time.perf_counter() - started):.1f}",
                        refresh=False)
    else:  # the epoch ran to its end: no need to start another if the time is already up
        result.out_of_time = budget_s is not None and _elapsed_s(run) > budget_s
    bar.close()
    result.seconds = time.perf_counter() - started
    return result


def _elapsed_s(run: _Run) -> float:
    """Seconds since the run started; under torchrun the largest over the ranks, so every rank gets the same
    learning rate and stops at the same step (a rank stopping alone would leave the others waiting)."""
    elapsed = time.perf_counter() - run.started
    if run.world == 1:
        return elapsed
    value = torch.tensor([elapsed], dtype=torch.float64, device=run.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return float(value.item())


def _autocast(run: _Run) -> torch.autocast:
    """--amp's autocast on CUDA (--amp-dtype), --cpu-bf16's bf16 autocast on CPU (the loss itself stays fp32)."""
    if run.device.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, run.config.amp_dtype), enabled=run.use_amp)
    return torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.use_bf16)


def _train_step(run: _Run, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Forward, loss, backward, optimizer step and EMA update on one batch; returns the loss."""
    images = images.to(run.device, non_blocking=True)
    if run.config.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = labels.to(run.device, non_blocking=True)
    with _autocast(run):
        loss = run.criterion(run.model(images), labels)
    if not torch.isfinite(loss):
        return float(loss.item())  # no step on a non-finite loss; the caller reports it
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.ema is not None:
        run.ema.update(run.core)
    return float(loss.item())


def _evaluate_epoch(run: _Run) -> dict:
    """Val scores of the evaluated weights (the EMA's with --ema-decay); the eval bar only on a terminal (in a log
    the epoch line says it all)."""
    progress = run.rank == 0 and is_terminal(sys.stderr)
    return evaluate_model(run.evaluated, run.val_set, run.meta, run.device, progress=progress)


def _record_epoch(run: _Run, epoch: int, result: _Epoch, scores: dict) -> None:
    """Append the epoch to the history; rank 0 saves last.pt, best.pt when val mIoU improved, and the history."""
    record = {
        "epoch": epoch + 1,
        "train_loss": result.loss_sum / max(result.steps, 1),
        "steps": result.steps,
        "images_per_s": result.images / max(result.seconds, 1e-9),
        **{k: scores[k] for k in SCORE_KEYS},
        "lr": result.lr,
        "seconds": result.wall_seconds,
    }
    run.history.append(record)
    is_best = scores["miou"] > run.best_miou
    run.best_miou = max(run.best_miou, scores["miou"])
    if run.rank != 0:
        return
    log.info("epoch %d/%d: loss %.3f, val mIoU %s, pixel acc %s, lr %.3g, %.1f s%s", epoch + 1, run.config.epochs,
             record["train_loss"], format_score(scores["miou"]), format_score(scores["pixel_acc"]), result.lr,
             result.wall_seconds, " (best so far)" if is_best else "")
    state = {"epoch": epoch, "best_miou": run.best_miou, "history": run.history, "train_config": _jsonable(run.config)}
    # last.pt: the live weights to continue from (plus the EMA); best.pt: the weights that were scored, for export
    extra = {} if run.ema is None else {"ema": _ema_state(run.ema)}
    if isinstance(run.trained, DeepSupervision):  # not part of the model, but --resume continues training them
        extra["aux_heads"] = {k: v.detach().cpu() for k, v in run.trained.aux_heads.state_dict().items()}
    save_checkpoint(run.out / "last.pt", run.core, run.meta, optimizer=run.optimizer.state_dict(), **extra, **state)
    if is_best:
        save_checkpoint(run.out / "best.pt", run.evaluated, run.meta, val_scores=scores,
                        weights="ema" if run.ema is not None else "live", **state)
        run.best_scores = scores
    write_history(run.out, run.history)


def _finish(run: _Run) -> dict:
    """The metrics.json content; rank 0 writes it. Ends the process group under torchrun."""
    config = run.config
    result: dict[str, Any] = {
        "model": config.model, "data": config.data, "epochs_run": len(run.history), "history": run.history,
        "rank": run.rank, "recipe": config.recipe, "val_groups": list(config.val_groups),
        "train_samples": len(run.train_set), "val_samples": len(run.val_set),
        "evaluated_weights": "ema" if run.ema is not None else "live",
    }
    if run.rank == 0:
        best = run.best_scores
        if best is None and (run.out / "best.pt").is_file():  # resumed and never beat the stored best
            best = read_checkpoint(run.out / "best.pt").get("val_scores", {})
        result["best"] = best or {}
        result["train_seconds"] = time.perf_counter() - run.started
        write_file(run.out / "metrics.json", json.dumps(result, indent=2))
    if run.world > 1:
        dist.destroy_process_group()
    return result


def _ema_state(ema: ModelEma) -> dict:
    state = ema.state_dict()
    state["module"] = {k: v.detach().cpu() for k, v in state["module"].items()}
    return state


def _jsonable(config: TrainConfig) -> dict:
    data = asdict(config)
    for key, value in data.items():  # tuples as lists, as JSON and torch.load(weights_only=True) read them back
        if isinstance(value, tuple):
            data[key] = list(value)
    return data
