"""The frames the export steps feed their graphs, preprocessed by the runtime's own ProcessingPlan.

- `calibration_batches`: INT8 calibration frames (a folder, a video or arrays; read by edgeseg.data.frame_files);
- `sample_batch`: the real-looking parity input of onnx_from_torch (a given frame or a synthetic street scene).

Both go through `ProcessingPlan.from_meta(meta).preprocess`, so calibration ranges and parity checks see exactly
the inputs the runtime will give the graph (same resize, channel order and normalisation).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from edgeseg.config import ModelMeta
from edgeseg.data.frame_files import iter_frames
from edgeseg.runtime.plan import ProcessingPlan

log = logging.getLogger(__name__)

_MIN_SYNTHETIC_SIZE = 32  # edgeseg.data.scenes draws scenes of at least 32x32


def float_plan(meta: ModelMeta) -> ProcessingPlan:
    """The plan of the float32 NCHW graph every precision starts from (before --uint8-input / --fp16-io)."""
    return ProcessingPlan.from_meta(meta.replace(input_format="float_nchw_rgb"), np.float32)


def calibration_batches(source: Any, meta: ModelMeta, num_frames: int, progress: bool = False) -> list[np.ndarray]:
    """Up to `num_frames` (1, 3, H, W) float32 batches at meta.input_size; DataError when no frame is readable,
    a logged WARNING when fewer than `num_frames` are."""
    from tqdm import tqdm

    plan = float_plan(meta)
    frames = iter_frames(source, limit=num_frames)
    batches = [plan.preprocess([frame]) for frame in tqdm(frames, total=num_frames, desc="INT8 calibration frames",
                                                          unit="frame", disable=not progress)]
    if len(batches) < num_frames:
        # Not an error (a short clip may be all there is), but activation ranges from a few frames clip whatever
        # those frames did not show, and the INT8 model loses accuracy on real input: say so loudly.
        log.warning("INT8 calibration found only %d usable frame(s) in %s, fewer than the %d asked "
                    "(--calib-frames): the activation ranges rest on those alone and INT8 accuracy may suffer; "
                    "give more frames (a larger folder or a longer video)", len(batches), _describe(source),
                    num_frames)
    return batches


def _describe(source: Any) -> str:
    """The calibration source for a message: its path, or what kind of object it is."""
    return str(source) if isinstance(source, (str, os.PathLike)) else f"the given {type(source).__name__}"


def sample_batch(meta: ModelMeta, batch: int, frame: np.ndarray | None = None) -> np.ndarray:
    """(batch, 3, H, W) float32 from `frame` (BGR uint8) or, without one, a synthetic street scene."""
    if frame is None:
        from edgeseg.data import synthetic_frames

        height, width = (max(v, _MIN_SYNTHETIC_SIZE) for v in meta.input_size)
        frame = next(synthetic_frames(1, (height, width), seed=0))  # BGR, like a camera frame
    return float_plan(meta).preprocess([frame] * batch)
