"""Segmentation losses: cross-entropy with optional label smoothing and online hard example mining (OHEM).

One per-pixel loss, then a choice of pixels, then a weighted mean:

- per pixel: l_i = (1 - eps) * (-log p_i[y_i]) + eps * mean_c(-log p_i[c])   (eps = label smoothing; 0 = plain CE)
- OHEM (Shrivastava et al.; the pixel version of PSPNet/BiSeNet/mmseg): keep the pixels whose loss is above a
  threshold, but never fewer than the `min_kept` hardest per image; without a threshold, exactly the hardest
  `min_kept` per image ("top-K"). Ranking uses the unweighted loss, so class weights change how much a kept pixel
  counts, not which pixels are hard.
- the mean: sum_i w[y_i] l_i / sum_i w[y_i] over the kept pixels (w = class weights, e.g. the trainer's
  median_frequency_weights; all 1 without them). This is torch's CrossEntropyLoss(weight=..., reduction='mean')
  when eps = 0 and every pixel is kept. With eps > 0 and class weights, torch weights the smoothing term per class
  c instead of by the pixel's own class; here the pixel's weight scales its whole loss.

Pixels labelled `ignore_index` never count and are never kept. A batch with no valid pixel gives a zero loss that
still has a graph (instead of torch's NaN), so one all-void crop does not stop training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from edgeseg.config import IGNORE_INDEX
from edgeseg.errors import ConfigError

LOSSES = ("ce", "ohem")


def pixel_losses(logits: torch.Tensor, target: torch.Tensor, *, label_smoothing: float = 0.0,
                 ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss per pixel, N x H x W, float32; valid mask, N x H x W bool). Ignored pixels have loss 0."""
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ConfigError(f"logits must be N x C x H x W and target N x H x W, got {tuple(logits.shape)} and "
                          f"{tuple(target.shape)}")
    log_probs = F.log_softmax(logits.float(), dim=1)  # fp32 even under autocast: bf16 logs lose the hard pixels
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    losses = -log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * log_probs.mean(dim=1)
    return losses * valid, valid


def ohem_mask(losses: torch.Tensor, valid: torch.Tensor, *, threshold: float | None, min_kept: int) -> torch.Tensor:
    """The pixels OHEM keeps (N x H x W bool): valid pixels with loss > threshold, topped up to the hardest
    min(min_kept * N, valid pixels); with threshold None, exactly the hardest min(min_kept * N, valid pixels)."""
    flat = torch.where(valid, losses.detach(), torch.full_like(losses, -math.inf)).flatten()
    n_valid = int(valid.sum())
    n_keep = min(int(min_kept) * losses.shape[0], n_valid)
    if threshold is not None:
        n_keep = max(n_keep, int((flat > threshold).sum()))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    if n_keep:
        keep[torch.topk(flat, n_keep, sorted=False).indices] = True
    return keep.view_as(valid)


class SegmentationLoss(torch.nn.Module):
    """Cross-entropy for N x C x H x W logits and N x H x W targets, with label smoothing and OHEM (see the module).

    `ohem_min_kept` None means no OHEM (every valid pixel counts). `ohem_threshold` is a loss in nats: a pixel is
    hard when -log p(true class) exceeds it (mmseg's probability threshold 0.7 is 0.357 nats: `prob_threshold`)."""

    def __init__(self, weight: torch.Tensor | None = None, *, ignore_index: int = IGNORE_INDEX,
                 label_smoothing: float = 0.0, ohem_threshold: float | None = None,
                 ohem_min_kept: int | None = None) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
        if ohem_min_kept is not None and ohem_min_kept < 1:
            raise ConfigError(f"--ohem-min-kept must be >= 1 pixel per image, got {ohem_min_kept}")
        if ohem_threshold is not None and not (math.isfinite(ohem_threshold) and ohem_threshold >= 0):
            raise ConfigError(f"--ohem-threshold must be a loss >= 0, got {ohem_threshold}")
        if ohem_threshold is not None and ohem_min_kept is None:
            raise ConfigError("--ohem-threshold needs --ohem-min-kept (OHEM keeps at least that many pixels)")
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.ignore_index = ignore_index
        self.label_smoothing = float(label_smoothing)
        self.ohem_threshold = ohem_threshold
        self.ohem_min_kept = ohem_min_kept

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses, valid = pixel_losses(logits, target, label_smoothing=self.label_smoothing,
                                     ignore_index=self.ignore_index)
        keep = valid
        if self.ohem_min_kept is not None:
            keep = ohem_mask(losses, valid, threshold=self.ohem_threshold, min_kept=self.ohem_min_kept)
        if self.weight is None:
            pixel_weight = keep.float()
        else:
            safe = torch.where(valid, target, torch.zeros_like(target)).long()
            pixel_weight = self.weight[safe] * keep
        total = pixel_weight.sum()
        if not total > 0:
            return logits.sum() * 0.0  # no valid pixel: zero loss, zero gradient, no NaN
        return (losses * pixel_weight).sum() / total

    def extra_repr(self) -> str:
        return (f"label_smoothing={self.label_smoothing}, ohem_threshold={self.ohem_threshold}, "
                f"ohem_min_kept={self.ohem_min_kept}, weighted={self.weight is not None}")


def prob_threshold(probability: float) -> float:
    """The loss threshold that marks a pixel hard when its true class gets less than `probability`."""
    if not 0.0 < probability <= 1.0:
        raise ConfigError(f"an OHEM probability threshold must be in (0, 1], got {probability}")
    return -math.log(probability)


def build_loss(name: str = "ce", *, weight: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX,
               label_smoothing: float = 0.0, ohem_threshold: float | None = None,
               ohem_min_kept: int | None = None) -> SegmentationLoss:
    """The loss for --loss NAME: 'ce' (every valid pixel) or 'ohem' (needs --ohem-min-kept)."""
    if name not in LOSSES:
        raise ConfigError(f"--loss must be one of {LOSSES}, got {name!r}")
    if name == "ohem" and ohem_min_kept is None:
        raise ConfigError("--loss ohem needs --ohem-min-kept (the fewest pixels kept per image)")
    if name == "ce":
        ohem_threshold = ohem_min_kept = None
    return SegmentationLoss(weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                            ohem_threshold=ohem_threshold, ohem_min_kept=ohem_min_kept)
