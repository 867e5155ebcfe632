"""Segmenter: BGR frames in, class masks out, for any model file EdgeSeg exports (.onnx or .engine).

It reads the ModelMeta stored with the model, so it knows the input size, normalisation, class names, palette and
which pre/post-processing the graph already contains (uint8 input, in-graph argmax, low-resolution logits).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edgeseg.config import ModelMeta
from edgeseg.errors import DataError
from edgeseg.runtime import ops
from edgeseg.runtime.backends import Backend, open_backend


class Segmenter:
    """Runs a segmentation model on BGR uint8 frames of any size.

    `predict` returns masks at the model's input resolution (one batched inference call per `max_batch` frames);
    `segment` returns one mask at the frame's own resolution. `stage_ms` holds the last call's stage timings.
    A backend whose `frames_on_device` is True (TensorRT with edgeseg._C's CUDA kernels) runs the whole of
    `predict` itself, pre- and post-processing on the GPU (`predict_frames`); other backends get numpy batches.
    """

    def __init__(self, model: str | Path | Backend, *, backend: str = "auto", **backend_options) -> None:
        self.backend = model if isinstance(model, Backend) else open_backend(model, backend, **backend_options)
        self.meta: ModelMeta = self.backend.meta
        self.input_spec = self.backend.inputs[0]
        self.palette_bgr = np.ascontiguousarray(np.asarray(self.meta.palette, dtype=np.uint8)[:, ::-1])
        self.stage_ms: dict[str, float] = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
        self._batch_buffer: np.ndarray | None = None  # reused while the batch size stays the same

    @property
    def max_batch(self) -> int | None:
        return self.backend.max_batch

    # ----- stages ------------------------------------------------------------------------------
    def preprocess(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames -> the graph's input batch, in the layout and dtype the graph takes."""
        for index, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                got = getattr(frame, "shape", type(frame).__name__), getattr(frame, "dtype", "")
                raise DataError(f"frame {index} must be a BGR uint8 HxWx3 array, got {got}")
        height, width = self.meta.input_size
        if self.meta.input_format == "uint8_nhwc_bgr":  # the graph normalises; only resize here
            shape = (len(frames), height, width, 3)
        else:
            shape = (len(frames), 3, height, width)
        if self._batch_buffer is None or self._batch_buffer.shape != shape:
            self._batch_buffer = np.empty(shape, dtype=self.input_spec.dtype)
        batch = self._batch_buffer
        for index, frame in enumerate(frames):
            if self.meta.input_format == "uint8_nhwc_bgr":
                cv2.resize(frame, (width, height), dst=batch[index], interpolation=cv2.INTER_LINEAR)
            else:
                ops.preprocess(
                    frame, (height, width), self.meta.mean, self.meta.std, dtype=batch.dtype, out=batch[index : index + 1]
                )
        return batch

    def postprocess(self, output: np.ndarray) -> list[np.ndarray]:
        """The graph's output batch -> uint8 masks at the model's input resolution."""
        if self.meta.output_format == "classmap":
            return [np.ascontiguousarray(one, dtype=np.uint8) for one in output]
        if self.meta.output_stride > 1:
            return [
                ops.upsample_argmax(np.ascontiguousarray(one), self.meta.input_size, self.meta.output_stride)
                for one in output
            ]
        return [ops.argmax(np.ascontiguousarray(one)) for one in output]

    # ----- public API ---------------------------------------------------------------------------
    def predict(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Masks (uint8, model resolution) for a list of BGR frames, batched up to max_batch per call."""
        frames = list(frames)
        if not frames:
            return []
        if getattr(self.backend, "frames_on_device", False):  # TensorRT + CUDA kernels: frames stay on the GPU
            masks = self.backend.predict_frames(frames)
            self.stage_ms = dict(self.backend.stage_ms)
            return masks
        limit = self.max_batch or len(frames)
        masks: list[np.ndarray] = []
        totals = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
        for start in range(0, len(frames), limit):
            chunk = frames[start : start + limit]
            t0 = time.perf_counter()
            batch = self.preprocess(chunk)
            t1 = time.perf_counter()
            output = self.backend.infer(batch)
            t2 = time.perf_counter()
            masks.extend(self.postprocess(output))
            t3 = time.perf_counter()
            totals["preprocess"] += (t1 - t0) * 1e3
            totals["infer"] += (t2 - t1) * 1e3
            totals["postprocess"] += (t3 - t2) * 1e3
        self.stage_ms = totals
        return masks

    def segment(self, frame: np.ndarray) -> np.ndarray:
        """One frame -> uint8 mask at the frame's resolution."""
        mask = self.predict([frame])[0]
        return self.mask_to_frame(mask, frame.shape[:2])

    def mask_to_frame(self, mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        height, width = int(size_hw[0]), int(size_hw[1])
        if mask.shape == (height, width):
            return mask
        return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """Mask -> BGR colour image at the mask's resolution."""
        return ops.colorize(mask, self.palette_bgr)

    def overlay(self, frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """Blend the colorized mask over the frame, at the frame's resolution."""
        return ops.overlay(frame, mask, self.palette_bgr, alpha)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
