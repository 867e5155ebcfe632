"""`edgeseg doctor`: its facts about this machine checked against independent sources, and the TensorRT-RTX
support decision checked on fake devices (Jetson Orin 8.7, H100 9.0, RTX 3090 8.6, RTX 5090 12.0)."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from edgeseg import doctor
from edgeseg.cli import main


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@pytest.fixture(scope="module")
def report():
    return doctor.collect()


def test_json_command_exits_0_and_prints_the_report(capsys):
    assert main(["doctor", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"gpus", "cuda", "tensorrt", "engine", "onnxruntime", "opencv", "extension", "torch"} <= set(printed)


def test_text_command_exits_0(capsys, report):
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    if not report["gpus"]:
        assert "no CUDA device visible: " in text
    for line in ("TensorRT", "ONNX Runtime", "OpenCV", "edgeseg._C", "cuda-python", "pycuda", "torch"):
        assert line in text


def test_gpus_match_cuda_python(report):
    if not _found("cuda.bindings"):
        assert "cuda-python is not installed" in report["cuda"]["no_gpu_reason"] or report["gpus"]
        return
    from cuda.bindings import runtime as rt

    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess:
        assert report["gpus"] == [] or all(g["source"] == "nvidia-smi" for g in report["gpus"])
        assert rt.cudaGetErrorName(err)[1].decode() in report["cuda"]["no_gpu_reason"]
        return
    assert len(report["gpus"]) == count
    for gpu in report["gpus"]:
        _, prop = rt.cudaGetDeviceProperties(gpu["index"])
        assert gpu["compute_capability"] == f"{prop.major}.{prop.minor}"


def test_cuda_runtime_version_matches_cuda_python(report):
    if not _found("cuda.bindings"):
        pytest.skip("cuda-python is not installed")
    from cuda.bindings import runtime as rt

    version = rt.cudaRuntimeGetVersion()[1]
    assert report["cuda"]["runtime_version"] == f"{version // 1000}.{version % 1000 // 10}"


def _doctor_json_with(tmp_path, *, hidden=(), packages=None) -> dict:
    """`edgeseg doctor --json` in a fresh interpreter on a machine we describe: `packages` {module: (pip version or
    None, module __version__)} are installed as stub packages on PYTHONPATH (pip metadata only when a pip version is
    given, as JetPack's .deb packages have none); `hidden` modules cannot be imported, as if not installed."""
    site = tmp_path / "site"
    site.mkdir()
    for module, (pip_version, module_version) in (packages or {}).items():
        (site / module).mkdir()
        (site / module / "__init__.py").write_text(f"__version__ = {module_version!r}\n")
        if pip_version:
            info = site / f"{module}-{pip_version}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {pip_version}\n")
            (info / "top_level.txt").write_text(f"{module}\n")
    code = (f"import sys\nfor name in {list(hidden)!r}:\n    sys.modules[name] = None\n"
            "from edgeseg.cli import main\nsys.exit(main(['doctor', '--json']))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_tensorrt_flavours_as_installed_on_a_machine_we_describe(tmp_path):
    report = _doctor_json_with(tmp_path, hidden=["tensorrt", "tensorrt_rtx"], packages={
        "tensorrt_lean": ("10.99.1", "not what pip says"),  # pip knows it: its version is pip's
        "tensorrt_dispatch": (None, "10.98.0"),  # a JetPack-style install: the module says its version
    })["tensorrt"]
    assert set(report) == {"tensorrt", "tensorrt_rtx", "tensorrt_lean", "tensorrt_dispatch"}
    assert (report["tensorrt"]["installed"], report["tensorrt"]["version"]) == (False, None)
    assert (report["tensorrt_rtx"]["installed"], report["tensorrt_rtx"]["version"]) == (False, None)
    assert (report["tensorrt_lean"]["installed"], report["tensorrt_lean"]["version"]) == (True, "10.99.1")
    assert (report["tensorrt_dispatch"]["installed"], report["tensorrt_dispatch"]["version"]) == (True, "10.98.0")


def test_engine_flavour_is_the_one_export_would_use(report):
    from edgeseg.runtime.trt_flavours import available_flavours

    flavours = available_flavours()
    assert report["engine"]["flavour"] == (flavours[0] if flavours else None)


def test_onnxruntime_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    info = doctor.collect()["onnxruntime"]
    assert info["installed"] and info["version"] == ort.__version__
    assert info["providers"] == ort.get_available_providers()
    best = next((p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
                 if p in ort.get_available_providers()), "CPUExecutionProvider")
    assert info["auto_provider"] == best


def test_opencv_matches_its_build_information(report):
    cv2 = pytest.importorskip("cv2")
    build = cv2.getBuildInformation()
    info = report["opencv"]
    assert info["version"] == cv2.__version__
    assert info["gstreamer"] == bool(re.search(r"^\s*GStreamer:\s+YES", build, re.M))
    assert info["gui_available"] == (re.search(r"^\s*GUI:\s+NONE\s*$", build, re.M) is None)


def test_extension_matches_edgeseg_C(report):
    try:  # what a user sees: does the extension import?
        from edgeseg import _C
    except ImportError:
        assert report["extension"]["built"] is False
        return
    assert report["extension"]["built"] is True and report["extension"]["has_cuda"] == _C.has_cuda()


def test_optional_packages_as_installed_on_a_machine_we_describe(tmp_path):
    report = _doctor_json_with(tmp_path, hidden=["torch"], packages={"pycuda": ("2099.1", "2099.1")})
    assert (report["torch"]["installed"], report["torch"]["version"]) == (False, None)
    assert (report["pycuda"]["installed"], report["pycuda"]["version"]) == (True, "2099.1")
    assert report["pycuda"]["distribution"] == "pycuda"


# ----- the TensorRT-RTX decision, on fake devices --------------------------------------------------------------------
@pytest.mark.parametrize(
    "cc, supported",
    [("7.5", True), ("8.0", True), ("8.6", True), ("8.7", False), ("8.9", True), ("9.0", False), ("10.0", False),
     ("12.0", True), ("12.1", True)],
)
def test_tensorrt_rtx_support(cc, supported):
    ok, why = doctor.flavour_supports("tensorrt_rtx", cc)
    assert ok is supported
    assert cc in why and ("does NOT support" in why) is (not supported)


@pytest.mark.parametrize("cc", ["8.7", "9.0", "8.6", "12.0"])
def test_tensorrt_supports_what_rtx_does_not(cc):
    assert doctor.flavour_supports("tensorrt", cc)[0] is True


def _fake_cuda(*devices):
    def probe():
        return {"available": True, "error": None, "driver_api_version": "12.6", "runtime_version": "12.6",
                "devices": [{"index": i, "name": name, "compute_capability": cc, "memory_mib": 8192,
                             "source": "cuda-python"} for i, (name, cc) in enumerate(devices)]}
    return probe


def _no_smi():
    return {"found": False, "devices": [], "error": None}


def test_fake_machine_with_orin_h100_and_rtx():
    report = doctor.collect(
        cuda_probe=_fake_cuda(("Orin", "8.7"), ("NVIDIA H100 80GB HBM3", "9.0"), ("NVIDIA GeForce RTX 3090", "8.6"),
                              ("NVIDIA GeForce RTX 5090", "12.0")),
        smi_probe=_no_smi, flavours=lambda: ["tensorrt_rtx"],
    )
    assert [g["supported"] for g in report["engine"]["gpus"]] == [False, False, True, True]
    assert "JetPack's TensorRT" in report["engine"]["gpus"][0]["reason"]
    text = doctor.format_text(report)
    assert "tensorrt_rtx on [1] NVIDIA H100 80GB HBM3 (9.0): NO: TensorRT-RTX does NOT support" in text
    assert "tensorrt_rtx on [2] NVIDIA GeForce RTX 3090 (8.6): yes" in text
    assert "no CUDA device visible" not in text


def test_nvidia_smi_names_the_gpus_when_cuda_python_cannot():
    smi_text = "0, NVIDIA GeForce RTX 4090, 8.9, 550.54.15, 24564\n"

    def failing_cuda():
        return {"available": False, "devices": [], "error": "cuda-python is not installed",
                "driver_api_version": None, "runtime_version": None}

    report = doctor.collect(
        cuda_probe=failing_cuda,
        smi_probe=lambda: {"found": True, "devices": doctor.parse_nvidia_smi(smi_text), "error": None},
        flavours=lambda: ["tensorrt"],
    )
    assert report["gpus"] == [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9",
                               "driver_version": "550.54.15", "memory_mib": 24564, "source": "nvidia-smi"}]
    assert report["cuda"]["driver_version"] == "550.54.15"
    assert report["engine"]["gpus"][0]["supported"] is True


