"""Training steps/s on this CPU for one model and batch: fp32 vs channels_last vs bf16 autocast (also with
channels_last) vs torch.compile.

    .venv/bin/python benchmarks/bench_train_throughput.py --data ../shared/data/camvid \
        --out benchmarks/results/train_throughput_cpu.json

Every variant is a full AdamW step (forward, cross-entropy, backward, step) on the same fixed batch, with its own
copy of the same initial weights. The variants run interleaved (round r: A, B, C, D; round r+1: D, C, B, A), so load
from other processes hits all of them alike; the result is the median over rounds, and ratios to fp32 of those
medians, and the median over rounds of each round's fp32 / variant ratio (robust to load that changes between
rounds). torch.compile gets --compile-timeout seconds for its first (compiling) steps and is reported as skipped,
with the reason, when it fails or runs out of time.

With --data, the data loader is timed too: seconds per batch of the loader alone (the trainer's augmentation and
normalisation, --workers 0 and the trainer's default 2), and a real fp32 training loop with 0, 1 and 2 loader
workers (interleaved rounds): median wall seconds per step and the share of it spent waiting for the next batch.
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from edgeseg.bench import device_info
from edgeseg.config import IGNORE_INDEX
from edgeseg.files import write_file
from edgeseg.models import build_model

VARIANTS = ("fp32", "channels_last", "bf16_autocast", "bf16_channels_last", "compile")


class _OutOfTime(Exception):
    pass


def _make_step(model: torch.nn.Module, *, channels_last: bool, bf16: bool) -> Callable[[torch.Tensor, torch.Tensor], float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)

    def step(images: torch.Tensor, labels: torch.Tensor) -> float:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = criterion(logits.float(), labels)  # the loss in fp32, as the trainer would do under autocast
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.item())

    return step


def _timed(step: Callable, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """Seconds per step over `steps` steps (loss.item() synchronises every step)."""
    started = time.perf_counter()
    for _ in range(steps):
        step(images, labels)
    return (time.perf_counter() - started) / steps


def _with_timeout(seconds: float, fn: Callable[[], Any]) -> Any:
    """Run fn(), raising _OutOfTime after `seconds` (SIGALRM: main thread, POSIX only)."""
    def alarm(signum, frame):  # noqa: ARG001 - signal handler signature
        raise _OutOfTime(f"did not finish within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def build_variants(args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor) -> tuple[dict, dict]:
    """{name: step function} for the variants that work here, and {name: why skipped / compile seconds}."""
    torch.manual_seed(0)
    base = build_model(args.model, num_classes=args.classes)
    base.train()
    steps: dict[str, Callable] = {}
    notes: dict[str, Any] = {}
    for name in args.variants:
        model = copy.deepcopy(base)
        channels_last = name in ("channels_last", "bf16_channels_last")
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if name == "compile":
            try:
                model = torch.compile(model)
                step = _make_step(model, channels_last=False, bf16=False)
                started = time.perf_counter()
                _with_timeout(args.compile_timeout, lambda: [step(images, labels) for _ in range(2)])
                notes[name] = {"compile_and_first_2_steps_s": round(time.perf_counter() - started, 1)}
            except _OutOfTime as exc:
                notes[name] = {"skipped": f"torch.compile {exc} (--compile-timeout)"}
                continue
            except Exception as exc:  # noqa: BLE001 - any inductor failure means "does not work here"; reported
                notes[name] = {"skipped": f"torch.compile failed: {type(exc).__name__}: {str(exc)[:300]}"}
                continue
        else:
            step = _make_step(model, channels_last=channels_last, bf16=name.startswith("bf16"))
            for _ in range(args.warmup):
                step(images, labels)
        steps[name] = step
    return steps, notes


def interleaved(steps: dict[str, Callable], images, labels, rounds: int, per_round: int) -> dict[str, list[float]]:
    """{variant: [s/step per round]}, the variants taking turns round after round."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))  # ABCD DCBA: no variant always runs first
        for name in order:
            samples[name].append(_timed(steps[name], images, labels, per_round))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {samples[n][-1]:.2f} s/step" for n in steps),
              file=sys.stderr, flush=True)
    return samples


def summarise(samples: dict[str, list[float]], batch: int) -> dict[str, dict]:
    base = statistics.median(samples["fp32"]) if samples.get("fp32") else None
    result = {}
    for name, values in samples.items():
        median = statistics.median(values)
        # the same round's fp32 over this variant: load that changes between rounds cancels out
        paired = [f / v for f, v in zip(samples["fp32"], values)] if base else []
        result[name] = {
            "step_s_median": round(median, 4),
            "step_s_min": round(min(values), 4),
            "step_s_max": round(max(values), 4),
            "steps_per_s_median": round(1.0 / median, 4),
            "images_per_s_median": round(batch / median, 3),
            "speedup_vs_fp32": round(base / median, 3) if base else None,
            "speedup_vs_fp32_paired_median": round(statistics.median(paired), 3) if paired else None,
            "step_s_per_round": [round(v, 4) for v in values],
        }
    return result


