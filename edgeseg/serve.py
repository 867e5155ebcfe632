"""A local Triton Inference Server on a model repository: find the binary, start it, wait until ready, stop it.

The binary is `tritonserver` on PATH (an NGC container, a Triton install) or the one the `nvidia-pytriton` wheel
ships, which has the Python backend only and runs on a machine without a GPU. For the wheel's binary this module
lays out what pytriton's own launcher does: a scratch backend directory with the Python backend and the stub built
for this interpreter's Python version, this interpreter's libpython and the wheel's libraries on LD_LIBRARY_PATH,
and this interpreter's bin/ first on PATH, so the stub runs in this environment (the one edgeseg is installed in)
and the repository's Python-backend models import edgeseg.

Models are loaded explicitly (`--model-control-mode explicit`): those whose backend the server has, or the ones
asked for; a model whose backend is missing (an onnxruntime model on the wheel's binary) is skipped with a log line.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

from edgeseg._optional import require
from edgeseg.errors import BackendUnavailableError, ConfigError, OutputPathError

log = logging.getLogger(__name__)

SERVER_HINT = ("pip install --no-deps nvidia-pytriton (its tritonserver binary, Python backend only; --no-deps keeps "
               "NumPy 2), or run inside NVIDIA's tritonserver container where `tritonserver` is on PATH")
_SYSTEM_BACKENDS = Path("/opt/tritonserver/backends")  # where a Triton install keeps its backends


@dataclass(frozen=True)
class TritonBinary:
    """A tritonserver executable and, for the pytriton wheel's, the files to lay out around it."""

    path: Path
    wheel_root: Path | None = None  # pytriton/tritonserver of the wheel, None for a binary on PATH

    @property
    def libs(self) -> Path | None:
        return None if self.wheel_root is None else self.wheel_root.parent.parent / "nvidia_pytriton.libs"


def find_tritonserver() -> TritonBinary:
    """`tritonserver` on PATH, else the nvidia-pytriton wheel's; BackendUnavailableError naming how to get one."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonBinary(Path(on_path))
    spec = importlib.util.find_spec("pytriton")  # located, not imported: the wheel's Python side is not needed
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent / "tritonserver"
        if (root / "bin" / "tritonserver").is_file():
            return TritonBinary(root / "bin" / "tritonserver", root)
    raise BackendUnavailableError(f"no tritonserver found on PATH or in the nvidia-pytriton wheel; {SERVER_HINT}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def read_model_configs(repo: Path) -> dict[str, object]:
    """{model name: ModelConfig} of every model folder with a config.pbtxt, parsed with Triton's schema."""
    config_pb2 = require("tritonclient.grpc.model_config_pb2", "reading Triton model configurations")
    from google.protobuf import text_format

    configs: dict[str, object] = {}
    for config_file in sorted(repo.glob("*/config.pbtxt")):
        try:
            config = text_format.Parse(config_file.read_text(), config_pb2.ModelConfig())
        except text_format.ParseError as exc:
            raise ConfigError(f"{config_file} is not a valid Triton model configuration: {exc}") from exc
        configs[config.name or config_file.parent.name] = config
    return configs


def _backend_of(config) -> str:
    platform_backends = {"tensorrt_plan": "tensorrt", "onnxruntime_onnx": "onnxruntime"}
    return config.backend or platform_backends.get(config.platform, config.platform)


