"""The README's examples run as tests: every command of its ```bash blocks (and every `.venv/bin/edgeseg ...` command
quoted in its prose), its Python snippet, and its command table.

Commands run in-process through `edgeseg.cli.main`, on tiny settings, in README order, in one workspace:

- paths: `runs/...` -> WORKSPACE/runs/...; `../shared/data/camvid` -> a tiny dataset in CamVid's folder layout
  (train/ and val/ with images/ + labels/, classes.json, a short .mp4 at its root) written by the test;
- sizes: `TINY` below (one epoch, a few seconds of training, 64x80 images, short benchmarks); the INT8 accuracy gate
  (`--miou-threshold`) is opened, since a model trained for seconds says nothing about quantisation loss;
- `make demo` is exempt (it sets up .venv, then runs `edgeseg demo --out runs/demo`: the workspace fixture runs
  that command, tiny, because later commands read runs/demo); `make test` is exempt (it is this suite);
- `NOT_RUN`: environment set-up (package installs, venvs, shell state) is not an example: it is listed with its
  reason (test_setup_lines_are_only_setup), not run;
- `NEEDS`: commands that need a GPU, TensorRT, a camera, a display or a server are skipped when this machine lacks
  it, with the reason.

A command the tables do not know makes its test fail, so a new README section is either run or explicitly excused.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from edgeseg.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CAMVID = "../shared/data/camvid"
EDGESEG = ("edgeseg", ".venv/bin/edgeseg")

# Commands not run here, by how they start: (prefix, reason).
NOT_RUN = (
    ("make demo", "exempt: sets up .venv, then runs `edgeseg demo --out runs/demo` (the workspace fixture runs it tiny)"),
    ("make test", "exempt: it is this test suite"),
    ("make ", "exempt: Makefile targets set up the environment this test runs in"),
    ("sudo ", "installs system packages"),
    ("apt ", "installs system packages"),
    ("pip ", "installs packages into the environment this test runs in"),
    ("python3 -m venv", "creates the environment this test runs in"),
    ("python -m venv", "creates the environment this test runs in"),
    (". ", "changes the calling shell (activates a venv)"),
    ("source ", "changes the calling shell (activates a venv)"),
    ("export ", "changes the calling shell's environment"),
    ("git clone", "fetches the repository this test runs in"),
    ("ssh ", "runs on the user's laptop, forwarding a port of another machine (the device)"),
)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class Need:
    """A command that needs something this machine may lack: (test on argv, what it needs, is it here)."""

    applies: Callable[[list[str]], bool]
    what: str
    available: Callable[[], bool]


NEEDS = (
    Need(lambda argv: "--engine" in argv, "TensorRT (tensorrt or tensorrt_rtx) to build engines",
         lambda: _has("tensorrt") or _has("tensorrt_rtx")),
    # bench is exempt: an engine it cannot run becomes a "skipped" row, and the command still succeeds
    Need(lambda argv: argv[0] != "bench" and any(a.endswith((".engine", ".plan")) for a in argv[2:3]),
         "an NVIDIA GPU to run an engine", _has_gpu),
    Need(lambda argv: any(a.startswith("onnxruntime-") for a in argv), "onnxruntime-gpu and an NVIDIA GPU",
         lambda: _has_gpu() and _has("onnxruntime") and _gpu_providers()),
    Need(lambda argv: any(a.startswith(("rtsp://", "http://", "https://")) for a in argv), "a network stream server",
         lambda: False),
    Need(lambda argv: any("nvarguscamerasrc" in a or a == "v4l2src" for a in argv) or _camera_source(argv),
         "a camera", lambda: False),
    Need(lambda argv: "--display" in argv, "a display", lambda: False),
    # A foreground server, and clients of one: tests/deploy/test_triton_server.py runs these very commands against a
    # real tritonserver it starts and always stops.
    Need(lambda argv: argv[0] == "serve", "a foreground tritonserver (stopped with Ctrl-C)", lambda: False),
    Need(lambda argv: "triton" in argv, "a running Triton server", lambda: False),
)

# Tiny settings: option -> its value here (each value is a list of arguments).
TINY = {
    "--epochs": ["1"],
    "--max-minutes": ["0.05"],
    "--image-size": ["64", "80"],
    "--batch-size": ["4"],
    "--workers": ["0"],
    "--video-frames": ["6"],
    "--min-seconds": ["0.2"],
    "--min-iters": ["5"],
    "--calib-frames": ["4"],
    "--miou-threshold": ["100"],
}
# Tiny options added to these commands when the README leaves them at their (large) defaults.
TINY_DEFAULTS = {
    "train": ("--epochs", "--max-minutes", "--image-size", "--batch-size", "--workers"),
    "demo": ("--epochs", "--max-minutes", "--batch-size", "--workers", "--video-frames"),
    "bench": ("--min-seconds", "--min-iters"),
    "export": (),
}


def _gpu_providers() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _camera_source(argv: list[str]) -> bool:
    return any(a == "--source" and b.isdigit() for a, b in zip(argv, argv[1:]))


@dataclass(frozen=True)
class Command:
    line: int
    text: str

    @property
    def id(self) -> str:
        return f"L{self.line}:{self.text[:60]}"


def readme_commands(text: str) -> list[Command]:
    """Every command of the ```bash blocks (continuations joined, comments dropped, `&&` split), then every
    `.venv/bin/edgeseg ...` command quoted in the prose (the form the README uses for "type this"; the plain
    `edgeseg NAME` mentions in prose and the table's synopses with MODEL/DIR placeholders are not commands)."""
    commands: list[Command] = []
    for block in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M):
        first_line = text.count("\n", 0, block.start(1)) + 1
        logical, start = "", None
        for offset, raw in enumerate(block.group(1).splitlines()):
            start = first_line + offset if start is None else start
            if raw.rstrip().endswith("\\"):
                logical += raw.rstrip()[:-1] + " "
                continue
            logical += raw
            words = shlex.split(logical, comments=True)
            for part in " ".join(shlex.quote(w) if w != "&&" else w for w in words).split(" && "):
                if part.strip():
                    commands.append(Command(start, part.strip()))
            logical, start = "", None
    for number, line in enumerate(text.splitlines(), 1):
        for span in re.findall(r"`(\.venv/bin/edgeseg [^`]+)`", line):
            commands.append(Command(number, span))
    return commands


COMMANDS_IN_README = readme_commands(README.read_text())


def _tiny(argv: list[str], workspace: Path) -> list[str]:
    """The README's argv with the paths and sizes of the module docstring."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in TINY:
            width = 2 if arg == "--image-size" else 1
            out += [arg, *TINY[arg]]
            i += 1 + width
            continue
        if arg.startswith(CAMVID):
            arg = str(workspace / "camvid") + arg[len(CAMVID):]
        elif arg.startswith("runs/"):
            arg = str(workspace / arg)
        out.append(arg)
        i += 1
    command = out[0] if out else ""
    has_data = "--data" in out and out[out.index("--data") + 1] != "synthetic"
    for option in TINY_DEFAULTS.get(command, ()):
        if option not in out and not (command == "demo" and option == "--video-frames" and has_data):
            out += [option, *TINY[option]]
    if command == "export" and "--report-data" in out and "--miou-threshold" not in out:
        out += ["--miou-threshold", *TINY["--miou-threshold"]]
    if command == "demo" and "--image-size" not in out and not has_data:
        out += ["--image-size", *TINY["--image-size"]]
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A tiny CamVid-layout dataset and runs/demo, as `make demo` leaves it (tiny)."""
    from edgeseg.data import write_synthetic_folder, write_synthetic_video

    root = tmp_path_factory.mktemp("readme")
    # 128x160 images, so the demo's default (half the images' size) trains at 64x80
    camvid = write_synthetic_folder(root / "camvid", n=8, size=(128, 160), seed=1, val_count=4)
    write_synthetic_video(camvid / "val_clip.mp4", frames=6, size=(128, 160), seed=3)
    assert main(_tiny(["demo", "--out", "runs/demo"], root)) == 0
    return root


def _excuse(text: str) -> str | None:
    """Why a README command is environment set-up rather than an example to run, or None."""
    for prefix, reason in NOT_RUN:
        if text == prefix.strip() or text.startswith(prefix):
            return reason
    return None


# Set-up lines are not examples: they are listed (with their reason) by test_setup_lines_are_only_setup, not skipped.
EXAMPLES = [c for c in COMMANDS_IN_README if _excuse(c.text) is None]


def test_setup_lines_are_only_setup() -> None:
    """Every line left out is set-up (install, venv, shell state, make), never an edgeseg command."""
    setup = [(c.line, c.text, _excuse(c.text)) for c in COMMANDS_IN_README if _excuse(c.text) is not None]
    assert setup, "the README's install and quick-start lines were not found"
    for line, text, reason in setup:
        assert reason and shlex.split(text)[0] not in EDGESEG, f"README line {line}: `{text}`"


@pytest.mark.slow
@pytest.mark.parametrize("command", EXAMPLES, ids=[f"{i}-{c.id}" for i, c in enumerate(EXAMPLES)])
def test_readme_command_runs(command: Command, workspace: Path) -> None:
    text = command.text
    argv = shlex.split(text)
    if argv[0] not in EDGESEG:
        pytest.fail(f"README line {command.line}: `{text}` is neither an edgeseg command nor in NOT_RUN/NEEDS; "
                    f"run it here or add it to a table with the reason")
    argv = argv[1:]
    for need in NEEDS:
        if need.applies(argv) and not need.available():
            pytest.skip(f"README line {command.line} `{text}` needs {need.what}")
    tiny = _tiny(argv, workspace)
    try:
        code = main(tiny)
    except SystemExit as exc:  # --help exits through argparse
        code = exc.code
    assert code == 0, f"README line {command.line}: `{text}` (run as {tiny}) exited {code}"
    if "--out" in tiny:
        out = Path(tiny[tiny.index("--out") + 1])
        assert out.exists() and (out.is_file() or any(out.iterdir())), f"`{text}` wrote nothing to {out}"


def test_readme_commands_are_found() -> None:
    """The parser sees the blocks (a README reflow that hid them would otherwise skip everything silently)."""
    texts = [c.text for c in COMMANDS_IN_README]
    assert "make demo" in texts and "make test" in texts
    assert any(t.startswith("edgeseg export ") and "--report-data" in t for t in texts)
    sample = ("```bash\nedgeseg a \\\n    --b c   # note\nx && y\n```\n"
              "see `.venv/bin/edgeseg run --help` or `edgeseg run MODEL`\n")
    assert [(c.line, c.text) for c in readme_commands(sample)] == [
        (2, "edgeseg a --b c"), (4, "x"), (4, "y"), (6, ".venv/bin/edgeseg run --help")]


def test_tiny_substitutions(tmp_path: Path) -> None:
    argv = ["train", "--data", f"{CAMVID}", "--image-size", "180", "240", "--max-minutes", "15", "--out", "runs/x"]
    assert _tiny(argv, tmp_path) == [
        "train", "--data", str(tmp_path / "camvid"), "--image-size", "64", "80", "--max-minutes", "0.05",
        "--out", str(tmp_path / "runs/x"), "--epochs", "1", "--batch-size", "4", "--workers", "0"]


def test_python_snippet_runs(tmp_path: Path) -> None:
    from runtime.onnx_graphs import write_pixel_classifier

    snippet = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    model = write_pixel_classifier(tmp_path / "model.onnx")
    snippet = snippet.replace("runs/export/model.onnx", str(model))
    frame_bgr = np.zeros((48, 64, 3), np.uint8)
    frame_bgr[:, :32] = (0, 0, 255)  # red left half, black right half
    namespace = {"frame_bgr": frame_bgr}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["mask"].shape == (48, 64)
    assert (namespace["mask"][:, :32] == 0).all() and (namespace["mask"][:, 32:] == 3).all()  # red, dark
    shown = namespace["shown"]
    assert shown.shape == frame_bgr.shape
    # alpha 0.5 over the class colours: on the black half exactly half the palette colour of class 3, rounded
    palette_bgr = np.asarray(namespace["seg"].meta.palette, np.float64)[:, ::-1]
    expected = np.floor(0.5 * palette_bgr[3] + 0.5)
    assert np.abs(shown[:, 32:].reshape(-1, 3) - expected).max() <= 1


def test_every_command_in_the_table_exists() -> None:
    documented = set(re.findall(r"^\| `edgeseg (\w+)", README.read_text(), re.M))
    assert documented == set(COMMANDS), f"undocumented: {set(COMMANDS) - documented}"
    build_parser()  # every subcommand's parser builds