def loader_timing(args: argparse.Namespace, fp32_step: Callable | None) -> dict:
    """Loader alone (s/batch, workers 0 and 2) and the share of a real fp32 loop spent waiting for batches."""
    from torch.utils.data import DataLoader

    from edgeseg.config import make_meta
    from edgeseg.data import open_dataset
    from edgeseg.training.torch_data import TorchSegmentationDataset

    size = tuple(args.image_size)
    train_set = open_dataset(args.data, "train")
    meta = make_meta(args.model, train_set.info.classes, size, palette=train_set.info.palette)
    data = TorchSegmentationDataset(train_set, size, meta.mean, meta.std, train=True, seed=0)
    result: dict[str, Any] = {"data": args.data}
    for workers in (0, 2):
        loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=workers)
        batches = iter(loader)
        next(batches)  # worker start-up is not per-batch cost
        started = time.perf_counter()
        for _ in range(args.loader_batches):
            next(batches)
        result[f"loader_alone_workers{workers}_s_per_batch"] = round(
            (time.perf_counter() - started) / args.loader_batches, 4)
        del batches
    if fp32_step is not None:
        # on a 2-core machine the loader's workers compete with torch's threads: time real loops, interleaved
        # (a fresh iterator per round, its start-up and 3 steps untimed, so no loader prefetches while another is timed)
        loops: dict[int, list[tuple[float, float]]] = {0: [], 1: [], 2: []}
        for r in range(args.loader_rounds):
            for workers in (list(loops) if r % 2 == 0 else list(reversed(loops))):
                batches = iter(DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                          num_workers=workers))
                for _ in range(3):  # untimed: worker start-up and its first prefetches are not the steady state
                    fp32_step(*next(batches))
                wait = compute = 0.0
                for _ in range(args.loader_batches):
                    started = time.perf_counter()
                    images, labels = next(batches)
                    waited = time.perf_counter()
                    fp32_step(images, labels)
                    wait += waited - started
                    compute += time.perf_counter() - waited
                loops[workers].append((wait / args.loader_batches, compute / args.loader_batches))
                del batches
        for workers, samples in loops.items():
            key = f"loop_workers{workers}"
            result[f"{key}_wall_s_per_step_median"] = round(statistics.median(w + c for w, c in samples), 4)
            result[f"{key}_wait_s_per_step_median"] = round(statistics.median(w for w, _ in samples), 4)
            result[f"{key}_wait_fraction_median"] = round(statistics.median(w / (w + c) for w, c in samples), 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="fcn8s_resnet18", help="a name from `edgeseg models`")
    parser.add_argument("--image-size", type=int, nargs=2, default=(180, 240), metavar=("H", "W"),
                        help="training input size")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--classes", type=int, default=11, help="number of classes of the model")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="what to compare")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant before the rounds")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--steps-per-round", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--compile-timeout", type=float, default=300.0,
                        help="seconds torch.compile may take for its first two steps before it is skipped")
    parser.add_argument("--data", default=None, help="dataset folder: also time the data loader on its train split")
    parser.add_argument("--loader-batches", type=int, default=10,
                        help="batches timed for the loader alone, and per round of each training loop")
    parser.add_argument("--loader-rounds", type=int, default=5, help="interleaved rounds of the training loops")
    parser.add_argument("--out", required=True, help="result JSON")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    h, w = args.image_size
    images = torch.randn(args.batch_size, 3, h, w)
    labels = torch.randint(0, args.classes, (args.batch_size, h, w))
    steps, notes = build_variants(args, images, labels)
    samples = interleaved(steps, images, labels, args.rounds, args.steps_per_round)
    result: dict[str, Any] = {
        "what": "training step (forward, CE loss, backward, AdamW step) on one fixed batch, variants interleaved",
        "model": args.model, "image_size_hw": [h, w], "batch_size": args.batch_size,
        "rounds": args.rounds, "steps_per_round": args.steps_per_round,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "device": device_info(),
        "variants": summarise(samples, args.batch_size),
    }
    for name, note in notes.items():
        result["variants"].setdefault(name, {}).update(note)
    if args.data:
        result["loader"] = loader_timing(args, steps.get("fp32"))
    result["device"]["load_average_1m_end"] = round(__import__("os").getloadavg()[0], 2)
    write_file(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: {kk: v.get(kk) for kk in ("step_s_median", "speedup_vs_fp32",
                                                              "speedup_vs_fp32_paired_median", "skipped")}
                      for k, v in result["variants"].items()}, indent=1))
    if "loader" in result:
        print(json.dumps(result["loader"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
