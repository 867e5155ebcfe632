"""The README's Jetson install, rehearsed on Debian: a venv with --system-site-packages over /usr/bin/python3, whose
OpenCV is Debian's python3-opencv (built with GStreamer, as JetPack's is), and EdgeSeg installed as the Jetson
section says, minus CUDA (no cuda-python, a CPU-only edgeseg._C).

On x86 `pip install '.[jetson]'` would bring opencv-python-headless (the requirement is skipped on aarch64 only), so
the rehearsal installs what the extra leaves on a Jetson: EdgeSeg with --no-deps, then numpy<2 (Debian's 1.24
satisfies it) and tqdm. The only network it uses is the package index (scikit-build-core and pybind11 for the
build, tqdm). Then: `edgeseg doctor` says GStreamer: yes, `edgeseg run` reads real GStreamer pipelines (videotestsrc,
filesrc ! decodebin on a clip, rtspsrc against the real RTSP server) and writes H.264 when that OpenCV can.
Skipped only when a Debian package is missing, which the skip names (.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.pipeline.sources import jetson_csi_pipeline

from .rtsp_helpers import SYSTEM_PYTHON, RtspServer, rtsp_server_missing, start_run

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# What each GStreamer element the rehearsal uses comes from.
_ELEMENTS = {"videotestsrc": "gstreamer1.0-plugins-base", "appsink": "gstreamer1.0-plugins-base",
             "decodebin": "gstreamer1.0-plugins-base", "x264enc": "gstreamer1.0-plugins-ugly",
             "mp4mux": "gstreamer1.0-plugins-good", "rtspsrc": "gstreamer1.0-plugins-good",
             "rtph264depay": "gstreamer1.0-plugins-good", "avdec_h264": "gstreamer1.0-libav"}


def _system_missing() -> str | None:
    """None when Debian's python, its OpenCV with GStreamer, venv and the GStreamer elements are there."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (Debian's python3)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import cv2, ensurepip; print(cv2.getBuildInformation())"],
                           capture_output=True, text=True, timeout=60)
    if "No module named 'cv2'" in probe.stderr:
        return "Debian package python3-opencv is not installed"
    if "No module named 'ensurepip'" in probe.stderr:
        return "Debian package python3-venv is not installed"
    if probe.returncode != 0:
        return probe.stderr.strip().splitlines()[-1]
    if shutil.which("gst-inspect-1.0") is None or shutil.which("gst-launch-1.0") is None:
        return "Debian package gstreamer1.0-tools is not installed"
    for element, package in _ELEMENTS.items():
        if subprocess.run(["gst-inspect-1.0", "--exists", element]).returncode != 0:
            return f"GStreamer element {element} missing: Debian package {package}"
    return None


@pytest.fixture(scope="module")
def jetson_venv(tmp_path_factory) -> Path:
    missing = _system_missing()
    if missing:
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("jetson")
    venv = root / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # -Cbuild-dir: our own build tree, so the checkout's build/ (the dev venv's, same wheel tag) is left alone
    subprocess.run([*pip, "--no-deps", f"--config-settings=build-dir={root / 'build'}",
                    "--config-settings=cmake.define.EDGESEG_CUDA=OFF", str(REPO)], check=True, timeout=900)
    subprocess.run([*pip, "numpy<2", "tqdm"], check=True, timeout=300)
    return venv


def _python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def _run(venv: Path, tmp_path: Path, *argv: str, timeout: float = 120) -> tuple[int, str]:
    process = start_run(tmp_path, *argv, python=_python(venv))
    try:
        return process.wait(timeout=timeout), process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _masks(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))]


