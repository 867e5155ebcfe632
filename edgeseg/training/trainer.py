"""The training loop: SGD or AdamW with the poly schedule, optional class weights, AMP on CUDA, DDP via torchrun.

`train(TrainConfig(...))` writes OUT/best.pt (highest val mIoU), OUT/last.pt (for --resume) and OUT/metrics.json.
Under `torchrun --nproc_per_node N` the same call runs DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
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
from edgeseg.data import open_dataset
from edgeseg.errors import ConfigError
from edgeseg.evaluation import evaluate_predictor
from edgeseg.files import write_file
from edgeseg.models import build_model
from edgeseg.training.checkpoint import read_checkpoint, save_checkpoint
from edgeseg.training.predictor import TorchPredictor
from edgeseg.training.torch_data import TorchSegmentationDataset

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
CLASS_WEIGHTS = ("none", "auto")


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
    amp: bool = True  # used only on CUDA
    max_minutes: float | None = None  # stop after this much training time (whole epochs still evaluated)
    synthetic_count: int | None = None
    pretrained_backbone: str | None = None
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


def _poly_lr(base_lr: float, step: int, total: int, power: float) -> float:
    return base_lr * (1.0 - min(step, total - 1) / total) ** power


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
    scaler: torch.amp.GradScaler
    use_amp: bool
    start_epoch: int = 0
    best_miou: float = -1.0
    history: list = field(default_factory=list)
    best_scores: dict | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def total_steps(self) -> int:
        return self.config.epochs * len(self.loader)


@dataclass
class _Epoch:
    """One epoch's training outcome."""

    loss_sum: float = 0.0
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    out_of_time: bool = False


def train(config: TrainConfig) -> dict:
    """Train, evaluate every epoch, keep best/last checkpoints. Returns the metrics.json content."""
    size = _check_config(config)
    run = _prepare(config, size)
    for epoch in range(run.start_epoch, config.epochs):
        result = _train_epoch(run, epoch)
        scores = evaluate_model(run.core, run.val_set, run.meta, run.device, progress=run.rank == 0)
        _record_epoch(run, epoch, result, scores)
        if result.out_of_time:
            log.info("stopping after epoch %d: --max-minutes %.1f reached", epoch + 1, config.max_minutes)
            break
    return _finish(run)


def _check_config(config: TrainConfig) -> tuple[int, int]:
    """The training (H, W), after checking every option that needs no data (so mistakes fail before any work)."""
    size = size_hw(config.image_size, "--image-size", minimum=16)
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"--optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")
    if config.class_weights not in CLASS_WEIGHTS:
        raise ConfigError(f"--class-weights must be one of {CLASS_WEIGHTS}, got {config.class_weights!r}")
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError(f"--epochs and --batch-size must be >= 1, got {config.epochs} and {config.batch_size}")
    if config.max_minutes is not None and config.max_minutes <= 0:
        raise ConfigError(f"--max-minutes must be > 0, got {config.max_minutes}")
    return size


def _prepare(config: TrainConfig, size: tuple[int, int]) -> _Run:
    """Data, model (resumed when asked), loader, loss, optimizer: everything the epochs need."""
    rank, world, local_rank = _distributed()
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed + rank)
    out = Path(config.out)
    train_set, val_set = _open_data(config, size)
    meta = make_meta(config.model, train_set.info.classes, size, palette=train_set.info.palette)
    resume = _resume_state(config, out)

    core = build_model(config.model, num_classes=meta.num_classes, pretrained_backbone=config.pretrained_backbone)
    if resume is not None:
        core.load_state_dict(resume["state_dict"])
    core.to(device)
    model = core
    if world > 1:
        device_ids = [local_rank] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(core, device_ids=device_ids)

    train_data = TorchSegmentationDataset(train_set, size, meta.mean, meta.std, train=True, seed=config.seed)
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
    run = _Run(
        config=config, rank=rank, world=world, device=device, out=out, meta=meta, train_set=train_set,
        val_set=val_set, core=core, model=model, train_data=train_data, loader=loader, sampler=sampler,
        optimizer=optimizer, base_lr=base_lr,
        criterion=torch.nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE_INDEX),
        scaler=torch.amp.GradScaler("cuda", enabled=use_amp), use_amp=use_amp,
    )
    if resume is not None:
        if "optimizer" in resume:
            optimizer.load_state_dict(resume["optimizer"])
        run.start_epoch = int(resume["epoch"]) + 1
        run.best_miou = float(resume.get("best_miou", -1.0))
        run.history = list(resume.get("history", []))
    return run


