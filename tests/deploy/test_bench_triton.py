"""benchmarks/bench_triton.py on the deployment tests' tiny model: what it reports must agree with what was sent.

The Triton side's batch sizes come from the server's statistics endpoint, which counts independently of the
benchmark: summed as size x executions they must equal the frames the client threads sent, and no batch may exceed
the model's max batch. The local side's batch sizes must account for every frame the pipeline processed. A real
server (the nvidia-pytriton wheel's tritonserver on 127.0.0.1) is started once and always stopped.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from edgeseg.errors import BackendUnavailableError

from .tiny_model import MAX_BATCH

pytest.importorskip("tritonclient.grpc", reason="tritonclient not installed (pip install 'edgeseg[triton]')")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_triton.py"
STREAMS, FRAMES = 3, 5  # 3 streams x 5 frames: batches of 1 to 3 on a max batch of 4


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_triton", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def clip(bench, tmp_path_factory):
    return bench.write_clip(None, FRAMES, (60, 80), tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="module")
def server(triton_export, tmp_path_factory):
    from edgeseg.serve import TritonServer, find_tritonserver

    try:
        binary = find_tritonserver()
    except BackendUnavailableError as exc:
        pytest.skip(f"no tritonserver: {exc}")
    triton = TritonServer(triton_export["repo"], models=["tiny_python"], binary=binary,
                          log_file=tmp_path_factory.mktemp("triton") / "server.log")
    try:
        triton.start(timeout_s=120)
        yield triton
    finally:
        triton.stop()


def test_clip_has_the_frames_asked_for(clip):
    import cv2

    capture = cv2.VideoCapture(str(clip))
    shapes = []
    while (frame := capture.read())[0]:
        shapes.append(frame[1].shape)
    capture.release()
    assert shapes == [(60, 80, 3)] * FRAMES


def test_triton_batch_sizes_account_for_every_frame_sent(bench, server, clip):
    measured = bench.measure_triton(server.grpc_url, "tiny_python", clip, STREAMS)
    assert measured.frames == STREAMS * FRAMES
    assert measured.latency["count"] == STREAMS * FRAMES
    assert measured.frames_batched == STREAMS * FRAMES  # the server's own count of frames executed
    assert max(measured.batch_sizes) <= min(STREAMS, MAX_BATCH)
    assert 0 < measured.latency["latency_ms_p50"] <= measured.latency["latency_ms_p99"]
    again = bench.measure_triton(server.grpc_url, "tiny_python", clip, 1)  # a delta, not the server's total
    assert again.batch_sizes == {1: FRAMES}


@pytest.mark.parametrize("one_in_flight", [True, False], ids=["one-in-flight", "read-ahead"])
def test_local_batch_sizes_account_for_every_frame(bench, triton_export, clip, one_in_flight):
    from edgeseg.runtime.segmenter import Segmenter

    with Segmenter(triton_export["out"] / "model.onnx", backend="onnxruntime") as local:
        measured = bench.measure_local(local, clip, STREAMS, one_in_flight=one_in_flight)
    assert measured.frames == measured.frames_batched == measured.latency["count"] == STREAMS * FRAMES
    assert max(measured.batch_sizes) <= min(STREAMS, MAX_BATCH)  # the pipeline takes one frame per source


def test_summary_is_the_median_over_rounds(bench):
    def one(fps: float, p50: float, sizes: dict[int, int]):
        latency = {"latency_ms_p50": p50, "latency_ms_p99": 2 * p50, "latency_ms_max": 3 * p50}
        frames = sum(s * c for s, c in sizes.items())
        return bench.Measurement(2, frames, frames / fps, latency, sizes, None)

    summary = bench.summarise([one(10.0, 5.0, {2: 5}), one(30.0, 1.0, {1: 10}), one(20.0, 9.0, {2: 3, 1: 4})])
    assert summary["fps"] == 20.0 and summary["latency_ms_p50"] == 5.0 and summary["latency_ms_p99"] == 10.0
    assert summary["batch_sizes"] == {"1": 14, "2": 8}
    assert summary["mean_batch_size"] == pytest.approx((14 + 16) / 22, abs=1e-3)


@pytest.mark.parametrize("argv, flag", [
    (["--streams", "0", "2"], "--streams"),
    (["--ckpt", "no/such.pt"], "--ckpt"),
    (["--video", "no/such.mp4"], "--video"),
    (["--out", "result.txt"], "--out"),
])
def test_bad_options_are_refused_before_any_work(bench, argv, flag, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench_triton.py: error: ") and flag in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_table_shows_every_side(bench):
    rows = [{"streams": n, "triton_fps_vs_local": 0.5,
             **{side: {"fps": 10.0 * n, "latency_ms_p50": 1.0, "latency_ms_p99": 2.0, "batch_sizes": {"1": n},
                       "mean_batch_size": 1.0} for side in bench.SIDES}} for n in (1, 2)]
    lines = bench.table({"results": rows}).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| 1 | 10.0 | 1 / 2 | 1x1 (mean 1.0) |") and "0.50x" in lines[3]
