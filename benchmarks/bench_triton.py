r"""N camera streams through a Triton server against the same N streams through one local `edgeseg run` process.

    .venv/bin/python benchmarks/bench_triton.py --ckpt /work/camvid_ckpt/best.pt \
        --out benchmarks/results/triton_vs_local_cpu.json

One model, one machine, one run. The checkpoint (default: an untrained fcn8s_mobilenetv3 built here, nothing is
trained) is exported once into a scratch folder: ONNX with --uint8-input --argmax --max-batch 8 and a Triton model
repository. A tritonserver (`edgeseg serve`'s TritonServer: `tritonserver` on PATH or the nvidia-pytriton wheel's) is
started on 127.0.0.1 on free ports and always stopped. Then, for 1, 2, 4 and 8 concurrent streams, each decoding the
same clip (CamVid's val_0016E5.mp4 when present, else synthetic frames; at 360x480):

- Triton: one client thread per stream, each with its own gRPC connection, sending one frame at a time and waiting
  for its mask (closed loop, like perf_analyzer's --concurrency-range). The server's dynamic batcher forms the
  batches; their sizes are the delta of the model's statistics endpoint over the run.
- local: one process runs all N streams with edgeseg.pipeline (what `edgeseg run --source ... --source ...` does):
  one capture thread per stream (--queue-size 1), one inference thread batching up to the model's max batch. Each
  source is paced to one frame in flight, like the Triton clients; `local_readahead` is the same run on plain file
  sources, which read ahead (about three frames in flight per stream), as `edgeseg run` does on files.

Both sides decode the clip with the same reader and stop at the mask at model resolution (no video or PNG written).
Rounds interleave the sides (alternating which goes first) and the JSON quotes the median over rounds.
Writes OUT.json (device, versions, load average, method, per-round and median results) and OUT.png beside it.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.errors import ConfigError, DataError, EdgeSegError, ModelFileError, OutputPathError, SourceError
from edgeseg.pipeline.sources import Frame, Source, open_source

log = logging.getLogger("bench_triton")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO_ROOT.parent / "shared" / "data" / "camvid" / "val_0016E5.mp4"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "triton_vs_local_cpu.json"
DEFAULT_STREAMS = (1, 2, 4, 8)
FRAME_SIZE = (360, 480)  # (H, W) of the frames every stream sends: CamVid's video size
MAX_BATCH = 8  # the exported graph's batch profile, and so the Triton model's max_batch_size
TRITON_NAME = "bench"  # the repository's models are bench_python, bench_onnx (the wheel's server loads the first)
TINY_MODEL = "fcn8s_mobilenetv3"
TINY_INPUT_SIZE = (180, 240)
_STATISTICS_SETTLE_S = 5.0  # how long the server's statistics may take to count the last execution
_TURN_TIMEOUT_S = 60.0  # a one-in-flight source gives up when its previous frame never comes back
SIDES = {"triton": "Triton (Python backend)", "local": "one local process",
         "local_readahead": "one local process, files read ahead"}
QUICK = {"frames": 12, "rounds": 1}


# ----- inputs ----------------------------------------------------------------------------------------------------
def tiny_checkpoint(path: Path) -> Path:
    """An untrained fcn8s_mobilenetv3 on the synthetic scenes' classes: the cost of a real FCN, no training."""
    import torch

    from edgeseg.config import make_meta
    from edgeseg.data.scenes.classes import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE
    from edgeseg.models import build_model
    from edgeseg.training.checkpoint import save_checkpoint

    torch.manual_seed(0)  # the same weights every run: an untrained net's masks still vary with them
    model = build_model(TINY_MODEL, num_classes=len(SYNTHETIC_CLASSES)).eval()
    meta = make_meta(TINY_MODEL, SYNTHETIC_CLASSES, TINY_INPUT_SIZE, SYNTHETIC_PALETTE)
    return save_checkpoint(path, model, meta)


def write_clip(video: Path | None, frames: int, size: tuple[int, int], path: Path) -> Path:
    """`frames` frames at `size` (H, W) as an MP4 every stream decodes: the video looped and resized to `size`
    (INTER_AREA), or synthetic street scenes when `video` is None."""
    import cv2

    height, width = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
    if not writer.isOpened():
        raise OutputPathError(f"cannot write the benchmark clip {path} (OpenCV's mp4v writer failed)")
    try:
        for frame in _clip_frames(video, frames, size):
            writer.write(frame)
    finally:
        writer.release()
    return path