def test_the_venv_uses_debians_opencv_and_doctor_reports_gstreamer(jetson_venv, tmp_path):
    # cwd: not the checkout, whose edgeseg/ would shadow the installed package
    where = subprocess.run([_python(jetson_venv), "-c", "import cv2, edgeseg, edgeseg._C, numpy; "
                            "print(cv2.__file__); print(numpy.__version__); print(edgeseg.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert where[2].startswith(str(jetson_venv))  # the installed EdgeSeg
    assert where[0].startswith("/usr/lib/python3/dist-packages/")  # JetPack's / Debian's, not a pip wheel
    assert int(where[1].split(".")[0]) < 2
    listed = subprocess.run([_python(jetson_venv), "-m", "pip", "list", "--format=json"], capture_output=True,
                            text=True, check=True).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert not names & {"opencv-python", "opencv-python-headless", "cuda-python"}, names
    text = subprocess.run([str(jetson_venv / "bin" / "edgeseg"), "doctor"], capture_output=True, text=True,
                          cwd=tmp_path).stdout
    assert "GStreamer: yes" in text, text


def test_run_reads_a_videotestsrc_pipeline_and_writes_h264_when_opencv_can(jetson_venv, tmp_path):
    masks, out = tmp_path / "masks", tmp_path / "out.mp4"
    pipeline = ("videotestsrc is-live=true pattern=blue ! video/x-raw,width=160,height=120,framerate=30/1 ! "
                "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1")
    code, output = _run(jetson_venv, tmp_path, "--source", pipeline, "--max-frames", "20", "--masks", str(masks),
                        "--out", str(out))
    assert code == 0, output
    found = _masks(masks)
    assert len(found) == 20 and all(m.shape == (120, 160) and np.all(m == 1) for m in found)  # blue: class 1
    # the reference: can this OpenCV open an H.264 writer at all? (asked here, not through EdgeSeg)
    probe = textwrap.dedent(f"""
        import cv2
        writer = cv2.VideoWriter({str(tmp_path / 'probe.mp4')!r}, cv2.VideoWriter.fourcc(*"avc1"), 30, (64, 48))
        print(writer.isOpened())
        written = cv2.VideoCapture({str(out)!r})
        print(int(written.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().lower())
        print(int(written.get(cv2.CAP_PROP_FRAME_COUNT)))
        """)
    can, fourcc, frames = subprocess.run([_python(jetson_venv), "-c", probe], capture_output=True, text=True,
                                         check=True, cwd=tmp_path).stdout.split()
    assert int(frames) == 20
    if can == "True":
        assert fourcc in ("avc1", "h264"), fourcc
        assert "no H.264 encoder" not in output
    else:
        assert fourcc in ("mp4v", "fmp4") and "no H.264 encoder" in output


def test_run_reads_filesrc_decodebin_on_an_h264_clip(jetson_venv, tmp_path):
    clip = tmp_path / "clip.mp4"
    subprocess.run(["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=30", "pattern=green", "!",
                    "video/x-raw,width=160,height=120,framerate=30/1", "!", "x264enc", "!", "mp4mux", "!",
                    "filesink", f"location={clip}"], check=True, timeout=60)
    masks = tmp_path / "masks"
    pipeline = (f"filesrc location={clip} ! decodebin ! videoconvert ! video/x-raw,format=BGR ! appsink")
    code, output = _run(jetson_venv, tmp_path, "--source", pipeline, "--max-frames", "30", "--masks", str(masks))
    assert code == 0, output
    found = _masks(masks)
    assert len(found) == 30 and all(np.all(m == 2) for m in found)  # videotestsrc's green: class 2


def test_run_reads_rtspsrc_from_the_real_rtsp_server(jetson_venv, tmp_path):
    missing = rtsp_server_missing()
    if missing:
        pytest.skip(missing)
    server = RtspServer()
    server.start()
    try:
        masks = tmp_path / "masks"
        pipeline = (f"rtspsrc location={server.url} latency=0 ! rtph264depay ! avdec_h264 ! videoconvert ! "
                    "video/x-raw,format=BGR ! appsink drop=true max-buffers=1")
        code, output = _run(jetson_venv, tmp_path, "--source", pipeline, "--max-frames", "20", "--masks",
                            str(masks), "--stats", str(tmp_path / "stats.json"))
    finally:
        server.kill()
    assert code == 0, output
    assert json.loads((tmp_path / "stats.json").read_text())["sources"][0]["kind"] == "gstreamer"
    found = _masks(masks)
    assert len(found) == 20 and all(m.shape == (240, 320) and np.all(m[24:] == 1) for m in found)


def test_the_csi_template_parses_once_the_camera_is_swapped_for_videotestsrc(jetson_venv, tmp_path):
    template = jetson_csi_pipeline()
    assert template.startswith("nvarguscamerasrc sensor-id=0 !")
    swapped = template.replace("nvarguscamerasrc sensor-id=0", "videotestsrc num-buffers=5", 1)
    # gst_parse_launch, the parser of gst-launch-1.0: the syntax is sound and the only unknown element is
    # nvvidconv (Jetson's converter; a syntax error would be GST_PARSE_ERROR_SYNTAX, code 0)
    check = textwrap.dedent(f"""
        import gi
        gi.require_version("Gst", "1.0")
        from gi.repository import GLib, Gst
        Gst.init(None)
        context = Gst.ParseContext.new()
        try:
            Gst.parse_launch_full({swapped!r}, context, Gst.ParseFlags.FATAL_ERRORS)
            print("parsed")
        except GLib.Error as error:
            print(error.code == Gst.ParseError.NO_SUCH_ELEMENT, ",".join(context.get_missing_elements()))
        """)
    result = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() in (["parsed"], ["True", "nvvidconv"]), result.stdout + result.stderr
    # and with Jetson's converter and NVMM memory swapped for their desktop equivalents it runs end to end
    desktop = swapped.replace("(memory:NVMM)", "").replace("nvvidconv flip-method=0", "videoconvert")
    assert desktop.endswith(" ! appsink drop=true max-buffers=1")  # gst-launch-1.0 cannot drain an appsink
    launched = subprocess.run(["gst-launch-1.0", "-q", *desktop.rsplit(" ! ", 1)[0].split(), "!", "fakesink"],
                              capture_output=True, text=True, timeout=60)
    assert launched.returncode == 0, launched.stderr
    masks = tmp_path / "masks"
    code, output = _run(jetson_venv, tmp_path, "--source", desktop.replace("num-buffers=5", "is-live=true"),
                        "--max-frames", "5", "--masks", str(masks))
    assert code == 0, output
    assert [m.shape for m in _masks(masks)] == [(720, 1280)] * 5
