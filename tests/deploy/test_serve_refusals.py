"""`edgeseg serve` refuses a port another server holds (it used to print 'ready' with a gRPC address nobody listened
on), and a model that fails to load ends the start at once with tritonserver's own log line."""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from edgeseg.cli import main
from edgeseg.errors import BackendUnavailableError

pytest.importorskip("tritonclient.grpc", reason="tritonclient not installed (pip install 'edgeseg[triton]')")


def _server_binary():
    from edgeseg.serve import find_tritonserver

    try:
        return find_tritonserver()
    except BackendUnavailableError as exc:
        pytest.skip(f"no tritonserver: {exc}")


def test_serve_refuses_an_http_port_another_server_holds(triton_export, tmp_path, capsys):
    _server_binary()
    with socket.socket() as other:  # "another server" listening on the HTTP port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        code = main(["serve", str(triton_export["repo"]), "--http-port", str(port), "--grpc-port", "0",
                     "--metrics-port", "0", "--log", str(tmp_path / "log")])
    err = capsys.readouterr().err
    assert code == 2 and f"--http-port {port} on 127.0.0.1 is in use" in err and "Traceback" not in err
    assert not (tmp_path / "log").exists()  # refused before tritonserver was started


def test_serve_refuses_the_same_port_twice(triton_export, capsys):
    assert main(["serve", str(triton_export["repo"]), "--http-port", "18123", "--grpc-port", "18123"]) == 2
    assert "each port must be different" in capsys.readouterr().err


def test_a_model_that_fails_to_load_ends_the_start_with_its_log_line(triton_export, tmp_path, capsys):
    _server_binary()
    repo = tmp_path / "repo"
    shutil.copytree(triton_export["repo"], repo)
    (model_py,) = repo.glob("*/1/model.py")
    model_py.write_text(model_py.read_text() + "\nraise RuntimeError('broken on purpose')\n")
    started = time.monotonic()
    code = main(["serve", str(repo), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
                 "--startup-timeout", "100", "--log", str(tmp_path / "log")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback (most recent call last)" not in err.splitlines()[0]
    assert "tritonserver could not load a model" in err and "broken on purpose" in err, err
    assert time.monotonic() - started < 100  # not the whole --startup-timeout
    assert "broken on purpose" in (tmp_path / "log").read_text()  # the log still gets every line
