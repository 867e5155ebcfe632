"""Segmenter: BGR frames in, class masks out, for any model file EdgeSeg exports (.onnx or .engine).

It reads the ModelMeta stored with the model and builds its ProcessingPlan (edgeseg.runtime.plan), so it knows the
input size, normalisation, class names, palette and which pre/post-processing the graph already contains. Models
from other tools (no metadata, no sidecar) run too when `model_facts` says what their graph does not
(edgeseg.model_facts).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, Sequence, overload

import numpy as np

from edgeseg.config import ModelMeta
from edgeseg.errors import DataError
from edgeseg.model_facts import ModelFacts
from edgeseg.runtime.backends import Backend, open_backend
from edgeseg.runtime.plan import STAGES, ProcessingPlan, check_frame
from edgeseg.runtime.tta import TTA


class Segmenter:
    """Runs a segmentation model on BGR uint8 frames of any size.

    `predict` returns masks at the model's input resolution (one batched inference call per `max_batch` frames);
    `segment` returns one mask at the frame's own resolution. `stage_ms` holds the last call's stage timings.
    Both take `confidence=True` to also return each pixel's highest softmax probability as uint8 round(255 * p),
    computed in the argmax's own pass (models whose graph ends in argmax have none: ConfigError).
    Masks are always new arrays the caller owns, whatever the backend does with its own output buffers.
    A backend whose `frames_on_device` is True (TensorRT with edgeseg._C's CUDA kernels) runs the same plan on the
    GPU itself (`predict_frames`); other backends get numpy batches from the plan's CPU executor.
    With test-time augmentation (`tta=TTA(scales=(0.75, 1.0, 1.25), flip=True)`, edgeseg.runtime.tta) the plan
    runs the graph once per view and averages the probabilities; that path runs on the CPU executor for every backend.
    """

    def __init__(self, model: str | Path | Backend, *, backend: str = "auto", model_facts: ModelFacts | None = None,
                 tta: TTA | None = None, **backend_options) -> None:
        """`model_facts`: classes, input size, normalisation... for a model without EdgeSeg's metadata, or to
        override it (a warning is logged for each fact that differs). `tta`: test-time augmentation; ConfigError
        (naming `edgeseg export --dynamic`) when the graph cannot take its scales."""
        if isinstance(model, Backend):
            self.backend = model
        else:
            if model_facts:
                backend_options["model_facts"] = model_facts
            self.backend = open_backend(model, backend, **backend_options)
        self.meta: ModelMeta = self.backend.meta
        self.input_spec = self.backend.inputs[0]
        try:
            self.plan = ProcessingPlan.from_meta(self.meta, self.input_spec.dtype, tta=tta)
            # a TensorRT engine runs only inside its optimisation profile; ONNX Runtime takes any dynamic size
            profile = self.meta.dynamic_shapes if self.backend.name == "tensorrt" else None
            self.plan.check_tta_graph(self.input_spec.shape, profile)
        except Exception:
            self.backend.close()
            raise
        self.palette_bgr = self.plan.palette_bgr
        self.stage_ms: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._batch_buffer: np.ndarray | None = None  # reused while the batch size stays the same

    @property
    def max_batch(self) -> int | None:
        return self.backend.max_batch

    # ----- stages ------------------------------------------------------------------------------
    def preprocess(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames -> the graph's input batch, in the layout and dtype the graph takes (a buffer reused per size)."""
        shape = self.plan.input_shape(len(frames))
        if self._batch_buffer is None or self._batch_buffer.shape != shape:
            self._batch_buffer = np.empty(shape, dtype=self.plan.input_dtype)
        return self.plan.preprocess(frames, out=self._batch_buffer)

    def postprocess(self, output: np.ndarray, confidence: bool = False) -> list[Any]:
        """The graph's output batch -> uint8 masks at the model's input resolution (new arrays); with
        `confidence`, (mask, confidence) pairs."""
        return self.plan.postprocess(output, confidence=confidence)

    # ----- public API ---------------------------------------------------------------------------
    def predict(self, frames: Sequence[np.ndarray], *, confidence: bool = False) -> list[Any]:
        """Masks (uint8, model resolution) for a list of BGR frames, batched up to max_batch per call.

        With `confidence`, (mask, confidence) pairs, both uint8 at model resolution. The TensorRT device path
        computes masks only, so confidence requests take the host route (engine on the GPU, post-processing on the
        CPU kernels)."""
        if confidence:
            self.plan.check_confidence()
        if isinstance(frames, np.ndarray) and frames.ndim == 3:  # list() would split one frame into its rows
            raise DataError(f"predict takes a list of frames, got one {frames.shape} array: call predict([frame]) "
                            "or segment(frame)")
        frames = list(frames)
        if not frames:
            return []
        for index, frame in enumerate(frames):
            check_frame(frame, index)
        if not self.plan.tta.is_plain:
            if confidence:
                self.plan.check_confidence()  # refuses confidence with TTA
            return self._predict_tta(frames)
        if not confidence and getattr(self.backend, "frames_on_device", False):  # TensorRT + CUDA kernels
            masks = self.backend.predict_frames(frames)
            self.stage_ms = dict(self.backend.stage_ms)
            return masks
        limit = self.max_batch or len(frames)
        masks: list[np.ndarray] = []
        totals = dict.fromkeys(STAGES, 0.0)
        for start in range(0, len(frames), limit):
            chunk = frames[start : start + limit]
            t0 = time.perf_counter()
            batch = self.preprocess(chunk)
            t1 = time.perf_counter()
            output = self.backend.infer(batch)
            t2 = time.perf_counter()
            masks.extend(self.postprocess(output, confidence))
            t3 = time.perf_counter()
            totals["preprocess"] += (t1 - t0) * 1e3
            totals["infer"] += (t2 - t1) * 1e3
            totals["postprocess"] += (t3 - t2) * 1e3
        self.stage_ms = totals
        return masks

    def _predict_tta(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Masks averaged over the plan's TTA views, max_batch frames per inference call."""
        limit = self.max_batch or len(frames)
        totals = dict.fromkeys(STAGES, 0.0)
        masks: list[np.ndarray] = []
        for start in range(0, len(frames), limit):
            masks.extend(self.plan.predict_tta(frames[start : start + limit], self.backend.infer, totals))
        self.stage_ms = totals
        return masks

    @overload
    def segment(self, frame: np.ndarray, confidence: Literal[False] = False) -> np.ndarray: ...

    @overload
    def segment(self, frame: np.ndarray, confidence: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...

    def segment(self, frame: np.ndarray, confidence: bool = False) -> Any:
        """One frame -> uint8 mask at the frame's resolution; with `confidence`, (mask, confidence), the
        confidence uint8 round(255 * highest softmax probability), resized like the mask (nearest)."""
        if not confidence:
            mask = self.predict([frame])[0]
            return self.plan.mask_to_frame(mask, frame.shape[:2])
        mask, conf = self.predict([frame], confidence=True)[0]
        size = frame.shape[:2]
        return self.plan.mask_to_frame(mask, size), self.plan.confidence_to_frame(conf, size)

    def mask_to_frame(self, mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        return self.plan.mask_to_frame(mask, size_hw)

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """Mask -> BGR colour image at the mask's resolution."""
        return self.plan.colorize(mask)

    def overlay(self, frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """Blend the colorized mask over the frame, at the frame's resolution (the mask may be at model size)."""
        return self.plan.overlay(frame, mask, alpha)

    def render(self, frame: np.ndarray, mask: np.ndarray, outputs: Sequence[str], alpha: float = 0.5,
               confidence: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Several outputs for one frame by their cheapest route (ProcessingPlan.render)."""
        return self.plan.render(frame, mask, outputs, alpha, confidence=confidence)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
