"""How close two models' outputs are: max abs error on logits and argmax (class map) agreement."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class ParityCheck:
    """One input compared: its name, shape, the max abs difference and the fraction of pixels with the same class."""

    name: str
    shape: tuple[int, ...]
    max_abs_err: float
    argmax_agreement: float


@dataclass
class ParityReport:
    """Reference vs candidate over several inputs; `max_abs_err` and `argmax_agreement` are the worst cases."""

    checks: list[ParityCheck] = field(default_factory=list)

    @property
    def max_abs_err(self) -> float:
        return max((c.max_abs_err for c in self.checks), default=float("nan"))

    @property
    def argmax_agreement(self) -> float:
        return min((c.argmax_agreement for c in self.checks), default=float("nan"))

    def add(self, name: str, reference: np.ndarray, candidate: np.ndarray) -> ParityCheck:
        check = ParityCheck(name, tuple(reference.shape), *compare(reference, candidate))
        self.checks.append(check)
        return check

    def to_dict(self) -> dict:
        return {
            "max_abs_err": self.max_abs_err,
            "argmax_agreement": self.argmax_agreement,
            "checks": [asdict(c) for c in self.checks],
        }

    def summary(self) -> str:
        return f"max abs error {self.max_abs_err:.3g}, argmax agreement {100 * self.argmax_agreement:.3f}%"


def compare(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(max abs error, argmax agreement over axis 1) of two (N, C, H, W) logit arrays."""
    reference = np.asarray(reference, np.float32)
    candidate = np.asarray(candidate, np.float32)
    if reference.shape != candidate.shape:
        raise ValueError(f"outputs differ in shape: {reference.shape} vs {candidate.shape}")
    err = float(np.max(np.abs(reference - candidate))) if reference.size else 0.0
    agree = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
    return err, agree
