"""A real Triton server (the nvidia-pytriton wheel's tritonserver, Python backend, on 127.0.0.1 only) on the
repository `edgeseg export --triton` wrote: its masks must equal the local Segmenter's on the same frames, for one
client, with shared memory, and for several concurrent clients; bad requests get clear errors. The server is
started once per module and always stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.errors import BackendUnavailableError, ConfigError

from .tiny_model import MAX_BATCH

grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient not installed (pip install 'edgeseg[triton]')")
from tritonclient.utils import InferenceServerException  # noqa: E402


def _server_binary():
    from edgeseg.serve import find_tritonserver

    try:
        return find_tritonserver()
    except BackendUnavailableError as exc:
        pytest.skip(f"no tritonserver: {exc}")


@pytest.fixture(scope="module")
def server(triton_export, tmp_path_factory):
    from edgeseg.serve import TritonServer

    log = tmp_path_factory.mktemp("triton") / "server.log"
    triton = TritonServer(triton_export["repo"], log_file=log, binary=_server_binary())
    try:
        triton.start(timeout_s=120)
        yield triton
    finally:
        triton.stop()
    assert not triton.is_running()


@pytest.fixture(scope="module")
def local(triton_export):
    from edgeseg.runtime.segmenter import Segmenter

    with Segmenter(triton_export["out"] / "model.onnx", backend="onnxruntime") as segmenter:
        yield segmenter


@pytest.fixture(scope="module")
def frames():
    from edgeseg.data import synthetic_frames

    # frame sizes other than the model's: the client resizes exactly as the local Segmenter does
    return list(synthetic_frames(5, (90, 120), seed=3)) + list(synthetic_frames(2, (37, 51), seed=4))


def _remote(server, **options):
    from edgeseg.runtime.segmenter import Segmenter

    return Segmenter(server.grpc_url, backend="triton", **options)


def test_only_the_python_model_is_loaded(server):
    assert server.models == ["tiny_python"]  # the wheel's server has no onnxruntime backend


@pytest.mark.parametrize("shared_memory", [False, True], ids=["grpc", "shared-memory"])
def test_masks_equal_the_local_segmenter(server, local, frames, shared_memory):
    expected = [local.segment(frame) for frame in frames]
    assert len({int(c) for mask in expected for c in np.unique(mask)}) >= 2  # several classes: not a trivial match
    with _remote(server, shared_memory=shared_memory) as remote:
        assert remote.backend.model_name == "tiny_python"  # the server's only EdgeSeg model, found by itself
        assert remote.meta.classes == local.meta.classes
        got_one_by_one = [remote.segment(frame) for frame in frames]
        got_batched = remote.predict(frames)  # one request per frame, more frames than max_batch
    assert len(frames) > MAX_BATCH
    for frame, want, one, batched in zip(frames, expected, got_one_by_one, got_batched):
        np.testing.assert_array_equal(one, want)
        np.testing.assert_array_equal(batched, local.predict([frame])[0])


def test_concurrent_clients_and_server_batches(server, local, frames):
    """Four clients at once, each its own connection: every mask equals the local one, and the server's statistics
    account for every frame exactly once (sum of batch size x executions grows by the frames sent)."""
    expected = [local.predict([frame])[0] for frame in frames]
    with _remote(server) as probe:
        before = probe.backend.server_batch_sizes()
    results: dict[int, list] = {}
    failures: list[BaseException] = []

    def client(index: int) -> None:
        try:
            with _remote(server) as remote:
                results[index] = [remote.predict(frames[i:i + 2]) for i in range(0, len(frames), 2)]
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    for masks in results.values():
        flat = [mask for chunk in masks for mask in chunk]
        for got, want in zip(flat, expected, strict=True):
            np.testing.assert_array_equal(got, want)
    # the server updates its statistics just after answering: poll (bounded) until the last execution shows
    deadline = time.monotonic() + 10
    with _remote(server) as probe:
        while True:
            after = probe.backend.server_batch_sizes()
            frames_run = sum(size * (after.get(size, 0) - before.get(size, 0)) for size in after)
            if frames_run >= 4 * len(frames) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert frames_run == 4 * len(frames)
    assert max(after) <= MAX_BATCH


def test_bad_requests_get_clear_errors(server, frames):
    client = grpc.InferenceServerClient(server.grpc_url)
    try:
        wrong_dtype = grpc.InferInput("frames", [1, 48, 64, 3], "FP32")
        wrong_dtype.set_data_from_numpy(np.zeros((1, 48, 64, 3), np.float32))
        with pytest.raises(InferenceServerException, match="data-type is 'FP32', but .* expects 'UINT8'") as dtype_error:
            client.infer("tiny_python", [wrong_dtype])
        wrong_shape = grpc.InferInput("frames", [1, 10, 10, 3], "UINT8")
        wrong_shape.set_data_from_numpy(np.zeros((1, 10, 10, 3), np.uint8))
        with pytest.raises(InferenceServerException, match="(?i)shape") as shape_error:
            client.infer("tiny_python", [wrong_shape])
    finally:
        client.close()
    assert "frames" in str(dtype_error.value) and "frames" in str(shape_error.value)
    with _remote(server) as remote:  # EdgeSeg's client refuses them before they leave the machine
        with pytest.raises(ConfigError, match="takes uint8"):
            remote.backend.infer(np.zeros((1, 48, 64, 3), np.float32))
        with pytest.raises(ConfigError, match="takes shape"):
            remote.backend.infer(np.zeros((1, 10, 10, 3), np.uint8))
        np.testing.assert_array_equal(remote.predict(frames[:1])[0].shape, (48, 64))  # still serving


def test_unknown_model_and_unreachable_server(server):
    from edgeseg.serve import free_port

    with pytest.raises(ConfigError, match="no ready model 'nope'.*tiny_python"):
        _remote(server, model_name="nope")
    with pytest.raises(BackendUnavailableError, match="Triton server 127.0.0.1"):
        _remote(type("Nowhere", (), {"grpc_url": f"127.0.0.1:{free_port()}"})())


def test_cli_run_and_eval_through_triton(server, local, frames, tmp_path, capsys):
    import cv2

    code = main(["run", server.grpc_url, "--backend", "triton", "--triton-model", "tiny_python",
                 "--source", "synthetic:3", "--masks", str(tmp_path / "masks"), "--stats", str(tmp_path / "s.json")])
    assert code == 0, capsys.readouterr().err
    masks = sorted((tmp_path / "masks").rglob("*.png"))
    assert len(masks) == 3
    assert json.loads((tmp_path / "s.json").read_text())  # the stats file is written and parses
    for path in masks:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.max() < len(local.meta.classes)
    data = tmp_path / "data"
    (data / "val" / "images").mkdir(parents=True)
    (data / "val" / "labels").mkdir(parents=True)
    for i, frame in enumerate(frames):  # labels: the local masks with a band of class 3 over them
        cv2.imwrite(str(data / "val" / "images" / f"f{i}.png"), frame)
        label = local.segment(frame).copy()
        label[: label.shape[0] // 3] = 3
        cv2.imwrite(str(data / "val" / "labels" / f"f{i}.png"), label)
    (data / "classes.json").write_text(json.dumps({"classes": list(local.meta.classes)}))
    code = main(["eval", "tiny_python", "--backend", "triton", "--url", server.grpc_url, "--data", str(data),
                 "--json", str(tmp_path / "remote.json")])
    assert code == 0, capsys.readouterr().err
    code = main(["eval", str(local.backend.path), "--backend", "onnxruntime", "--data", str(data),
                 "--json", str(tmp_path / "local.json")])
    assert code == 0, capsys.readouterr().err
    remote, here = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("remote", "local"))
    assert 0.0 < remote["miou"] < 1.0 and remote["miou"] == here["miou"]
    code = main(["bench", server.grpc_url, "--backend", "triton", "--json", str(tmp_path / "bench.json"),
                 "--frames", "2", "--warmup", "1", "--min-iters", "6", "--min-seconds", "0"])
    assert code == 0, capsys.readouterr().err
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["backend"] == "triton" and bench["fps"] > 0
    assert sum(int(size) * count for size, count in bench["server_batch_sizes"].items()) >= 6
    code = main(["run", server.grpc_url, "--url", server.grpc_url, "--source", "synthetic:1", "--stats",
                 str(tmp_path / "x.json")])
    assert code == 2 and "--url apply only with --backend triton" in capsys.readouterr().err


def test_serve_command_starts_and_stops_on_ctrl_c(triton_export, tmp_path):
    """`edgeseg serve` in its own process: ready on the ports asked for, and SIGINT stops it with status 0."""
    from edgeseg.serve import free_port

    _server_binary()
    http, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "edgeseg", "serve", str(triton_export["repo"]), "--http-port", str(http),
               "--grpc-port", str(grpc_port), "--metrics-port", str(free_port()), "--log", str(tmp_path / "log")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(180, process.kill)  # a hung start fails the test instead of hanging it
    watchdog.start()
    try:
        # Ctrl-C only once `serve` says it is ready ("Ctrl-C stops it."): its own readiness poll may lag the
        # server's endpoint, and this test is about stopping a running server, not one still starting
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("Ctrl-C stops it."):
                break
        assert seen and seen[-1].startswith("Ctrl-C stops it."), "".join(seen)
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=5) as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        output = "".join(seen) + rest
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert f"127.0.0.1:{grpc_port}" in output and "stopped" in output
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1)
