"""The training loop: SGD or AdamW with the poly schedule, optional class weights, AMP on CUDA, DDP via torchrun.

`train(TrainConfig(...))` writes OUT/best.pt (highest val mIoU), OUT/last.pt (for --resume) and OUT/metrics.json.
Under `torchrun --nproc_per_node N` the same call runs DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import json
import logging
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

from edgeseg.config import IGNORE_INDEX, ModelMeta, make_meta
from edgeseg.data import open_dataset
from edgeseg.errors import ConfigError
from edgeseg.metrics import MetricAccumulator
from edgeseg.models import build_model
from edgeseg.training.checkpoint import read_checkpoint, save_checkpoint
from edgeseg.training.torch_data import TorchSegmentationDataset

log = logging.getLogger(__name__)


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


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, loader: DataLoader, meta: ModelMeta, device: torch.device) -> dict:
    """Metrics of `model` over a loader of (normalised images, labels); the labels' resolution is used."""
    model.eval()
    accumulator = MetricAccumulator(meta.classes, IGNORE_INDEX)
    for images, labels in loader:
        logits = model(images.to(device, non_blocking=True))
        accumulator.update(labels.numpy(), logits.argmax(1).cpu().numpy().astype(np.uint8))
    return accumulator.scores().to_dict()


def train(config: TrainConfig) -> dict:
    """Train, evaluate every epoch, keep best/last checkpoints. Returns the metrics.json content."""
    rank, world, local_rank = _distributed()
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed + rank)
    out = Path(config.out)
    height, width = config.image_size
    if height < 16 or width < 16:
        raise ConfigError(f"--image-size must be at least 16x16, got {height}x{width}")

    data_kwargs: dict[str, Any] = {"synthetic_size": (height, width)}
    if config.synthetic_count:
        data_kwargs["synthetic_count"] = config.synthetic_count
    train_set = open_dataset(config.data, "train", **data_kwargs)
    val_set = open_dataset(config.data, "val", **data_kwargs)
    info = train_set.info

    start_epoch, best_miou, history = 0, -1.0, []
    resume_state = None
    if config.resume:
        resume_state = read_checkpoint(out / "last.pt")
        if resume_state["meta"]["model_name"] != config.model:
            raise ConfigError(f"--resume: {out / 'last.pt'} holds {resume_state['meta']['model_name']}, not {config.model}")
    meta = make_meta(config.model, info.classes, (height, width), palette=info.palette)

    model = build_model(config.model, num_classes=meta.num_classes, pretrained_backbone=config.pretrained_backbone)
    if resume_state is not None:
        model.load_state_dict(resume_state["state_dict"])
        start_epoch = int(resume_state["epoch"]) + 1
        best_miou = float(resume_state.get("best_miou", -1.0))
        history = list(resume_state.get("history", []))
    model.to(device)
    core = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)

    train_torch = TorchSegmentationDataset(train_set, (height, width), meta.mean, meta.std, train=True, seed=config.seed)
    val_torch = TorchSegmentationDataset(val_set, (height, width), meta.mean, meta.std, train=False)
    sampler = DistributedSampler(train_torch, seed=config.seed) if world > 1 else None
    loader_args = {"num_workers": config.workers, "pin_memory": device.type == "cuda", "persistent_workers": config.workers > 0}
    train_loader = DataLoader(
        train_torch, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True, **loader_args
    )
    if len(train_loader) == 0:
        raise ConfigError(f"{len(train_set)} training images give no full batch of {config.batch_size}; lower --batch-size")
    val_loader = DataLoader(val_torch, batch_size=config.batch_size, **loader_args)

    weights = median_frequency_weights(train_set, meta.num_classes).to(device) if config.class_weights == "auto" else None
    criterion = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE_INDEX)
    if config.optimizer == "sgd":
        base_lr = config.lr or 0.01
        optimizer = torch.optim.SGD(model.parameters(), lr=base_lr, momentum=config.momentum, weight_decay=config.weight_decay)
    elif config.optimizer == "adamw":
        base_lr = config.lr or 1e-3
        optimizer = torch.optim.AdamW(model.parameters(), lr=base_lr, weight_decay=config.weight_decay)
    else:
        raise ConfigError(f"--optimizer must be sgd or adamw, got {config.optimizer!r}")
    if resume_state is not None and "optimizer" in resume_state:
        optimizer.load_state_dict(resume_state["optimizer"])
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    total_steps = config.epochs * len(train_loader)
    step = start_epoch * len(train_loader)
    train_started = time.perf_counter()
    best_scores: dict | None = None
    for epoch in range(start_epoch, config.epochs):
        model.train()
        train_torch.epoch = epoch
        if sampler is not None:
            sampler.set_epoch(epoch)
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=rank != 0, unit="batch", leave=False)
        epoch_start, seen, loss_sum, steps_run, out_of_time = time.perf_counter(), 0, 0.0, 0, False
        for images, labels in bar:
            for group in optimizer.param_groups:
                group["lr"] = _poly_lr(base_lr, step, total_steps, config.poly_power)
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=use_amp):
                loss = criterion(model(images), labels)
            if not torch.isfinite(loss):
                raise ConfigError(f"loss became {loss.item()} at epoch {epoch + 1}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            steps_run += 1
            seen += images.shape[0] * world
            loss_sum += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{seen / (time.perf_counter() - epoch_start):.1f}")
            out_of_time = config.max_minutes is not None and (time.perf_counter() - train_started) / 60 > config.max_minutes
            if out_of_time:  # the time budget ends the epoch early; it is still evaluated and saved
                break
        bar.close()
        scores = evaluate_model(core, val_loader, meta, device)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(steps_run, 1),
            "steps": steps_run,
            "images_per_s": seen / (time.perf_counter() - epoch_start),
            **{k: scores[k] for k in ("pixel_acc", "mean_acc", "miou", "fwiou")},
        }
        history.append(record)
        is_best = scores["miou"] > best_miou
        best_miou = max(best_miou, scores["miou"])
        if rank == 0:
            log.info(
                "epoch %d: loss %.3f, val mIoU %.3f, pixel acc %.3f", epoch + 1, record["train_loss"], scores["miou"], scores["pixel_acc"]
            )
            state = {"epoch": epoch, "best_miou": best_miou, "history": history, "train_config": _jsonable(config)}
            save_checkpoint(out / "last.pt", core, meta, optimizer=optimizer.state_dict(), **state)
            if is_best:
                save_checkpoint(out / "best.pt", core, meta, val_scores=scores, **state)
                best_scores = scores
        if out_of_time:
            log.info("stopping after epoch %d: --max-minutes %.1f reached", epoch + 1, config.max_minutes)
            break

    result: dict[str, Any] = {
        "model": config.model, "data": config.data, "epochs_run": len(history), "history": history, "rank": rank,
    }
    if rank == 0:
        if best_scores is None and (out / "best.pt").is_file():  # resumed and never beat the stored best
            best_scores = read_checkpoint(out / "best.pt").get("val_scores", {})
        result["best"] = best_scores or {}
        result["train_seconds"] = time.perf_counter() - train_started
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
    if world > 1:
        dist.destroy_process_group()
    return result


def _jsonable(config: TrainConfig) -> dict:
    data = asdict(config)
    data["image_size"] = list(config.image_size)
    return data