def _clip_frames(video: Path | None, frames: int, size: tuple[int, int]):
    import cv2

    if video is None:
        from edgeseg.data import synthetic_frames

        yield from synthetic_frames(frames, size, seed=0)
        return
    capture = cv2.VideoCapture(str(video))
    try:
        sent = 0
        while sent < frames:
            ok, frame = capture.read()
            if not ok:
                if sent == 0:
                    raise DataError(f"--video {video}: no frame could be decoded")
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)  # loop the clip
                continue
            if frame.shape[:2] != tuple(size):
                frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            yield frame
            sent += 1
    finally:
        capture.release()


def export_for_triton(ckpt: Path, work: Path) -> tuple[Path, Path, str]:
    """(the ONNX file, the Triton repository, the Python-backend model's name) of one export of `ckpt`."""
    from edgeseg.export.pipeline import export_model

    result = export_model(ckpt, work / "export", precisions=("fp32",), progress=False, uint8_input=True,
                          argmax=True, max_batch=MAX_BATCH, triton=str(work / "repo"), triton_name=TRITON_NAME)
    return Path(result["onnx"]["fp32"]), work / "repo", f"{TRITON_NAME}_python"


# ----- measurements ------------------------------------------------------------------------------------------------
@dataclass
class Measurement:
    """One side, one stream count, one round."""

    streams: int
    frames: int  # masks received over all streams
    seconds: float  # wall time from the first frame to the last mask
    latency: dict[str, Any]  # edgeseg.bench.latency_summary of the per-frame latencies
    batch_sizes: dict[int, int]  # {batch size: executions}
    load_average_1m: float | None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def frames_batched(self) -> int:
        return sum(size * count for size, count in self.batch_sizes.items())

    def to_dict(self) -> dict[str, Any]:
        executions = sum(self.batch_sizes.values())
        return {
            "streams": self.streams, "frames": self.frames, "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            **{key: round(self.latency[key], 2) for key in ("latency_ms_p50", "latency_ms_p99", "latency_ms_max")},
            "batch_sizes": {str(size): count for size, count in sorted(self.batch_sizes.items())},
            "mean_batch_size": round(self.frames_batched / executions, 3) if executions else 0.0,
            "load_average_1m": self.load_average_1m,
        }


def _load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def measure_triton(url: str, model_name: str, clip: Path, streams: int) -> Measurement:
    """`streams` client threads, each decoding `clip` and sending one frame at a time to the server at `url`.

    Latency is request sent -> mask back (client resize, gRPC, server queue and batch, the mask's way back). The
    batch sizes are the server's statistics after minus before, so they count every client's frames, ours only
    when nothing else uses the server."""
    from edgeseg.bench import latency_summary
    from edgeseg.runtime.segmenter import Segmenter

    clients = [Segmenter(url, backend="triton", model_name=model_name) for _ in range(streams)]
    latencies: list[list[float]] = [[] for _ in range(streams)]
    failures: list[BaseException] = []
    start = threading.Barrier(streams + 1)

    def stream(index: int) -> None:
        source = open_source(str(clip))
        try:
            source.open()
            start.wait()
            while (frame := source.read()) is not None:
                if frame.image is None:
                    raise DataError(f"{clip}: frame {frame.origin} could not be decoded")
                sent = time.perf_counter()
                clients[index].predict([frame.image])
                latencies[index].append((time.perf_counter() - sent) * 1e3)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
            failures.append(exc)
            start.abort()  # no thread waits forever for one that failed before the start
        finally:
            source.close()

    try:
        before = clients[0].backend.server_batch_sizes()
        threads = [threading.Thread(target=stream, args=(i,), name=f"triton-stream-{i}") for i in range(streams)]
        for thread in threads:
            thread.start()
        try:
            start.wait()
        except threading.BrokenBarrierError:
            pass  # a stream failed to open: its error is raised below
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        if failures:
            raise failures[0]
        sent = sum(map(len, latencies))
        batches = _server_batches_since(clients[0].backend, before, sent)
    finally:
        for client in clients:
            client.close()
    return Measurement(streams, sent, seconds, latency_summary([ms for one in latencies for ms in one]), batches,
                       _load_average())


