"""Benchmark the pre/post-processing kernels: numpy reference vs OpenCV vs our C++ CPU kernels (vs our CUDA kernels
on a GPU).

    python benchmarks/bench_kernels.py [--min-time 0.3] [--sizes 360x480,512x1024,1080x1920] [--classes 11,19]
                                       [--gpu auto|on|off] [--launches 50] [--impls numpy,opencv,cpp,cuda]

`--gpu on --impls cuda` times only the CUDA kernels (what a GPU machine adds; the CPU rows are measured on the CPU
machines) and fails when they cannot run.

Each case warms up, picks its iteration count from --min-time, and reports p50/p90/p99 latency and FPS. The GPU
mode (cuda-python only, no CuPy/torch: `--gpu auto` runs it when edgeseg._C has CUDA kernels and a device is
visible) calls the raw `_C.*_cuda` bindings on cudaMalloc'd buffers and times --launches back-to-back launches
between one pair of CUDA events; each kernel's achieved bandwidth (bytes read + written / time) is reported next to
the device's measured device-to-device copy bandwidth (`bandwidth_fraction_of_copy`), and `launch_bound` says when
Python could not submit launches as fast as the GPU ran them. The JSON goes to
benchmarks/results/kernels_<device-tag>.json.

Cases, for a model resolution S = (H, W):
  preprocess          1080x1920 BGR frame -> (1, 3, H, W) float32, resized and normalised
  argmax              (C, H, W) float32 logits -> (H, W) uint8
  upsample_argmax     (C, H/8, W/8) float32 logits, stride 8 -> (H, W) uint8
  colorize            (H, W) mask -> (H, W, 3)
  overlay             (H, W) mask over a (H, W) frame
  post_upsample_overlay  fused upsample_argmax + overlay (stride 8), the runtime's whole post-processing
  post_argmax_overlay    argmax + overlay (model with full-resolution logits)
  argmax_confidence   argmax plus the confidence plane (uint8 highest softmax probability) in the same pass
  upsample_argmax_confidence  the same for upsample_argmax (benchmarks/bench_confidence.py: both side by side)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edgeseg.config import IMAGENET_MEAN, IMAGENET_STD, default_palette
from edgeseg.runtime import ops
from edgeseg.runtime import ops_reference as ref

STRIDE = 8
FRAME = (1080, 1920)
IMPLS = ("numpy", "opencv", "cpp", "cuda")


# ----- timing ------------------------------------------------------------------------------------------------------


def time_cpu(fn: Callable[[], Any], min_time: float, min_iters: int = 5, max_iters: int = 2000) -> dict[str, Any]:
    for _ in range(2):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    iters = int(min(max_iters, max(min_iters, math.ceil(min_time / one))))
    samples = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t0
    return summarise(samples * 1e3)


def summarise(ms: np.ndarray) -> dict[str, Any]:
    p50 = float(np.percentile(ms, 50))
    return {
        "latency_ms_p50": round(p50, 4),
        "latency_ms_p90": round(float(np.percentile(ms, 90)), 4),
        "latency_ms_p99": round(float(np.percentile(ms, 99)), 4),
        "fps_p50": round(1e3 / p50, 1) if p50 > 0 else None,
        "iterations": int(ms.size),
    }


class Cuda:
    """GPU mode on cuda-python alone (no CuPy/torch): device buffers, the raw `_C.*_cuda` bindings, and timing of
    `launches` back-to-back launches between ONE pair of CUDA events (per-launch time = elapsed / launches), so
    event and Python call overheads are spread over many kernels. Also the device-to-device copy bandwidth that the
    kernels' GB/s are compared with."""

    def __init__(self, mode: str = "auto", launches: int = 50) -> None:
        self.rt: Any = None
        self.launches = launches
        self.reason = ""
        try:
            from edgeseg import _C
        except ImportError as exc:
            self.reason = f"edgeseg._C not importable: {exc}"
            return
        if mode == "off":
            self.reason = "--gpu off"
        elif not _C.has_cuda():
            self.reason = "edgeseg._C was built without CUDA kernels"
        elif _C.cuda_device_count() == 0:
            self.reason = "no CUDA device"
        elif importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
            self.reason = "cuda-python (cuda.bindings) is not installed"
        else:
            from cuda.bindings import runtime as rt

            self.rt = rt
            self.stream = 0  # the legacy default stream: launches serialise, as in one pipeline stage
            self.start = self.check(rt.cudaEventCreate(), "cudaEventCreate")
            self.end = self.check(rt.cudaEventCreate(), "cudaEventCreate")
            self.ptrs: list[int] = []
        if mode == "on" and self.rt is None:
            raise SystemExit(f"--gpu on: {self.reason}")

    @property
    def ok(self) -> bool:
        return self.rt is not None

    def check(self, result: Any, what: str) -> Any:
        err, *rest = result
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"{what} failed: {self.rt.cudaGetErrorString(err)[1].decode()}")
        return rest[0] if len(rest) == 1 else None

    def name(self) -> str:
        props = self.check(self.rt.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
        return props.name.decode().rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)

    def empty(self, nbytes: int) -> int:
        ptr = int(self.check(self.rt.cudaMalloc(max(1, nbytes)), "cudaMalloc"))
        self.ptrs.append(ptr)
        return ptr

    def to_device(self, a: np.ndarray) -> int:
        a = np.ascontiguousarray(a)
        ptr = self.empty(a.nbytes)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.check(self.rt.cudaMemcpy(ptr, a.ctypes.data, a.nbytes, kind), "cudaMemcpy")
        return ptr

    def free(self) -> None:
        for ptr in self.ptrs:
            self.rt.cudaFree(ptr)
        self.ptrs = []

    def time(self, fn: Callable[[], Any], min_time: float) -> dict[str, Any]:
        rt, launches = self.rt, self.launches
        for _ in range(5):
            fn()
        self.check(rt.cudaDeviceSynchronize(), "warm-up")

        def batch() -> tuple[float, float]:
            """(GPU ms per launch from the event pair, host ms per launch to submit them)."""
            self.check(rt.cudaEventRecord(self.start, self.stream), "cudaEventRecord")
            t0 = time.perf_counter()
            for _ in range(launches):
                fn()
            submit = (time.perf_counter() - t0) * 1e3 / launches
            self.check(rt.cudaEventRecord(self.end, self.stream), "cudaEventRecord")
            self.check(rt.cudaEventSynchronize(self.end), "cudaEventSynchronize")
            ms = self.check(rt.cudaEventElapsedTime(self.start, self.end), "cudaEventElapsedTime")
            return float(ms) / launches, submit

        first, _ = batch()
        batches = int(min(200, max(5, math.ceil(min_time / max(first * launches * 1e-3, 1e-6)))))
        samples = np.array([batch() for _ in range(batches)])
        stats = summarise(samples[:, 0])
        stats["launches_per_event_pair"] = launches
        # When submitting a launch takes as long as running it, the GPU waited for Python: a lower bound on speed.
        stats["launch_bound"] = bool(np.median(samples[:, 1]) >= 0.9 * stats["latency_ms_p50"])
        return stats

    def copy_bandwidth_gbps(self) -> float:
        n = 256 << 20
        a, b = self.empty(n), self.empty(n)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        r = self.time(lambda: self.check(self.rt.cudaMemcpyAsync(b, a, n, kind, self.stream), "cudaMemcpyAsync"), 0.3)
        return 2 * n / (r["latency_ms_p50"] * 1e-3) / 1e9  # bytes read + written, as for the kernels


