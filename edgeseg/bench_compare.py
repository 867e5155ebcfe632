"""End-to-end comparison on one video: what users write today vs EdgeSeg's runtime, in one run on one machine.

Contenders (each reads the same video from disk and writes an overlay MP4, one frame at a time unless stated):
- naive_torch: PyTorch eager FP32 + numpy/OpenCV pre/post (the usual hand-written loop);
- naive_ort: ONNX Runtime with default session settings + the same numpy/OpenCV pre/post;
- edgeseg_*: `edgeseg run`'s pipeline (threads, C++ kernels) on each exported variant.
Only `naive_torch` imports torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edgeseg._optional import require
from edgeseg.bench import latency_summary
from edgeseg.config import ModelMeta
from edgeseg.errors import DataError
from edgeseg.files import write_with


def naive_preprocess(frame: np.ndarray, meta: ModelMeta) -> np.ndarray:
    height, width = meta.input_size
    rgb = cv2.cvtColor(cv2.resize(frame, (width, height)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return ((rgb - np.array(meta.mean, np.float32)) / np.array(meta.std, np.float32)).transpose(2, 0, 1)[None].copy()


def naive_postprocess(logits: np.ndarray, frame: np.ndarray, meta: ModelMeta, alpha: float) -> np.ndarray:
    mask = logits[0].argmax(0).astype(np.uint8)
    mask = cv2.resize(mask, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
    colours = np.asarray(meta.palette, np.uint8)[:, ::-1][mask]
    return (frame.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).round().astype(np.uint8)


def run_naive(
    infer: Callable[[np.ndarray], np.ndarray], meta: ModelMeta, video: str | Path, out: str | Path,
    *, alpha: float = 0.5, max_frames: int | None = None,
) -> dict[str, Any]:
    """The sequential loop: read -> preprocess -> infer -> postprocess -> write, timing every stage."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise DataError(f"cannot open video {video}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    stages: dict[str, list[float]] = {k: [] for k in ("decode", "preprocess", "infer", "postprocess", "write", "frame")}
    frames = 0
    started = time.perf_counter()
    while max_frames is None or frames < max_frames:
        t0 = time.perf_counter()
        ok, frame = capture.read()
        if not ok:
            break
        t1 = time.perf_counter()
        batch = naive_preprocess(frame, meta)
        t2 = time.perf_counter()
        logits = infer(batch)
        t3 = time.perf_counter()
        blended = naive_postprocess(logits, frame, meta, alpha)
        t4 = time.perf_counter()
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
        writer.write(blended)
        t5 = time.perf_counter()
        for name, ms in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
            stages[name].append(ms * 1e3)
        frames += 1
    wall = time.perf_counter() - started
    capture.release()
    if writer is not None:
        writer.release()
    if frames == 0:
        raise DataError(f"no readable frames in {video}")
    return {
        "frames": frames,
        "wall_s": wall,
        "fps_end_to_end": frames / wall,
        "stages": {name: latency_summary(values) for name, values in stages.items()},
    }


def torch_infer(ckpt: str | Path) -> tuple[Callable[[np.ndarray], np.ndarray], ModelMeta]:
    """PyTorch eager FP32, as users run it: model(torch.from_numpy(x)) under no_grad."""
    import torch

    from edgeseg.training.checkpoint import load_model

    model, meta = load_model(ckpt)

    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return infer, meta


def ort_default_infer(onnx_path: str | Path) -> tuple[Callable[[np.ndarray], np.ndarray], ModelMeta]:
    """ONNX Runtime with default session settings."""
    import onnxruntime as ort

    from edgeseg.config import META_KEY

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = ModelMeta.from_json(session.get_modelmeta().custom_metadata_map[META_KEY])
    name = session.get_inputs()[0].name

    def infer(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch})[0]

    return infer, meta


def run_edgeseg(model_path: str | Path, video: str | Path, out: str | Path, *, alpha: float = 0.5,
                max_frames: int | None = None) -> dict[str, Any]:
    """EdgeSeg's streaming runtime, mode 'all' (every frame), as `edgeseg run` does it."""
    from edgeseg.pipeline import run_stream
    from edgeseg.runtime.segmenter import Segmenter

    with Segmenter(model_path) as segmenter:
        started = time.perf_counter()
        stats = run_stream(segmenter, [str(video)], out, alpha=alpha, max_frames=max_frames)
        wall = time.perf_counter() - started
        precision = segmenter.meta.precision
        lowres = segmenter.meta.output_stride > 1
    result = stats.to_dict()
    return {
        "frames": stats.processed,
        "wall_s": wall,
        "fps_end_to_end": stats.processed / wall,
        "precision": precision,
        "lowres_upsample_argmax": lowres,
        "stages": result.get("stages", {}),
        "stats": {k: result[k] for k in ("read", "processed", "dropped", "unreadable") if k in result},
    }


def compare_chart(result: dict, path: Path) -> Path:
    """Horizontal bars of end-to-end FPS per contender, labelled with the ratio to naive PyTorch (PNG at `path`)."""
    require("matplotlib", "the end-to-end comparison chart")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    names = list(result["contenders"])
    fps = [result["contenders"][n]["fps_end_to_end"] for n in names]
    fig, ax = plt.subplots(figsize=(9, 4))
    bars = ax.barh(names, fps, color=["#999999" if n.startswith("naive") else "#76b900" for n in names])
    for bar, value, name in zip(bars, fps, names):
        ratio = result["contenders"][name]["ratio_to_naive_torch"]
        ax.text(value, bar.get_y() + bar.get_height() / 2, f" {value:.1f} FPS ({ratio:.2f}x)", va="center")
    ax.set_xlabel("end-to-end FPS (decode -> segment -> overlay -> MP4), higher is better")
    ax.set_title(f"{result['model']} on {Path(result['video']).name}, {result['device']['cpu']}", fontsize=9)
    ax.set_xlim(0, max(fps) * 1.35)
    fig.tight_layout()
    try:
        return write_with(path, lambda handle: fig.savefig(handle, format="png", dpi=120), suffix=".png")
    finally:
        plt.close(fig)
