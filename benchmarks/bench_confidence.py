"""What the per-pixel confidence costs: argmax and upsample-argmax alone vs with the confidence plane, side by side.

    python benchmarks/bench_confidence.py [--min-time 0.5] [--rounds 5] [--sizes 360x480,512x1024]
                                          [--classes 11,19] [--gpu auto|on|off]

The confidence (the highest softmax probability, uint8 round(255 p)) is computed in the argmax's own pass: one exp
per class and pixel and one more byte written per pixel. For each case the two variants are timed in alternating
rounds (A, B, A, B, ...) so that a change in the machine's load hits both alike; the p50 of all rounds is reported
with the ratio `confidence_over_argmax_p50`. The CPU cases run the C++ kernels through edgeseg.runtime.ops (what the
runtime calls); the GPU cases (cuda-python, as in bench_kernels.py) the raw CUDA bindings. The JSON records the CPU,
the versions and the load average before and after (`uptime`) and goes to
benchmarks/results/confidence_<device-tag>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels import STRIDE, Cuda, cpu_model, slug, summarise, time_cpu  # noqa: E402

from edgeseg.runtime import ops  # noqa: E402


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def interleaved(variants: dict[str, Callable[[], Any]], timer: Callable[[Callable[[], Any], float], dict],
                min_time: float, rounds: int) -> dict[str, dict[str, Any]]:
    """Each variant timed `rounds` times, alternating, `min_time / rounds` seconds each; stats over all rounds'
    p50s (median of the per-round p50s, and their spread)."""
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    iterations = dict.fromkeys(variants, 0)
    for _ in range(rounds):
        for name, fn in variants.items():
            stats = timer(fn, min_time / rounds)
            per_round[name].append(stats["latency_ms_p50"])
            iterations[name] += stats["iterations"]
    result = {}
    for name, values in per_round.items():
        stats = summarise(np.array(values))
        stats["iterations"] = iterations[name]
        stats["rounds"] = rounds
        stats["round_p50s_ms"] = [round(v, 4) for v in values]
        result[name] = stats
    return result


def cpu_cases(size: tuple[int, int], classes: int, rng: np.random.Generator):
    H, W = size
    full = rng.standard_normal((classes, H, W)).astype(np.float32)
    low = (3 * rng.standard_normal((classes, H // STRIDE, W // STRIDE))).astype(np.float32)
    mask, conf = np.empty((H, W), np.uint8), np.empty((H, W), np.uint8)
    yield "argmax", {
        "argmax": lambda: ops.argmax(full, out=mask),
        "argmax+confidence": lambda: ops.argmax(full, out=mask, confidence=True, confidence_out=conf),
    }
    yield "upsample_argmax", {
        "argmax": lambda: ops.upsample_argmax(low, size, STRIDE, out=mask),
        "argmax+confidence": lambda: ops.upsample_argmax(low, size, STRIDE, out=mask, confidence=True,
                                                         confidence_out=conf),
    }


def gpu_cases(size: tuple[int, int], classes: int, rng: np.random.Generator, cuda: Cuda):
    from edgeseg import _C

    H, W = size
    h, w = H // STRIDE, W // STRIDE
    cuda.free()
    full = cuda.to_device(rng.standard_normal((classes, H, W)).astype(np.float32))
    low = cuda.to_device((3 * rng.standard_normal((classes, h, w))).astype(np.float32))
    mask, conf, s = cuda.empty(H * W), cuda.empty(H * W), cuda.stream
    yield "argmax", {
        "argmax": lambda: _C.argmax_cuda(full, False, classes, H, W, mask, False, s),
        "argmax+confidence": lambda: _C.argmax_cuda(full, False, classes, H, W, mask, False, s, conf),
    }
    yield "upsample_argmax", {
        "argmax": lambda: _C.upsample_argmax_cuda(low, False, classes, h, w, STRIDE, mask, H, W, s),
        "argmax+confidence": lambda: _C.upsample_argmax_cuda(low, False, classes, h, w, STRIDE, mask, H, W, s, conf),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of timed calls per variant and case")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per case (A, B, A, B, ...)")
    parser.add_argument("--sizes", default="360x480,512x1024")
    parser.add_argument("--classes", default="11,19")
    parser.add_argument("--gpu", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--launches", type=int, default=50, help="GPU launches between one pair of CUDA events")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/confidence_<tag>.json)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.min_time <= 0:
        parser.error("--rounds must be >= 1 and --min-time > 0")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    class_counts = [int(c) for c in args.classes.split(",")]
    from edgeseg import _C

    cuda = Cuda(args.gpu, max(1, args.launches))
    cores = os.cpu_count() or 1
    device = {"cpu": cpu_model(), "cpu_cores": cores, "gpu": cuda.name() if cuda.ok else None}
    versions = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__,
                "edgeseg_kernels": ops.kernel_backend(), "compiler": _C.build_info, "cpu_threads": _C.num_threads()}
    tag = slug(device["gpu"]) if device["gpu"] else f"cpu-{slug(device['cpu'])}-{cores}c"
    out_path = args.out or Path(__file__).resolve().parent / "results" / f"confidence_{tag}.json"
    load_before = load_average()
    rng = np.random.default_rng(0)
    print(f"device: {device}  load average (1, 5, 15 min): {load_before}"
          + ("" if cuda.ok else f"  (GPU: {cuda.reason})"))
    header = f"{'op':<16} {'size':>10} {'C':>3} {'impl':<5} {'argmax ms':>10} {'+conf ms':>10} {'ratio':>6}"
    print(header + "\n" + "-" * len(header))
    results: list[dict[str, Any]] = []
    for size in sizes:
        for classes in class_counts:
            groups = [("cpp", cpu_cases(size, classes, rng), time_cpu)]
            if cuda.ok:
                groups.append(("cuda", gpu_cases(size, classes, rng, cuda), cuda.time))
            else:
                results.append({"size": list(size), "classes": classes, "impl": "cuda", "status": "skipped",
                                "reason": cuda.reason})
            for impl, case_list, timer in groups:
                for op, variants in case_list:
                    stats = interleaved(variants, timer, args.min_time, args.rounds)
                    base, conf = stats["argmax"]["latency_ms_p50"], stats["argmax+confidence"]["latency_ms_p50"]
                    ratio = round(conf / base, 3)
                    results.append({"op": op, "size": list(size), "classes": classes, "impl": impl, "status": "ok",
                                    "argmax": stats["argmax"], "argmax+confidence": stats["argmax+confidence"],
                                    "confidence_over_argmax_p50": ratio})
                    print(f"{op:<16} {size[0]:>4}x{size[1]:<5} {classes:>3} {impl:<5} {base:>10.3f} {conf:>10.3f} "
                          f"{ratio:>6.2f}")
    load_after = load_average()
    report = {
        "benchmark": "edgeseg confidence overhead",
        "device": device,
        "versions": versions,
        "load_average_1_5_15_min": {"before": load_before, "after": load_after},
        "settings": {"min_time_s_per_variant": args.min_time, "rounds": args.rounds, "stride": STRIDE,
                     "timing": "variants alternate round by round; per round the p50 of perf_counter per call (CPU) "
                               "or of CUDA-event-timed launch batches (GPU); the stats are over the rounds' p50s"},
        "results": results,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"load average after: {load_after}\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