# ----- cases -------------------------------------------------------------------------------------------------------


def opencv_preprocess(frame: np.ndarray, size: tuple[int, int], mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    blob = cv2.dnn.blobFromImage(frame, 1.0 / 255.0, (size[1], size[0]), swapRB=True, crop=False)
    blob -= mean
    blob /= std
    return blob


def opencv_upsample_argmax(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    hwc = np.ascontiguousarray(logits.transpose(1, 2, 0))
    C, h, w = logits.shape
    up = cv2.resize(hwc, (w * STRIDE, h * STRIDE), interpolation=cv2.INTER_LINEAR)
    return np.argmax(up[: size[0], : size[1]], axis=2).astype(np.uint8)


def opencv_colorize(mask: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return cv2.LUT(cv2.merge([mask, mask, mask]), lut)


def opencv_overlay(frame: np.ndarray, mask: np.ndarray, lut: np.ndarray, alpha: float) -> np.ndarray:
    big = cv2.resize(mask, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
    colour = cv2.LUT(cv2.merge([big, big, big]), lut)
    return cv2.addWeighted(frame, 1.0 - alpha, colour, alpha, 0.0)


def cases(size: tuple[int, int], classes: int, rng: np.random.Generator, cuda: Cuda):
    """Yield (op, classes, bytes_moved, {impl: callable}) for one model size and class count."""
    H, W = size
    h, w = H // STRIDE, W // STRIDE
    frame_cam = rng.integers(0, 256, (*FRAME, 3), dtype=np.uint8)
    frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    logits_full = rng.standard_normal((classes, H, W)).astype(np.float32)
    logits_low = (3 * rng.standard_normal((classes, h, w))).astype(np.float32)
    mask = rng.integers(0, classes, (H, W), dtype=np.uint8)
    pal = np.asarray(default_palette(classes), np.uint8)
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[:classes, 0] = pal
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    alpha = 0.5
    out_pre = np.empty((1, 3, H, W), np.float32)
    out_mask = np.empty((H, W), np.uint8)
    out_img = np.empty((H, W, 3), np.uint8)
    dev: dict[str, int] = {}
    if cuda.ok:
        from edgeseg import _C

        cuda.free()  # the previous size's buffers
        dev = {k: cuda.to_device(v) for k, v in dict(frame_cam=frame_cam, frame=frame, logits_full=logits_full,
                                                       logits_low=logits_low, mask=mask).items()}
        dev["out_pre"] = cuda.empty(out_pre.nbytes)
        dev["out_mask"] = cuda.empty(out_mask.nbytes)
        dev["out_img"] = cuda.empty(out_img.nbytes)
        pal_bytes = pal.tobytes()
        s = cuda.stream

    def gpu(fn: Callable[[], Any]) -> Callable[[], Any] | None:
        return fn if cuda.ok else None

    # The raw bindings (what the TensorRT backend calls): device pointers, no per-call Python validation.
    yield "preprocess", None, FRAME[0] * FRAME[1] * 3 + 3 * H * W * 4, {
        "numpy": lambda: ref.preprocess(frame_cam, size, IMAGENET_MEAN, IMAGENET_STD),
        "opencv": lambda: opencv_preprocess(frame_cam, size, mean, std),
        "cpp": lambda: ops.preprocess(frame_cam, size, IMAGENET_MEAN, IMAGENET_STD, out=out_pre),
        "cuda": gpu(lambda: _C.preprocess_cuda(dev["frame_cam"], *FRAME, FRAME[1] * 3, dev["out_pre"], H, W,
                                               IMAGENET_MEAN, IMAGENET_STD, False, s)),
    }
    yield "argmax", classes, classes * H * W * 4 + H * W, {
        "numpy": lambda: ref.argmax(logits_full),
        "opencv": None,  # OpenCV has no argmax over channels
        "cpp": lambda: ops.argmax(logits_full, out=out_mask),
        "cuda": gpu(lambda: _C.argmax_cuda(dev["logits_full"], False, classes, H, W, dev["out_mask"], False, s)),
    }
    yield "upsample_argmax", classes, classes * h * w * 4 + H * W, {
        "numpy": lambda: ref.upsample_argmax(logits_low, size, STRIDE),
        "opencv": lambda: opencv_upsample_argmax(logits_low, size),
        "cpp": lambda: ops.upsample_argmax(logits_low, size, STRIDE, out=out_mask),
        "cuda": gpu(lambda: _C.upsample_argmax_cuda(dev["logits_low"], False, classes, h, w, STRIDE, dev["out_mask"],
                                                    H, W, s)),
    }
    out_conf = np.empty((H, W), np.uint8)
    if cuda.ok:
        dev["out_conf"] = cuda.empty(out_conf.nbytes)
    yield "argmax_confidence", classes, classes * H * W * 4 + 2 * H * W, {
        "numpy": lambda: ref.argmax_confidence(logits_full),
        "opencv": None,
        "cpp": lambda: ops.argmax(logits_full, out=out_mask, confidence=True, confidence_out=out_conf),
        "cuda": gpu(lambda: _C.argmax_cuda(dev["logits_full"], False, classes, H, W, dev["out_mask"], False, s,
                                           dev["out_conf"])),
    }
    yield "upsample_argmax_confidence", classes, classes * h * w * 4 + 2 * H * W, {
        "numpy": lambda: ref.upsample_argmax_confidence(logits_low, size, STRIDE),
        "opencv": None,
        "cpp": lambda: ops.upsample_argmax(logits_low, size, STRIDE, out=out_mask, confidence=True,
                                           confidence_out=out_conf),
        "cuda": gpu(lambda: _C.upsample_argmax_cuda(dev["logits_low"], False, classes, h, w, STRIDE, dev["out_mask"],
                                                    H, W, s, dev["out_conf"])),
    }
    yield "colorize", classes, 4 * H * W, {
        "numpy": lambda: ref.colorize(mask, pal),
        "opencv": lambda: opencv_colorize(mask, lut),
        "cpp": lambda: ops.colorize(mask, pal, out=out_img),
        "cuda": gpu(lambda: _C.colorize_cuda(dev["mask"], H, W, pal_bytes, dev["out_img"], s)),
    }
    yield "overlay", classes, 7 * H * W, {
        "numpy": lambda: ref.overlay(frame, mask, pal, alpha),
        "opencv": lambda: opencv_overlay(frame, mask, lut, alpha),
        "cpp": lambda: ops.overlay(frame, mask, pal, alpha, out=out_img),
        "cuda": gpu(lambda: _C.overlay_cuda(dev["frame"], H, W, dev["mask"], H, W, pal_bytes, alpha, dev["out_img"],
                                            s)),
    }
    yield "post_upsample_overlay", classes, classes * h * w * 4 + 7 * H * W, {
        "numpy": lambda: ref.overlay(frame, ref.upsample_argmax(logits_low, size, STRIDE), pal, alpha),
        "opencv": lambda: opencv_overlay(frame, opencv_upsample_argmax(logits_low, size), lut, alpha),
        "cpp": lambda: ops.upsample_argmax_overlay(logits_low, frame, STRIDE, pal, alpha, mask_size=size,
                                                   out=out_img, mask_out=out_mask),
        "cuda": gpu(lambda: _C.upsample_argmax_overlay_cuda(dev["logits_low"], False, classes, h, w, STRIDE,
                                                            dev["out_mask"], H, W, dev["frame"], H, W, pal_bytes,
                                                            alpha, dev["out_img"], s)),
    }
    yield "post_argmax_overlay", classes, classes * H * W * 4 + 7 * H * W, {
        "numpy": lambda: ref.overlay(frame, ref.argmax(logits_full), pal, alpha),
        "opencv": lambda: opencv_overlay(frame, np.argmax(logits_full, axis=0).astype(np.uint8), lut, alpha),
        "cpp": lambda: ops.overlay(frame, ops.argmax(logits_full, out=out_mask), pal, alpha, out=out_img),
        "cuda": gpu(lambda: (_C.argmax_cuda(dev["logits_full"], False, classes, H, W, dev["out_mask"], False, s),
                             _C.overlay_cuda(dev["frame"], H, W, dev["out_mask"], H, W, pal_bytes, alpha,
                                             dev["out_img"], s))),
    }


# ----- main --------------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of timed calls per case (default 0.3)")
    parser.add_argument("--sizes", default="360x480,512x1024,1080x1920")
    parser.add_argument("--classes", default="11,19")
    parser.add_argument("--gpu", choices=("auto", "on", "off"), default="auto",
                        help="CUDA kernels: auto (when a GPU is usable), on (fail without one), off")
    parser.add_argument("--launches", type=int, default=50, help="GPU launches between one pair of CUDA events")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/kernels_<tag>.json)")
    parser.add_argument("--impls", default=",".join(IMPLS),
                        help=f"implementations to time, comma-separated from {','.join(IMPLS)} (default: all)")
    args = parser.parse_args(argv)
    impls_wanted = [i.strip() for i in args.impls.split(",") if i.strip()]
    unknown = sorted(set(impls_wanted) - set(IMPLS))
    if unknown or not impls_wanted:
        parser.error(f"--impls takes names from {','.join(IMPLS)}, got {args.impls!r}")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    class_counts = [int(c) for c in args.classes.split(",")]

    cuda = Cuda(args.gpu, max(1, args.launches))
    cores = os.cpu_count() or 1
    device = {"cpu": cpu_model(), "cpu_cores": cores, "gpu": cuda.name() if cuda.ok else None}
    from edgeseg import _C  # noqa: F401 - the benchmark is about the compiled kernels

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "edgeseg_kernels": ops.kernel_backend(),
        "compiler": _C.build_info,
        "cpu_threads": _C.num_threads(),
        "threading": _C.threading,
    }
    copy_gbps = round(cuda.copy_bandwidth_gbps(), 1) if cuda.ok else None
    tag = slug(device["gpu"]) if device["gpu"] else f"cpu-{slug(device['cpu'])}-{cores}c"
    out_path = args.out or Path(__file__).resolve().parent / "results" / f"kernels_{tag}.json"
    rng = np.random.default_rng(0)

    results: list[dict[str, Any]] = []
    print(f"device: {device}  copy bandwidth: {copy_gbps} GB/s" + ("" if cuda.ok else f"  (GPU: {cuda.reason})"))
    header = f"{'op':<27} {'size':>10} {'C':>3} {'impl':<7} {'p50 ms':>9} {'p90 ms':>9} {'x numpy':>8} {'GB/s':>7}"
    print(header + "\n" + "-" * len(header))
    for size in sizes:
        seen_class_free = set()
        for classes in class_counts:
            for op, c, nbytes, impls in cases(size, classes, rng, cuda):
                if c is None and op in seen_class_free:
                    continue
                seen_class_free.add(op)
                base = None
                for impl, fn in impls.items():
                    if impl not in impls_wanted:
                        continue
                    row: dict[str, Any] = {"op": op, "size": list(size), "classes": c, "impl": impl}
                    if fn is None:
                        row.update(status="skipped",
                                   reason="OpenCV has no such op" if impl == "opencv" else cuda.reason)
                        results.append(row)
                        continue
                    stats = cuda.time(fn, args.min_time) if impl == "cuda" else time_cpu(fn, args.min_time)
                    row.update(status="ok", **stats)
                    if impl == "numpy":
                        base = stats["latency_ms_p50"]
                    row["speedup_vs_numpy_p50"] = round(base / stats["latency_ms_p50"], 2) if base else None
                    gbps = nbytes / (stats["latency_ms_p50"] * 1e-3) / 1e9
                    row["bandwidth_gbps"] = round(gbps, 2)
                    if impl == "cuda" and copy_gbps:
                        row["bandwidth_fraction_of_copy"] = round(gbps / copy_gbps, 3)
                    results.append(row)
                    extra = ""
                    if impl == "cuda" and copy_gbps:
                        extra = f"  {100 * gbps / copy_gbps:.0f}% of copy" + (" (launch-bound)" if stats["launch_bound"]
                                                                               else "")
                    print(f"{op:<27} {size[0]:>4}x{size[1]:<5} {c or '-':>3} {impl:<7} {stats['latency_ms_p50']:>9.3f} "
                          f"{stats['latency_ms_p90']:>9.3f} {row['speedup_vs_numpy_p50'] or 0:>8.1f} {gbps:>7.2f}{extra}")

    report = {
        "benchmark": "edgeseg kernels",
        "device": device,
        "versions": versions,
        "settings": {"min_time_s": args.min_time, "impls": impls_wanted, "stride": STRIDE, "preprocess_frame": list(FRAME),
                     "timing": "perf_counter per call (CPU); GPU: one pair of CUDA events around "
                               f"{cuda.launches} launches, per-launch time; warm-up before timing"},
        "device_copy_bandwidth_gbps": copy_gbps,
        "results": results,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
