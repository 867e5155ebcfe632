"""Latency benchmarking of a Segmenter: warm-up, a time-bounded run, p50/p90/p99 per stage and FPS (no torch)."""

from __future__ import annotations

import os
import platform
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np


def latency_summary(samples_ms: Sequence[float]) -> dict[str, Any]:
    """The one latency summary (bench, pipeline stats, kernel benchmarks): count, p50/p90/p99/mean/max in ms and
    the FPS of the median, keys carrying their units. An empty sample says 'skipped' instead of reporting zeros."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return {"count": 0, "skipped": True}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "count": int(values.size),
        "latency_ms_p50": float(p50),
        "latency_ms_p90": float(p90),
        "latency_ms_p99": float(p99),
        "latency_ms_mean": float(values.mean()),
        "latency_ms_max": float(values.max()),
        "fps_at_p50": float(1e3 / p50) if p50 > 0 else float("inf"),
    }


def time_loop(
    step: Callable[[int], dict[str, float] | None],
    *,
    warmup: int = 5,
    min_seconds: float = 2.0,
    min_iters: int = 20,
    max_iters: int = 100_000,
    prepare: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Call step(i) after `warmup` calls until both min_seconds and min_iters are reached.

    step may return its own per-stage ms; the whole call is always recorded as 'frame'. `prepare(i)`, when given,
    runs before each step(i), untimed (fetching the next frame of a FrameStream).
    """
    prepare = prepare or (lambda index: None)
    for index in range(warmup):
        prepare(index)
        step(index)
    samples: dict[str, list[float]] = {"frame": []}
    started = time.perf_counter()
    index = 0
    while index < max_iters and (index < min_iters or time.perf_counter() - started < min_seconds):
        prepare(index)
        t0 = time.perf_counter()
        stages = step(index) or {}
        samples["frame"].append((time.perf_counter() - t0) * 1e3)
        for name, ms in stages.items():
            samples.setdefault(name, []).append(ms)
        index += 1
    return samples


class FrameStream(Sequence[np.ndarray]):
    """`count` frames to cycle through, made on demand by `open_frames()` (a fresh iterator from the first frame):
    the first ones that fit in `keep_bytes` are kept, the others are made again on each pass. So `bench --frames
    20000` holds at most `keep_bytes` of frames instead of rendering all of them up front. A source with fewer than
    `count` frames cycles over the ones it has."""

    def __init__(self, open_frames: Callable[[], Iterator[np.ndarray]], count: int, keep_bytes: int = 512 << 20
                 ) -> None:
        self._open, self._count, self._keep_bytes = open_frames, int(count), keep_bytes
        self._kept: list[np.ndarray] = []
        self._iterator: Iterator[np.ndarray] | None = None
        self._position = 0  # index of the frame self._iterator yields next

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        index = int(index) % self._count
        if index < len(self._kept):
            return self._kept[index]
        if self._iterator is None or index < self._position:
            self._iterator, self._position = iter(self._open()), 0
        while True:
            frame = next(self._iterator, None)
            if frame is None:  # fewer frames than asked for: cycle over those there are
                if self._position == 0:
                    from edgeseg.errors import DataError

                    raise DataError("the frame source gave no frames")
                self._count = self._position
                return self[index]
            if self._position == len(self._kept) and (len(self._kept) + 1) * frame.nbytes <= self._keep_bytes:
                self._kept.append(frame)
            self._position += 1
            if self._position > index:
                return frame


def benchmark_segmenter(segmenter: Any, frames: Sequence[np.ndarray], **loop_options: Any) -> dict[str, Any]:
    """Per-stage and whole-frame latency of segmenter.predict([frame]) cycling over `frames` (a list, or a
    FrameStream whose frames are fetched outside the timed call)."""
    current: list[np.ndarray] = []

    def prepare(index: int) -> None:
        current[:] = [frames[index % len(frames)]]

    def step(index: int) -> dict[str, float]:
        segmenter.predict(current)
        return dict(segmenter.stage_ms)

    samples = time_loop(step, prepare=prepare, **loop_options)
    stages = {name: latency_summary(values) for name, values in samples.items()}
    return {
        "model": str(getattr(segmenter.backend, "path", "")),
        "backend": segmenter.backend.name,
        "precision": segmenter.meta.precision,
        "input_size": list(segmenter.meta.input_size),
        "frame_size": list(frames[0].shape[:2]),
        "stages": stages,
        "fps": stages["frame"]["fps_at_p50"],
    }


def device_info() -> dict[str, Any]:
    """The machine and library versions a result was measured with."""
    import cv2

    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": _cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    # the other libraries a result depends on, from pip's records (importing TensorRT to ask it would take seconds)
    for key, module, dists in _VERSIONED:
        version = _installed_version(module, dists)
        if version:
            info[key] = version
    info["gpus"] = _gpu_names()
    if hasattr(os, "getloadavg"):  # other work on the machine while it was measured inflates every latency
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    return info


# (key in device_info, module, distributions to ask first): the `cuda` namespace is shared by several distributions
_VERSIONED = (
    ("edgeseg", "edgeseg", ("edgeseg",)),
    ("tensorrt", "tensorrt", ()),
    ("tensorrt_rtx", "tensorrt_rtx", ()),
    ("cuda-python", "cuda", ("cuda-python", "cuda-bindings")),
    ("torch", "torch", ()),
    ("matplotlib", "matplotlib", ()),
)


def _installed_version(module: str, dists: Sequence[str] = ()) -> str | None:
    """The version of the installed distribution providing `module`, or None (absent, or not installed by pip)."""
    import importlib.metadata

    for name in dists or importlib.metadata.packages_distributions().get(module, []):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _gpu_names() -> list[str]:
    """The NVIDIA GPUs nvidia-smi lists ([] without a driver): a result measured on a GPU must say which."""
    from edgeseg.doctor import _nvidia_smi_probe

    devices = _nvidia_smi_probe()["devices"]
    return [f"{d.get('name')} (compute capability {d.get('compute_capability')})" for d in devices]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