def test_no_gpu_says_why():
    def no_driver():
        return {"available": True, "devices": [], "driver_api_version": None, "runtime_version": "13.0",
                "error": "cudaGetDeviceCount: cudaErrorNoDevice (no CUDA-capable device is detected)"}

    report = doctor.collect(cuda_probe=no_driver, smi_probe=_no_smi, flavours=lambda: [])
    text = doctor.format_text(report)
    assert "no CUDA device visible: cudaGetDeviceCount: cudaErrorNoDevice" in text
    assert "nvidia-smi not found" in text
    assert report["engine"]["flavour"] is None and "cannot build engines" in report["engine"]["note"]


# ----- OpenCV build information, both layouts ------------------------------------------------------------------------
def test_parse_opencv_build_jetson_style():
    info = doctor.parse_opencv_build(
        "  GUI:                           GTK2\n    GTK+:                        YES (ver 2.24.33)\n"
        "  Video I/O:\n    FFMPEG:                      YES\n    GStreamer:                   YES (1.20.3)\n"
    )
    assert info == {"gstreamer": True, "gstreamer_detail": "YES (1.20.3)", "gui": "GTK2", "gui_available": True}


def test_parse_opencv_build_old_style_gui_block_and_headless():
    old = "  GUI: \n    QT:                          NO\n    GTK+ 3.x:                    YES (ver 3.24.20)\n  Media I/O: \n"
    assert doctor.parse_opencv_build(old)["gui"] == "GTK+ 3.x"
    headless = doctor.parse_opencv_build("  GUI:                           NONE\n    GStreamer:                   NO\n")
    assert headless["gui_available"] is False and headless["gstreamer"] is False


def test_parse_nvidia_smi_skips_noise_and_unknown_fields():
    rows = doctor.parse_nvidia_smi("0, Orin, [N/A], 540.4.0, [N/A]\nNo devices were found\n")
    assert rows == [{"index": 0, "name": "Orin", "compute_capability": None, "driver_version": "540.4.0",
                     "memory_mib": None, "source": "nvidia-smi"}]