def _server_batches_since(backend: Any, before: dict[int, int], frames: int) -> dict[int, int]:
    """{batch size: executions} the server formed since `before`, once they account for `frames` (the server
    updates its statistics just after it answers, so the last execution can be missing for a moment)."""
    deadline = time.monotonic() + _STATISTICS_SETTLE_S
    while True:
        after = backend.server_batch_sizes()
        delta = {size: after.get(size, 0) - before.get(size, 0) for size in after}
        delta = {size: count for size, count in delta.items() if count}
        if sum(size * count for size, count in delta.items()) >= frames or time.monotonic() > deadline:
            return delta
        time.sleep(0.02)


class _BatchRecorder:
    """The local Segmenter, counting the batch sizes the pipeline forms (its Stats keep only count, mean, max) and
    telling each one-in-flight source when its frame has been segmented."""

    def __init__(self, segmenter: Any) -> None:
        self._segmenter = segmenter
        self.sizes: collections.Counter[int] = collections.Counter()
        self.turns: dict[int, threading.Semaphore] = {}  # id(frame image) -> its source's turn, while in flight

    def predict(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.sizes[len(frames)] += 1  # the pipeline's one inference thread calls this: no lock needed
        masks = self._segmenter.predict(frames)
        for frame in frames:
            turn = self.turns.pop(id(frame), None)
            if turn is not None:
                turn.release()
        return masks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._segmenter, name)


class _OneInFlight(Source):
    """A video file that gives its next frame only once the previous one is segmented: one frame in flight per
    stream, as for the Triton clients. (A plain file source reads ahead: with --queue-size 1 each stream has about
    three frames in flight, the queued one, the one its capture thread holds and the one being segmented.)"""

    kind = "video"

    def __init__(self, path: Path, recorder: _BatchRecorder) -> None:
        super().__init__(str(path))
        self._inner = open_source(str(path))
        self._recorder = recorder
        self._turn = threading.Semaphore(1)

    def _open(self) -> None:
        self._inner.open()
        self.expected_frames = self._inner.expected_frames

    def _read(self) -> Frame | None:
        if not self._turn.acquire(timeout=_TURN_TIMEOUT_S):
            raise SourceError(f"{self.description}: previous frame not segmented within {_TURN_TIMEOUT_S:g} s")
        frame = self._inner.read()
        if frame is None or frame.image is None:
            self._turn.release()
            return frame
        self._recorder.turns[id(frame.image)] = self._turn
        return frame

    def _close(self) -> None:
        self._inner.close()


def measure_local(segmenter: Any, clip: Path, streams: int, *, one_in_flight: bool) -> Measurement:
    """`streams` copies of `clip` through one edgeseg.pipeline run, as `edgeseg run` with that many --source's and
    --queue-size 1; `one_in_flight` paces each source like a closed-loop client (see _OneInFlight). Latency is the
    pipeline's end_to_end stage: frame read -> mask out (queue wait, batch, inference); FPS is frames processed over
    the run's wall time."""
    from edgeseg.pipeline.stream import run_stream

    recorder = _BatchRecorder(segmenter)
    sources = [_OneInFlight(clip, recorder) if one_in_flight else str(clip) for _ in range(streams)]
    stats = run_stream(recorder, sources, queue_size=1)
    if not stats.balanced or stats.dropped or stats.unreadable:
        raise DataError(f"local run lost frames: {stats.to_dict()['total']}")
    # the reservoir's percentiles are exact up to its capacity (4096 frames a run), estimates beyond
    latency = stats.stages["end_to_end"].summary()
    return Measurement(streams, stats.processed, stats.elapsed_s, latency, dict(recorder.sizes), _load_average())


# ----- the run -------------------------------------------------------------------------------------------------------
def interleaved_rounds(stream_counts: Sequence[int], rounds: int,
                       sides: dict[str, Callable[[int], Measurement]]) -> dict[str, dict[int, list[Measurement]]]:
    """Every side for every stream count, `rounds` times; the side that goes first alternates, so a slow spell of
    the machine does not always fall on the same one."""
    results: dict[str, dict[int, list[Measurement]]] = {side: {n: [] for n in stream_counts} for side in sides}
    names = list(sides)
    for round_index in range(rounds):
        for position, streams in enumerate(stream_counts):
            order = names if (round_index + position) % 2 == 0 else names[::-1]
            for side in order:
                measurement = sides[side](streams)
                results[side][streams].append(measurement)
                log.info("round %d, %d stream(s), %-6s: %6.1f FPS, p50 %6.1f ms (load %.2f)", round_index + 1,
                         streams, side, measurement.fps, measurement.latency["latency_ms_p50"],
                         measurement.load_average_1m or 0.0)
    return results


