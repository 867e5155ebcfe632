"""benchmarks/gpu_check.sh on this CPU machine: every way it could pass without proving anything ends non-zero, with
its reason. A fake `nvidia-smi` on PATH plays the GPU, and a fake interpreter answers the script's extension probe
(`gpu_check_tools.py probe`) as a CPU-only or wrong-architecture build would; everything else runs for real."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
H200 = "NVIDIA H200, 9.0, 580.159.04, 143771 MiB"


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(tmp_path: Path, *, smi: str | None, probe: dict | None = None, mode: str = "check",
         extra_env: dict | None = None) -> tuple[int, str, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if smi is not None:
        _executable(bin_dir / "nvidia-smi", f"#!/bin/sh\necho '{smi}'\n")
    python = sys.executable
    if probe is not None:
        (tmp_path / "probe.json").write_text(json.dumps(probe))
        python = str(bin_dir / "python")
        _executable(Path(python), "#!/bin/bash\n"
                    f'if [ "$1" = benchmarks/gpu_check_tools.py ] && [ "$2" = probe ]; then cat "{tmp_path}/probe.json"; '
                    f'exit 0; fi\nexec "{sys.executable}" "$@"\n')
    out = tmp_path / "out"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "OUT": str(out), "PYTHON": python,
           "EDGESEG_SKIP_BUILD": "1", "EDGESEG_GPU_WORK": str(tmp_path / "work"), **(extra_env or {})}
    done = subprocess.run(["bash", str(SCRIPT), mode], env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout + done.stderr, out


def _probe(has_cuda=True, devices=1, architectures=("90",)) -> dict:
    return {"importable": True, "has_cuda": has_cuda, "devices": devices, "architectures": list(architectures)}


def test_no_gpu_fails_at_once_naming_it(tmp_path):
    rc, output, out = _run(tmp_path, smi=None)
    assert rc != 0
    assert "GPU CHECK FAILED: no NVIDIA GPU: nvidia-smi is not on PATH" in output
    assert "GPU CHECK PASSED" not in output
    assert "GPU CHECK FAILED" in (out / "gpu_check.log").read_text()


def test_no_gpu_also_stops_the_training_call(tmp_path):
    rc, output, _ = _run(tmp_path, smi=None, mode="train")
    assert rc != 0 and "no NVIDIA GPU" in output


def test_a_cpu_only_extension_fails(tmp_path):
    rc, output, _ = _run(tmp_path, smi=H200, probe=_probe(has_cuda=False))
    assert rc != 0
    assert "built without CUDA kernels" in output and "GPU CHECK FAILED" in output
    assert "a. CUDA kernel parity" not in output  # nothing after the build runs on such a module


def test_an_extension_without_this_gpus_architecture_fails(tmp_path):
    rc, output, _ = _run(tmp_path, smi=H200, probe=_probe(architectures=("86", "89")))
    assert rc != 0
    assert "GPU CHECK FAILED: edgeseg._C has no sm_90 code for this GPU (built for 86, 89)" in output


def test_an_extension_that_sees_no_device_fails(tmp_path):
    rc, output, _ = _run(tmp_path, smi=H200, probe=_probe(devices=0))
    assert rc != 0 and "sees no CUDA device" in output


@pytest.mark.slow
def test_skipped_gpu_tests_fail_the_check(tmp_path):
    """With the probe satisfied, the real test files run here, where they skip for want of a GPU: each skipping step
    is a failure, and so are the GPU benchmark and TensorRT steps that cannot run."""
    rc, output, out = _run(tmp_path, smi=H200, probe=_probe())
    assert rc != 0
    assert "GPU CHECK FAILED: ops_cuda: tests failed or skipped" in output
    assert "GPU CHECK FAILED: gpu_real: tests failed or skipped" in output
    assert "SKIPPED" in output and "needs an NVIDIA GPU" in output  # the skip reasons are shown
    assert "GPU CHECK PASSED" not in output
    assert (out / "junit.tar.gz").is_file()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8, files  # the device tool brings back at most 8 files
