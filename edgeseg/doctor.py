"""`edgeseg doctor`: what this machine can run: GPUs, CUDA, TensorRT flavours, ONNX Runtime, OpenCV, the extension.

Every probe is guarded: a missing or broken package is reported, never raised, so the doctor runs on any machine,
including one without a GPU, a driver or OpenCV. `collect()` returns plain JSON-able data; `format_text()` prints it.
Module presence comes from `importlib.util.find_spec` and versions from `importlib.metadata` (no import needed);
only the probes that must ask a library something (ONNX Runtime's providers, OpenCV's build, CUDA) import it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from edgeseg._optional import is_available
# The one list of what TensorRT-RTX targets (its ComputeCapability enum): not 8.7 (Jetson Orin), 9.0 (H100/H200), 10.x.
from edgeseg.runtime.trt_flavours import RTX_COMPUTE_CAPABILITIES

# Module -> the flavour of TensorRT it is. `edgeseg export --engine` builds with the first of FLAVOURS importable
# (edgeseg.runtime.trt_flavours); lean and dispatch only run engines, so they are listed but never build.
TRT_MODULES = ("tensorrt", "tensorrt_rtx", "tensorrt_lean", "tensorrt_dispatch")

_NVIDIA_SMI_QUERY = "index,name,compute_cap,driver_version,memory.total"


# ----- small guarded helpers ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _dist_version(module: str, dists: Sequence[str] | None = None) -> tuple[str | None, str | None]:
    """(distribution name, version) of the installed distribution providing `module` (or the first of `dists`).

    A package installed outside pip (JetPack's TensorRT and OpenCV are .debs) has no distribution: (None, None)."""
    for name in dists or _distributions().get(module.split(".")[0], []):
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None


def _package(module: str, dists: Sequence[str] | None = None) -> dict[str, Any]:
    """{installed, version, distribution[, error]} for an optional package; imported only when pip does not know it."""
    info: dict[str, Any] = {"installed": is_available(module), "version": None, "distribution": None}
    if not info["installed"]:
        return info
    info["distribution"], info["version"] = _dist_version(module, dists)
    if info["version"] is None:  # not from pip (JetPack): ask the module itself
        try:
            info["version"] = getattr(importlib.import_module(module), "__version__", None)
        except Exception as exc:  # a broken install (missing .so, ABI mismatch) is a finding: report it
            info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _cuda_version(value: int) -> str:
    """CUDA's integer versions (12060) as text ('12.6')."""
    return f"{value // 1000}.{(value % 1000) // 10}"


# ----- GPUs and CUDA ------------------------------------------------------------------------------------------------
def _cuda_python_probe() -> dict[str, Any]:
    """Devices, driver and runtime versions as cuda-python's runtime API sees them."""
    out: dict[str, Any] = {"available": False, "devices": [], "driver_api_version": None, "runtime_version": None,
                           "error": None}
    if not is_available("cuda.bindings"):
        out["error"] = "cuda-python is not installed"
        return out
    try:
        from cuda.bindings import runtime as rt
    except ImportError as exc:
        out["error"] = f"cuda-python does not import: {exc}"
        return out
    ok = rt.cudaError_t.cudaSuccess
    out["available"] = True
    err, driver = rt.cudaDriverGetVersion()
    if err == ok:
        out["driver_api_version"] = _cuda_version(driver) if driver else None
    err, runtime = rt.cudaRuntimeGetVersion()
    if err == ok:
        out["runtime_version"] = _cuda_version(runtime)
    err, count = rt.cudaGetDeviceCount()
    if err != ok:
        name = rt.cudaGetErrorName(err)[1].decode()
        text = rt.cudaGetErrorString(err)[1].decode()
        why = f"cudaGetDeviceCount: {name} ({text})"
        if not driver:
            why += "; no NVIDIA driver is loaded (cudaDriverGetVersion reports none)"
        out["error"] = why
        return out
    for index in range(count):
        err, prop = rt.cudaGetDeviceProperties(index)
        if err != ok:
            out["error"] = f"cudaGetDeviceProperties({index}): {rt.cudaGetErrorName(err)[1].decode()}"
            continue
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        out["devices"].append({
            "index": index,
            "name": name.split("\x00")[0].strip(),
            "compute_capability": f"{prop.major}.{prop.minor}",
            "memory_mib": int(prop.totalGlobalMem) // 2**20,
            "integrated": bool(prop.integrated),  # Jetson: the GPU shares the SoC's memory
            "source": "cuda-python",
        })
    if count == 0:
        out["error"] = "cudaGetDeviceCount found 0 devices"
    return out


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Rows of `nvidia-smi --query-gpu=index,name,compute_cap,driver_version,memory.total --format=csv,noheader,nounits`."""
    devices = []
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 5 or not cells[0].isdigit():
            continue
        memory = cells[4]
        devices.append({
            "index": int(cells[0]),
            "name": cells[1],
            "compute_capability": cells[2] if re.fullmatch(r"\d+\.\d+", cells[2]) else None,
            "driver_version": cells[3],
            "memory_mib": int(memory) if memory.isdigit() else None,
            "source": "nvidia-smi",
        })
    return devices


def _nvidia_smi_probe() -> dict[str, Any]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"found": False, "devices": [], "error": None}
    try:
        done = subprocess.run([exe, f"--query-gpu={_NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"found": True, "devices": [], "error": f"nvidia-smi failed: {exc}"}
    if done.returncode != 0:
        return {"found": True, "devices": [], "error": (done.stderr or done.stdout).strip() or f"exit {done.returncode}"}
    return {"found": True, "devices": parse_nvidia_smi(done.stdout), "error": None}


# ----- which engine flavour, and does it support this GPU -----------------------------------------------------------
def _cc_tuple(cc: str | Sequence[int]) -> tuple[int, int]:
    if isinstance(cc, str):
        major, minor = cc.split(".")
        return int(major), int(minor)
    return int(cc[0]), int(cc[1])


def flavour_supports(flavour: str, compute_capability: str | Sequence[int]) -> tuple[bool | None, str]:
    """(supported, why) for building/running `flavour` engines on a GPU of `compute_capability` ('8.6' or (8, 6)).

    None means EdgeSeg does not know (TensorRT on a pre-Turing GPU: check NVIDIA's support matrix)."""
    major, minor = _cc_tuple(compute_capability)
    cc = f"{major}.{minor}"
    if flavour == "tensorrt_rtx":
        if cc in RTX_COMPUTE_CAPABILITIES:
            return True, f"TensorRT-RTX supports compute capability {cc}"
        return False, (
            f"TensorRT-RTX does NOT support compute capability {cc} (only {', '.join(RTX_COMPUTE_CAPABILITIES)}); "
            + ("on Jetson use JetPack's TensorRT" if (major, minor) == (8, 7) else "install TensorRT: "
               "pip install 'edgeseg[tensorrt]'")
            + ", or run the .onnx with --backend onnxruntime-cuda"
        )
    if flavour in ("tensorrt", "tensorrt_lean", "tensorrt_dispatch"):
        if (major, minor) >= (7, 5):
            return True, f"TensorRT 10/11 supports compute capability {cc}"
        return None, f"compute capability {cc} is older than Turing (7.5): check TensorRT's support matrix"
    raise ValueError(f"unknown TensorRT flavour {flavour!r}")


def _engine_report(gpus: list[dict[str, Any]], available: Callable[[], list[str]]) -> dict[str, Any]:
    flavours = available()  # find_spec only: never raises
    flavour = flavours[0] if flavours else None
    report: dict[str, Any] = {"flavour": flavour, "available": flavours, "gpus": []}
    if flavour is None:
        report["note"] = ("no TensorRT flavour importable: `edgeseg export --engine` cannot build engines; "
                          "pip install 'edgeseg[tensorrt]' or 'edgeseg[tensorrt-rtx]' (Jetson: JetPack's TensorRT)")
        return report
    for gpu in gpus:
        cc = gpu.get("compute_capability")
        if cc is None:
            supported, why = None, "compute capability unknown"
        else:
            supported, why = flavour_supports(flavour, cc)
        report["gpus"].append({"index": gpu["index"], "name": gpu["name"], "compute_capability": cc,
                               "supported": supported, "reason": why})
    if not gpus:
        report["note"] = (f"no GPU here to check; {flavour} can still build engines ahead of time for a target GPU"
                          if flavour == "tensorrt_rtx" else f"no GPU here: {flavour} needs one to build engines")
    return report


# ----- ONNX Runtime, OpenCV, the extension --------------------------------------------------------------------------
def _onnxruntime_report() -> dict[str, Any]:
    info = _package("onnxruntime")
    gpu_dist = [d for d in ("onnxruntime", "onnxruntime-gpu") if _installed_dist(d)]
    info["distributions"] = gpu_dist
    if len(gpu_dist) > 1:
        info["warning"] = ("both onnxruntime and onnxruntime-gpu are installed and overwrite each other's files: "
                           "pip uninstall onnxruntime onnxruntime-gpu, then install only onnxruntime-gpu")
    if not info["installed"]:
        return info
    try:
        import onnxruntime as ort

        info["providers"] = list(ort.get_available_providers())
    except Exception as exc:  # a broken onnxruntime-gpu (missing CUDA libs) can fail at import: report it
        info["error"] = f"{type(exc).__name__}: {exc}"
        return info
    from edgeseg.runtime.backends.onnxruntime import PROVIDERS, select_providers

    best = select_providers("auto", info["providers"])[0]
    info["auto_backend"] = next(name for ep, name in PROVIDERS.values() if ep == best)
    info["auto_provider"] = best
    return info


def _installed_dist(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def parse_opencv_build(info: str) -> dict[str, Any]:
    """GStreamer and GUI support from `cv2.getBuildInformation()`."""
    lines = info.splitlines()
    gstreamer = next((m.group(1).strip() for line in lines if (m := re.match(r"\s*GStreamer:\s*(.*)$", line))), "")
    gui = ""
    for index, line in enumerate(lines):
        match = re.match(r"(\s*)GUI:\s*(.*)$", line)
        if not match:
            continue
        gui = match.group(2).strip()
        if not gui:  # older builds: "GUI:" then indented "GTK+: YES (ver 3.24)" lines
            indent = len(match.group(1))
            found = []
            for sub in lines[index + 1 :]:
                if not sub.strip() or len(sub) - len(sub.lstrip()) <= indent:
                    break
                key, _, value = sub.strip().partition(":")
                if value.strip().upper().startswith("YES"):
                    found.append(key.strip())
            gui = ", ".join(found) or "NONE"
        break
    return {
        "gstreamer": gstreamer.upper().startswith("YES"),
        "gstreamer_detail": gstreamer or None,
        "gui": gui or "NONE",
        "gui_available": bool(gui) and gui.upper() != "NONE",
    }


def _opencv_report() -> dict[str, Any]:
    info = _package("cv2")
    if not info["installed"]:
        info["hint"] = ("pip install 'edgeseg[opencv]' (x86), or on Jetson JetPack's OpenCV in a "
                        "--system-site-packages venv")
        return info
    try:
        import cv2

        info["version"] = cv2.__version__
        info["path"] = str(Path(cv2.__file__).parent) if getattr(cv2, "__file__", None) else None
        info.update(parse_opencv_build(cv2.getBuildInformation()))
    except Exception as exc:  # e.g. JetPack's OpenCV built against numpy 1.x under numpy 2: report it
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _extension_report() -> dict[str, Any]:
    info: dict[str, Any] = {"built": is_available("edgeseg._C"), "has_cuda": False}
    if not info["built"]:
        info["hint"] = "reinstall edgeseg from source (pip install -e .) to build edgeseg._C; the runtime uses numpy meanwhile"
        return info
    try:
        from edgeseg import _C

        info["has_cuda"] = bool(_C.has_cuda())
        build = dict(getattr(_C, "build_info", {}))
        info["cuda"] = build.get("cuda")
        info["cuda_architectures"] = build.get("cuda_architectures")
        info["threading"] = getattr(_C, "threading", None)
    except Exception as exc:  # an extension built for another Python/CUDA fails at import: report it
        info["built"] = False
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _platform_report() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "system": platform.system(),
        "machine": platform.machine(),
        "jetson_l4t": None,
    }
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file():  # "# R36 (release), REVISION: 4.3, ..." -> "R36.4.3"
        text = tegra.read_text(errors="replace")
        match = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", text)
        info["jetson_l4t"] = f"R{match.group(1)}.{match.group(2)}" if match else text.strip().splitlines()[0]
    return info


def collect(*, cuda_probe: Callable[[], dict[str, Any]] = _cuda_python_probe,
            smi_probe: Callable[[], dict[str, Any]] = _nvidia_smi_probe,
            flavours: Callable[[], list[str]] | None = None) -> dict[str, Any]:
    """Everything the doctor knows, as JSON-able data. Tests pass fake probes to pose as machines with GPUs."""
    import edgeseg

    if flavours is None:
        from edgeseg.runtime.trt_flavours import available_flavours as flavours
    cuda = cuda_probe()
    smi = smi_probe()
    gpus = list(cuda["devices"])
    if not gpus and smi["devices"]:  # cuda-python missing or failing: nvidia-smi still names the GPUs
        gpus = list(smi["devices"])
    driver_release = next((d.get("driver_version") for d in smi["devices"] if d.get("driver_version")), None)
    if gpus:
        why_none = None
    else:
        reasons = [r for r in (cuda.get("error"), smi.get("error")) if r]
        if not smi["found"]:
            reasons.append("nvidia-smi not found")
        why_none = "; ".join(reasons) or "no device reported"
    return {
        "edgeseg": edgeseg.__version__,
        "platform": _platform_report(),
        "cuda": {
            "gpu_count": len(gpus),
            "no_gpu_reason": why_none,
            "driver_api_version": cuda.get("driver_api_version"),  # the newest CUDA the driver supports
            "driver_version": driver_release,  # the driver release (nvidia-smi), e.g. 550.54.15
            "runtime_version": cuda.get("runtime_version"),  # CUDA runtime cuda-python was built against
            "nvidia_smi": smi["found"],
        },
        "gpus": gpus,
        "tensorrt": {module: _package(module) for module in TRT_MODULES},
        "engine": _engine_report(gpus, flavours),
        "onnxruntime": _onnxruntime_report(),
        "opencv": _opencv_report(),
        "extension": _extension_report(),
        "cuda_python": _package("cuda.bindings", ("cuda-python", "cuda-bindings")),
        "pycuda": _package("pycuda"),
        "torch": _package("torch"),
    }


# ----- text ---------------------------------------------------------------------------------------------------------
def _pkg_line(info: dict[str, Any]) -> str:
    if not info["installed"]:
        return "not installed"
    text = info["version"] or "version unknown"
    if info.get("distribution"):
        text += f" ({info['distribution']})"
    else:
        text += " (not from pip: system package)"
    if info.get("error"):
        text += f"; BROKEN: {info['error']}"
    return text


def format_text(report: dict[str, Any]) -> str:
    """The report as the plain text `edgeseg doctor` prints."""
    p, cuda, eng = report["platform"], report["cuda"], report["engine"]
    out = [f"edgeseg {report['edgeseg']} on {p['system']} {p['machine']}, Python {p['python']}"
           + (f", Jetson L4T {p['jetson_l4t']}" if p["jetson_l4t"] else "")]
    out.append("")
    out.append("GPU")
    if report["gpus"]:
        for gpu in report["gpus"]:
            memory = f", {gpu['memory_mib']} MiB" if gpu.get("memory_mib") else ""
            out.append(f"  [{gpu['index']}] {gpu['name']}, compute capability {gpu['compute_capability']}{memory} "
                       f"(via {gpu['source']})")
    else:
        out.append(f"  no CUDA device visible: {cuda['no_gpu_reason']}")
    out.append(f"  driver: {cuda['driver_version'] or 'unknown (no nvidia-smi)'}; "
               f"CUDA supported by driver: {cuda['driver_api_version'] or 'none'}; "
               f"CUDA runtime (cuda-python): {cuda['runtime_version'] or 'n/a'}")
    out.append("")
    out.append("TensorRT")
    for module, info in report["tensorrt"].items():
        out.append(f"  {module:<18} {_pkg_line(info)}")
    if eng["flavour"]:
        out.append(f"  `edgeseg export --engine` builds with: {eng['flavour']}")
    for gpu in eng["gpus"]:
        verdict = {True: "yes", False: "NO", None: "unknown"}[gpu["supported"]]
        out.append(f"  {eng['flavour']} on [{gpu['index']}] {gpu['name']} ({gpu['compute_capability']}): {verdict}: "
                   f"{gpu['reason']}")
    if eng.get("note"):
        out.append(f"  {eng['note']}")
    out.append("")
    ort = report["onnxruntime"]
    out.append(f"ONNX Runtime       {_pkg_line(ort)}")
    if ort.get("providers") is not None:
        out.append(f"  providers: {', '.join(ort['providers'])}")
        out.append(f"  --backend auto runs .onnx as: {ort['auto_backend']} ({ort['auto_provider']})")
    if ort.get("warning"):
        out.append(f"  WARNING: {ort['warning']}")
    cv = report["opencv"]
    out.append(f"OpenCV             {_pkg_line(cv)}")
    if cv["installed"] and "gstreamer" in cv:
        out.append(f"  GStreamer: {'yes' if cv['gstreamer'] else 'no'} ({cv['gstreamer_detail']}); "
                   f"GUI: {cv['gui']}{'' if cv['gui_available'] else ' (no --display)'}; from {cv.get('path')}")
        if not cv["gstreamer"]:
            out.append("  no GStreamer: GStreamer pipelines and Jetson CSI cameras (nvarguscamerasrc) cannot be opened")
    if cv.get("hint"):
        out.append(f"  {cv['hint']}")
    ext = report["extension"]
    if ext["built"]:
        kernels = (f"CUDA kernels yes (CUDA {ext.get('cuda')}, sm {ext.get('cuda_architectures')})"
                   if ext["has_cuda"] else "CUDA kernels no (CPU kernels only)")
        out.append(f"edgeseg._C         built; {kernels}")
    else:
        out.append(f"edgeseg._C         not built: {ext.get('error') or ext.get('hint')}")
    out.append(f"cuda-python        {_pkg_line(report['cuda_python'])}")
    out.append(f"pycuda             {_pkg_line(report['pycuda'])}")
    out.append(f"torch              {_pkg_line(report['torch'])}  (training and export only; the runtime needs none)")
    return "\n".join(out)
