"""The learning-rate schedule: linear warm-up times poly decay, with a time budget counted as progress.

lr(step) = base * warmup(step) * (1 - progress) ** power, where
- warmup(step) = min(1, (step + 1) / warmup_steps)  (1 when warmup_steps is 0): the first steps of a model trained
  from scratch (AdamW, fresh BatchNorm statistics) are the ones that diverge at the full rate;
- progress = step / total_steps, or with a time budget (--max-minutes) max(step / total_steps, elapsed / budget):
  a run that the budget will stop at epoch 12 of 60 still decays to ~0 instead of stopping at 80 % of its rate.
  Progress is capped at (total_steps - 1) / total_steps so the last step never trains at exactly 0.

No torch: plain arithmetic, tested by hand.
"""

from __future__ import annotations


def lr_at(base_lr: float, step: int, total_steps: int, power: float, *, warmup_steps: int = 0,
          elapsed_s: float | None = None, budget_s: float | None = None) -> float:
    """The learning rate of 0-based `step` of `total_steps` (see the module for the formula)."""
    progress = step / total_steps
    if budget_s is not None and elapsed_s is not None:
        progress = max(progress, elapsed_s / budget_s)
    progress = min(progress, (total_steps - 1) / total_steps)
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return base_lr * warmup * (1.0 - progress) ** power