def summarise(measurements: list[Measurement]) -> dict[str, Any]:
    """Medians over rounds of FPS and latency percentiles; batch sizes summed over rounds."""
    rounds = [m.to_dict() for m in measurements]
    sizes: collections.Counter[int] = collections.Counter()
    for measurement in measurements:
        sizes.update(measurement.batch_sizes)
    executions = sum(sizes.values())
    return {
        "fps": round(statistics.median(r["fps"] for r in rounds), 2),
        "latency_ms_p50": round(statistics.median(r["latency_ms_p50"] for r in rounds), 2),
        "latency_ms_p99": round(statistics.median(r["latency_ms_p99"] for r in rounds), 2),
        "batch_sizes": {str(size): count for size, count in sorted(sizes.items())},
        "mean_batch_size": round(sum(s * c for s, c in sizes.items()) / executions, 3) if executions else 0.0,
        "rounds": rounds,
    }


def scheduling_of(repo: Path, model_name: str) -> dict[str, Any]:
    """What the server was told about batching, from the repository's config.pbtxt."""
    from edgeseg.serve import read_model_configs

    config = read_model_configs(repo)[model_name]
    return {
        "max_batch_size": int(config.max_batch_size),
        "preferred_batch_size": [int(s) for s in config.dynamic_batching.preferred_batch_size],
        "max_queue_delay_microseconds": int(config.dynamic_batching.max_queue_delay_microseconds),
        "instances": [f"{group.count} x {type(group).Kind.Name(group.kind)}"
                      for group in config.instance_group],
    }


def run_benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from edgeseg.bench import _installed_version, device_info
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.serve import TritonServer

    device = device_info()  # before anything runs: the load the machine had from others
    ckpt = Path(args.ckpt) if args.ckpt else tiny_checkpoint(work / "tiny_fcn8s.pt")
    log.info("exporting %s (ONNX --uint8-input --argmax --max-batch %d, Triton repository)", ckpt, MAX_BATCH)
    onnx, repo, model_name = export_for_triton(ckpt, work)
    clip = write_clip(args.video, args.frames, FRAME_SIZE, work / "clip.mp4")
    scheduling = scheduling_of(repo, model_name)
    server = TritonServer(repo, models=[model_name], log_file=work / "tritonserver.log")
    log.info("starting tritonserver (%s) on 127.0.0.1, gRPC port %d", server.binary.path, server.grpc_port)
    with server, Segmenter(onnx, backend="onnxruntime") as local:
        warm = [frame for frame in _clip_frames(args.video, MAX_BATCH, FRAME_SIZE)]
        with Segmenter(server.grpc_url, backend="triton", model_name=model_name) as remote:
            for _ in range(2):  # first calls allocate: keep them out of every measurement
                remote.predict(warm)
                local.predict(warm)
                local.predict(warm[:1])
        results = interleaved_rounds(args.streams, args.rounds, {
            "triton": lambda n: measure_triton(server.grpc_url, model_name, clip, n),
            "local": lambda n: measure_local(local, clip, n, one_in_flight=True),
            "local_readahead": lambda n: measure_local(local, clip, n, one_in_flight=False),
        })
        meta = local.meta
    rows = []
    for streams in args.streams:
        row: dict[str, Any] = {"streams": streams}
        row.update({side: summarise(results[side][streams]) for side in SIDES})
        local_fps = row["local"]["fps"]
        row["triton_fps_vs_local"] = round(row["triton"]["fps"] / local_fps, 3) if local_fps else None
        rows.append(row)
    return {
        "benchmark": "N concurrent streams: Triton server (Python backend, ONNX Runtime CPU) vs one local "
                     "edgeseg.pipeline process, same model and machine",
        "quick": bool(args.quick),
        "model": {"name": meta.model_name, "checkpoint": str(args.ckpt) if args.ckpt else "untrained, built in-process",
                  "input_size": list(meta.input_size), "precision": meta.precision, "max_batch": MAX_BATCH,
                  "onnx": "--uint8-input --argmax --max-batch 8"},
        "frames": {"source": str(args.video) if args.video else "synthetic street scenes",
                   "size_hw": list(FRAME_SIZE), "per_stream": args.frames, "rounds": args.rounds},
        "triton": {"server": str(server.binary.path), "model": model_name, "scheduling": scheduling,
                   "nvidia-pytriton": _installed_version("pytriton", ("nvidia-pytriton",)),
                   "tritonclient": _installed_version("tritonclient", ("tritonclient",))},
        "method": {
            "triton": "one client thread per stream in this process, each its own gRPC connection, one frame in "
                      "flight (closed loop); latency = request sent -> mask back, client resize included; batch "
                      "sizes = the server's statistics delta over the run",
            "local": "one edgeseg.pipeline run (what edgeseg run does) over N copies of the clip, --queue-size 1, "
                     "batching up to max_batch, each source paced to one frame in flight like the Triton clients; "
                     "latency = the pipeline's end_to_end stage (frame read -> mask out); batch sizes counted at "
                     "Segmenter.predict",
            "local_readahead": "the same run with plain file sources, as `edgeseg run --queue-size 1 --source CLIP "
                               "...` runs files: each capture thread reads ahead (about 3 frames in flight per "
                               "stream), which overlaps decoding with inference and adds their wait to latency",
            "fps": "frames over wall time, all streams together",
            "summary": "median over rounds; sides interleaved, the one going first alternating",
            "masks": "at model resolution on both sides; no video or PNG written",
        },
        "device": device,
        "load_average_1m_end": _load_average(),
        "results": rows,
    }


