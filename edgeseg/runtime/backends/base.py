"""The runner contract every inference backend follows (template method, as in Polygraphy's BaseRunner).

The public `infer()` owns validation, timing and the "is it open" guard; a backend writes `_load_impl`,
`_infer_impl` and `_close_impl` only. Backends are context managers that free their resources on exit.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.config import ModelMeta
from edgeseg.errors import ConfigError, EdgeSegError, ModelFileError
from edgeseg.model_facts import GraphFacts, ModelFacts, resolve_meta


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (-1 for a dynamic axis) and numpy dtype of one graph input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def accepts(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and all(s in (-1, d) for s, d in zip(self.shape, shape))


class Backend(ABC):
    """Loads one model file and runs it on NCHW/NHWC numpy batches.

    `infer` returns the graph's first output as a numpy array. Who owns it is part of the contract, stated by
    `output_reused`:
    - False (the default): the array belongs to the caller; later calls and close() never touch it.
    - True: the array is a view of a buffer the backend reuses; it is valid until the next `infer` on this backend
      (which overwrites it) and must be copied to be kept. Its memory is never freed under the view, so reading it
      late is stale, never a use-after-free. `infer_owned` gives a caller-owned array either way.
    """

    name: str = "base"
    output_reused: bool = False

    def __init__(self, path: str | Path, model_facts: ModelFacts | None = None) -> None:
        """`model_facts`: what the user says about the model (--classes, --input-size, ...), for files that lack
        EdgeSeg's metadata or to override it (edgeseg.model_facts)."""
        self.path = Path(path)
        self.model_facts = model_facts or ModelFacts()
        self.meta: ModelMeta
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.last_infer_ms: float = float("nan")
        self._open = False
        self._load_impl()
        self._open = True

    # ----- what each backend writes -------------------------------------------------------------
    @abstractmethod
    def _load_impl(self) -> None:
        """Load the model; set self.meta, self.inputs and self.outputs; raise ModelFileError on a bad file."""

    def _resolve_meta(self, stored: ModelMeta | None, missing_what: str) -> ModelMeta:
        """The ModelMeta to run with, once self.inputs/outputs are set: the stored one checked against the graph
        (class count = output channels), completed or overridden by self.model_facts (edgeseg.model_facts)."""
        if not self.inputs or not self.outputs:
            raise ModelFileError(f"{self.path.name} has {len(self.inputs)} inputs and {len(self.outputs)} outputs; "
                                 "EdgeSeg runs graphs with an image input and a logits or class-map output")
        inp, out = self.inputs[0], self.outputs[0]
        graph = GraphFacts.read(self.path.name, inp.shape, inp.dtype, out.shape, out.dtype, self.model_facts.layout)
        return resolve_meta(self.path.name, stored, self.model_facts, graph, missing_what)

    @abstractmethod
    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch already checked against self.inputs[0]."""

    def _close_impl(self) -> None:
        """Free backend resources (GPU memory, sessions)."""

    # ----- owned by the base class --------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        if not self._open:
            raise EdgeSegError(f"{self.name} backend for {self.path} is closed")
        spec = self.inputs[0]
        if batch.dtype != spec.dtype:
            raise ConfigError(f"input '{spec.name}' of {self.path.name} takes {spec.dtype}, got {batch.dtype}")
        if not spec.accepts(tuple(batch.shape)):
            raise ConfigError(
                f"input '{spec.name}' of {self.path.name} takes shape {spec.shape} (-1 = any), got {batch.shape}"
            )
        start = time.perf_counter()
        result = self._infer_impl(np.ascontiguousarray(batch))
        self.last_infer_ms = (time.perf_counter() - start) * 1e3
        return result

    def infer_owned(self, batch: np.ndarray) -> np.ndarray:
        """`infer`, with a result the caller owns whatever `output_reused` says (copied only when needed)."""
        result = self.infer(batch)
        return np.array(result, copy=True) if self.output_reused else result

    @property
    def max_batch(self) -> int | None:
        """Largest batch the model accepts: its static batch, else the batch range it was exported for (the
        recorded dynamic shapes, an engine's profile), else None (a dynamic batch axis with no recorded bound)."""
        first = self.inputs[0].shape[0]
        if first != -1:
            return first
        shapes = self.meta.dynamic_shapes if hasattr(self, "meta") else None
        return int(shapes[2][0]) if shapes else None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "path": str(self.path),
            "output_reused": self.output_reused,
            "inputs": [(s.name, s.shape, str(s.dtype)) for s in self.inputs],
            "outputs": [(s.name, s.shape, str(s.dtype)) for s in self.outputs],
        }

    def close(self) -> None:
        if self._open:
            self._open = False
            self._close_impl()

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