def _check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Each port asked for (0 = any) is distinct and free now: another server on the HTTP port would answer our
    readiness check, and we would print 'ready' with a gRPC address nobody listens on."""
    chosen = {flag: port for flag, port in ports.items() if port}
    if len(set(chosen.values())) != len(chosen):
        raise ConfigError(f"{', '.join(f'{f} {p}' for f, p in chosen.items())}: each port must be different")
    for flag, port in chosen.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is not "in use"
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ConfigError(f"{flag} {port} on {host} is in use ({exc.strerror}): another server listens "
                                  "there; stop it, or pass another port (0 picks a free one)") from exc


# A tritonserver log line saying a model failed to load: the server keeps running, never ready, until the timeout.
_LOAD_FAILURE = re.compile(r"failed to load|failed to (?:initialize|create)|error: creating server", re.IGNORECASE)


class TritonServer:
    """One tritonserver process on `repo`; a context manager that always stops it (SIGINT, then SIGKILL).

    Ports 0 are replaced by free ones. `log` is a file to write the server's output to (None: inherit stdout).
    """

    def __init__(self, repo: str | Path, *, host: str = "127.0.0.1", http_port: int = 0, grpc_port: int = 0,
                 metrics_port: int = 0, models: Sequence[str] | None = None, log_file: str | Path | None = None,
                 binary: TritonBinary | None = None) -> None:
        self.repo = Path(repo)
        if not self.repo.is_dir():
            raise ConfigError(f"model repository {self.repo} is not a folder")
        for flag, port in (("--http-port", http_port), ("--grpc-port", grpc_port), ("--metrics-port", metrics_port)):
            if not 0 <= port <= 65535:
                raise ConfigError(f"{flag} must be a TCP port (0-65535; 0 picks a free one), got {port}")
        self.host = host
        _check_ports_free(host, {"--http-port": http_port, "--grpc-port": grpc_port, "--metrics-port": metrics_port})
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.binary = binary or find_tritonserver()
        self.log_file = Path(log_file) if log_file is not None else None
        self.models = self._models_to_load(models)
        self.process: subprocess.Popen | None = None
        self._scratch: Path | None = None
        self._log_handle: IO[bytes] | None = None
        self._relay: threading.Thread | None = None
        self._failure: str | None = None  # the first log line saying a model failed to load

    # ----- addresses ---------------------------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"{self._client_host()}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host()}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host()}:{self.metrics_port}/metrics"

    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    # ----- what to load ----------------------------------------------------------------------------------------------
    def _available_backends(self) -> set[str] | None:
        """Backends this binary has: the wheel's Python backend, an install's folder listing, or None (unknown)."""
        if self.binary.wheel_root is not None:
            return {p.name for p in (self.binary.wheel_root / "backends").iterdir() if p.is_dir()}
        if _SYSTEM_BACKENDS.is_dir():
            return {p.name for p in _SYSTEM_BACKENDS.iterdir() if p.is_dir()}
        return None

    def _models_to_load(self, wanted: Sequence[str] | None) -> list[str]:
        configs = read_model_configs(self.repo)
        if not configs:
            raise ConfigError(f"model repository {self.repo} has no model (no */config.pbtxt)")
        if wanted:
            unknown = sorted(set(wanted) - set(configs))
            if unknown:
                raise ConfigError(f"--model {unknown} not in {self.repo}; it has {sorted(configs)}")
            return list(dict.fromkeys(wanted))
        available = self._available_backends()
        chosen = [name for name, config in configs.items() if available is None or _backend_of(config) in available]
        for name in sorted(set(configs) - set(chosen)):
            log.info("not loading %s: this tritonserver has no %s backend (it has %s)", name,
                     _backend_of(configs[name]), ", ".join(sorted(available or ())))
        if not chosen:
            raise BackendUnavailableError(
                f"this tritonserver ({self.binary.path}) has none of the backends the models in {self.repo} need "
                f"({', '.join(sorted({_backend_of(c) for c in configs.values()}))}); {SERVER_HINT}")
        return chosen

    # ----- the wheel's layout ------------------------------------------------------------------------------------------
    def _wheel_backends(self, scratch: Path) -> Path:
        """scratch/backends/python with the stub for this Python version (pytriton's launcher does the same)."""
        root = self.binary.wheel_root
        assert root is not None
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            have = sorted(p.name for p in (root / "python_backend_stubs").iterdir())
            raise BackendUnavailableError(f"the nvidia-pytriton wheel has no Python-backend stub for Python {version} "
                                          f"(it has {', '.join(have)}); run edgeseg serve with one of those")
        python = scratch / "backends" / "python"
        python.mkdir(parents=True)
        for item in (root / "backends" / "python").iterdir():
            if item.is_file():
                (python / item.name).symlink_to(item)
        shutil.copy2(stub, python / "triton_python_backend_stub")
        return scratch / "backends"

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        if self.binary.wheel_root is not None:  # the stub links libpython3.X: this interpreter's first
            libs = [sysconfig.get_config_var("LIBDIR") or "", str(self.binary.libs), env.get("LD_LIBRARY_PATH", "")]
            env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        return env

    def command(self, backend_dir: Path | None) -> list[str]:
        args = [str(self.binary.path), f"--model-repository={self.repo.resolve()}",
                "--model-control-mode=explicit", *(f"--load-model={m}" for m in self.models),
                f"--http-address={self.host}", f"--http-port={self.http_port}",
                f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
                "--allow-gpu-metrics=false", "--exit-timeout-secs=10", "--strict-readiness=true"]
        if backend_dir is not None:
            args.append(f"--backend-directory={backend_dir}")
        return args

    # ----- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 120.0) -> "TritonServer":
        """Start the server and wait until it is ready; on failure it is stopped and the log's end is in the error."""
        if self.process is not None:
            raise ConfigError("this TritonServer is already started")
        self._scratch = Path(tempfile.mkdtemp(prefix="edgeseg-triton-"))
        try:
            backend_dir = self._wheel_backends(self._scratch) if self.binary.wheel_root is not None else None
            output = None
            if self.log_file is not None:
                try:
                    self._log_handle = open(self.log_file, "ab")
                except OSError as exc:
                    raise OutputPathError(f"cannot write the server log {self.log_file}: {exc.strerror}") from exc
                output = self._log_handle
            log.info("starting %s", " ".join(self.command(backend_dir)))
            # its own session: a Ctrl-C in the terminal reaches only us, and we stop the server in order
            # its output is relayed (to --log or our stdout) line by line, so a load failure is seen at once
            self.process = subprocess.Popen(self.command(backend_dir), env=self._environment(), stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, start_new_session=True)
            self._relay = threading.Thread(target=self._relay_output, args=(output,), daemon=True)
            self._relay.start()
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _relay_output(self, output: IO[bytes] | None) -> None:
        """Copy the server's output to `output` (the log file) or our stdout, noting the first load failure."""
        assert self.process is not None and self.process.stdout is not None
        binary = output if output is not None else getattr(sys.stdout, "buffer", None)
        for line in self.process.stdout:
            text = line.decode(errors="replace")
            if self._failure is None and _LOAD_FAILURE.search(text):
                self._failure = text.strip()
            try:
                if binary is not None:
                    binary.write(line)
                    binary.flush()
                else:  # stdout replaced by a text stream (a test's capture)
                    sys.stdout.write(text)
            except (OSError, ValueError):  # our stdout closed, or the log file closed by stop()
                pass

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self._failure is not None:
                raise BackendUnavailableError(f"tritonserver could not load a model, so it will never be ready: "
                                              f"{self._failure}")
            if self.process.poll() is not None:
                raise BackendUnavailableError(
                    f"tritonserver exited with status {self.process.returncode} before it was ready{self._log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise BackendUnavailableError(f"tritonserver was not ready within {timeout_s:g} s{self._log_tail()}")

    def _log_tail(self, lines: int = 25) -> str:
        if self.log_file is None or not self.log_file.is_file():
            return " (see its output above)"
        tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        return ":\n" + "\n".join(tail)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Stop the server (SIGINT: it unloads its models; SIGKILL after timeout_s); returns its exit status."""
        status = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("tritonserver did not stop within %g s; killing it", timeout_s)
                    self.process.kill()
                    self.process.wait()
            status = self.process.returncode
        if self._relay is not None:
            self._relay.join(timeout=5)  # the pipe ends with the process: the log gets its last lines
            self._relay = None
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        return status

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["TritonServer", "TritonBinary", "find_tritonserver", "free_port", "read_model_configs"]