# ----- output ------------------------------------------------------------------------------------------------------
def write_chart(result: dict[str, Any], path: Path) -> Path:
    """FPS, p50/p99 latency and mean batch size against the stream count, Triton and local side by side."""
    from edgeseg._optional import require
    from edgeseg.files import write_with

    require("matplotlib", "the benchmark chart")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = result["results"]
    streams = [row["streams"] for row in rows]
    colours = {"triton": "#76b900", "local": "#4c72b0", "local_readahead": "#dd8452"}
    fig, (fps_ax, latency_ax, batch_ax) = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    for side, label in SIDES.items():
        fps_ax.plot(streams, [row[side]["fps"] for row in rows], "o-", color=colours[side], label=label)
        latency_ax.plot(streams, [row[side]["latency_ms_p50"] for row in rows], "o-", color=colours[side],
                        label=f"{side} p50")
        latency_ax.plot(streams, [row[side]["latency_ms_p99"] for row in rows], "s--", color=colours[side],
                        label=f"{side} p99")
        batch_ax.plot(streams, [row[side]["mean_batch_size"] for row in rows], "o-", color=colours[side],
                      label=label)
    fps_ax.set(title="aggregate FPS (higher is better)", ylabel="frames / s", ylim=(0, None))
    latency_ax.set(title="latency per frame (lower is better)", ylabel="ms", yscale="log")
    latency_ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    latency_ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    batch_ax.set(title="mean batch size formed", ylabel="frames per execution", ylim=(0, MAX_BATCH + 0.5))
    for ax in (fps_ax, latency_ax, batch_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(streams, [str(n) for n in streams])
        ax.set_xlabel("concurrent streams")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    device = result["device"]
    fig.suptitle(f"{result['model']['name']} {'x'.join(map(str, result['model']['input_size']))}, frames "
                 f"{'x'.join(map(str, result['frames']['size_hw']))}; {device['cpu']} ({device['cores']} cores), "
                 f"load {device.get('load_average_1m', '?')}", fontsize=10)
    written = write_with(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)
    return written


def table(result: dict[str, Any]) -> str:
    """The results as a Markdown table (what the README shows); batch sizes as size x executions over all rounds."""
    lines = ["| streams | Triton FPS | Triton p50 / p99 ms | batches Triton formed | local FPS | local p50 / p99 ms "
             "| local batches | Triton / local FPS | read-ahead local FPS | read-ahead p50 / p99 ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["results"]:
        cells = [str(row["streams"])]
        for side in SIDES:
            one = row[side]
            cells += [f"{one['fps']:.1f}", f"{one['latency_ms_p50']:.0f} / {one['latency_ms_p99']:.0f}"]
            if side != "local_readahead":
                sizes = " ".join(f"{size}x{count}" for size, count in sorted(
                    one["batch_sizes"].items(), key=lambda item: -int(item[0])))
                cells.append(f"{sizes} (mean {one['mean_batch_size']:.1f})")
            if side == "local":
                ratio = row["triton_fps_vs_local"]
                cells.append(f"{ratio:.2f}x" if ratio is not None else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----- command line ------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from edgeseg.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="bench_triton.py", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--ckpt", help="EdgeSeg checkpoint to export and serve; unset: an untrained "
                                       f"{TINY_MODEL} at {TINY_INPUT_SIZE[0]}x{TINY_INPUT_SIZE[1]} built in-process")
    parser.add_argument("--video", default=str(DEFAULT_VIDEO),
                        help="clip every stream decodes (looped, resized to 360x480); 'synthetic', or a default "
                             "that does not exist, uses synthetic street scenes")
    parser.add_argument("--streams", type=int, nargs="+", default=list(DEFAULT_STREAMS), metavar="N",
                        help="concurrent stream counts to measure")
    parser.add_argument("--frames", type=int, default=101, metavar="F", help="frames each stream sends per run")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per side and stream count (medians)")
    parser.add_argument("--out", help="result JSON; the chart goes beside it as .png; unset: "
                                      f"{DEFAULT_OUT.relative_to(REPO_ROOT)} (with --quick: in the temp folder)")
    parser.add_argument("--work", help="scratch folder for the export, the clip and the server log (kept); unset: "
                                       "a temporary folder, removed at the end")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK['frames']} frames per stream, {QUICK['rounds']} round")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.rounds = QUICK["frames"], QUICK["rounds"]
    return args


def check_args(args: argparse.Namespace) -> None:
    """Every refusal before the export and the server start (minutes of work)."""
    if args.ckpt is not None and not Path(args.ckpt).is_file():
        raise ModelFileError(f"--ckpt {args.ckpt} is not a file")
    if args.video == "synthetic" or (args.video == str(DEFAULT_VIDEO) and not DEFAULT_VIDEO.is_file()):
        args.video = None
    elif not Path(args.video).is_file():
        raise DataError(f"--video {args.video} is not a file (use --video synthetic for generated frames)")
    else:
        args.video = Path(args.video)
    bad = [n for n in args.streams if not 1 <= n <= 64]
    if bad:
        raise ConfigError(f"--streams must be between 1 and 64, got {bad}")
    args.streams = sorted(set(args.streams))
    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be >= 1, got {args.rounds}")
    if args.out is None:
        quick_out = Path(tempfile.gettempdir()) / "triton_vs_local_cpu_quick.json"  # never over the real result
        args.out = str(quick_out if args.quick else DEFAULT_OUT)
    out = Path(args.out)
    if out.suffix != ".json":
        raise OutputPathError(f"--out {out} must end in .json (the chart goes beside it as .png)")
    for path in (out, out.with_suffix(".png")):
        if path.is_dir():
            raise OutputPathError(f"--out: {path} is a folder, not a file")
    if not out.parent.is_dir():
        raise OutputPathError(f"--out: folder {out.parent} does not exist")
    if args.work is not None and Path(args.work).exists() and not Path(args.work).is_dir():
        raise OutputPathError(f"--work {args.work} is a file; give a folder")
    from edgeseg._optional import require
    from edgeseg.serve import find_tritonserver

    require("tritonclient.grpc", "the Triton benchmark's clients")
    require("matplotlib", "the benchmark chart")
    require("torch", "exporting the checkpoint")
    find_tritonserver()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        check_args(args)
        if args.work is not None:
            work = Path(args.work)
            work.mkdir(parents=True, exist_ok=True)
            result = run_benchmark(args, work)
        else:
            with tempfile.TemporaryDirectory(prefix="edgeseg-bench-triton-") as scratch:
                result = run_benchmark(args, Path(scratch))
        import json

        from edgeseg.files import write_file

        out = write_file(args.out, json.dumps(result, indent=2) + "\n")
        chart = write_chart(result, Path(args.out).with_suffix(".png"))
    except EdgeSegError as exc:
        print(f"bench_triton.py: error: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    print(f"wrote {out} and {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