def _open_data(config: TrainConfig, size: tuple[int, int]) -> tuple[Any, Any]:
    """(train split, val split) of --data; synthetic scenes are rendered at the training size."""
    kwargs: dict[str, Any] = {"synthetic_size": size}
    if config.synthetic_count:
        kwargs["synthetic_count"] = config.synthetic_count
    return open_dataset(config.data, "train", **kwargs), open_dataset(config.data, "val", **kwargs)


def _resume_state(config: TrainConfig, out: Path) -> dict | None:
    """OUT/last.pt when --resume is given, checked to hold the same model."""
    if not config.resume:
        return None
    state = read_checkpoint(out / "last.pt")
    if state["meta"]["model_name"] != config.model:
        raise ConfigError(f"--resume: {out / 'last.pt'} holds {state['meta']['model_name']}, not {config.model}")
    return state


def _optimizer(config: TrainConfig, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, float]:
    """(optimizer, base learning rate) for --optimizer and --lr."""
    if config.optimizer == "sgd":
        base_lr = config.lr or 0.01
        return torch.optim.SGD(model.parameters(), lr=base_lr, momentum=config.momentum,
                               weight_decay=config.weight_decay), base_lr
    base_lr = config.lr or 1e-3
    return torch.optim.AdamW(model.parameters(), lr=base_lr, weight_decay=config.weight_decay), base_lr


def _train_epoch(run: _Run, epoch: int) -> _Epoch:
    """One pass over the training loader with the poly schedule; stops early when --max-minutes runs out."""
    config = run.config
    run.model.train()
    run.train_data.epoch = epoch  # a fresh, reproducible augmentation per epoch
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    result = _Epoch()
    step = epoch * len(run.loader)
    started = time.perf_counter()
    bar = tqdm(run.loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=run.rank != 0, unit="batch", leave=False)
    for images, labels in bar:
        for group in run.optimizer.param_groups:
            group["lr"] = _poly_lr(run.base_lr, step + result.steps, run.total_steps, config.poly_power)
        loss = _train_step(run, images, labels)
        if not math.isfinite(loss):
            raise ConfigError(f"loss became {loss} at epoch {epoch + 1}; lower --lr")
        result.steps += 1
        result.images += images.shape[0] * run.world
        result.loss_sum += loss
        bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{result.images / (time.perf_counter() - started):.1f}")
        if config.max_minutes is not None and (time.perf_counter() - run.started) / 60 > config.max_minutes:
            result.out_of_time = True  # the time budget ends the epoch early; it is still evaluated and saved
            break
    bar.close()
    result.seconds = time.perf_counter() - started
    return result


def _train_step(run: _Run, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Forward, loss, backward and optimizer step on one batch (AMP on CUDA); returns the loss."""
    images = images.to(run.device, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    with torch.autocast(run.device.type, enabled=run.use_amp):
        loss = run.criterion(run.model(images), labels)
    if not torch.isfinite(loss):
        return float(loss.item())  # no step on a non-finite loss; the caller reports it
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return float(loss.item())


def _record_epoch(run: _Run, epoch: int, result: _Epoch, scores: dict) -> None:
    """Append the epoch to the history; rank 0 saves last.pt, and best.pt when val mIoU improved."""
    record = {
        "epoch": epoch + 1,
        "train_loss": result.loss_sum / max(result.steps, 1),
        "steps": result.steps,
        "images_per_s": result.images / max(result.seconds, 1e-9),
        **{k: scores[k] for k in ("pixel_acc", "mean_acc", "miou", "fwiou")},
    }
    run.history.append(record)
    is_best = scores["miou"] > run.best_miou
    run.best_miou = max(run.best_miou, scores["miou"])
    if run.rank != 0:
        return
    log.info("epoch %d: loss %.3f, val mIoU %.3f, pixel acc %.3f", epoch + 1, record["train_loss"], scores["miou"],
             scores["pixel_acc"])
    state = {"epoch": epoch, "best_miou": run.best_miou, "history": run.history, "train_config": _jsonable(run.config)}
    save_checkpoint(run.out / "last.pt", run.core, run.meta, optimizer=run.optimizer.state_dict(), **state)
    if is_best:
        save_checkpoint(run.out / "best.pt", run.core, run.meta, val_scores=scores, **state)
        run.best_scores = scores


def _finish(run: _Run) -> dict:
    """The metrics.json content; rank 0 writes it. Ends the process group under torchrun."""
    config = run.config
    result: dict[str, Any] = {
        "model": config.model, "data": config.data, "epochs_run": len(run.history), "history": run.history,
        "rank": run.rank,
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


def _jsonable(config: TrainConfig) -> dict:
    data = asdict(config)
    data["image_size"] = list(config.image_size)
    return data
