"""The README's examples run: its Python snippet on a tiny model, its CLI table's commands exist."""

import re
from pathlib import Path

import numpy as np

from edgeseg.cli import COMMANDS, build_parser

from .onnx_graphs import write_pixel_classifier

README = Path(__file__).resolve().parents[2] / "README.md"


def test_python_snippet_runs(tmp_path):
    snippet = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    model = write_pixel_classifier(tmp_path / "model.onnx")
    snippet = snippet.replace("runs/export/model.onnx", str(model))
    frame_bgr = np.zeros((48, 64, 3), np.uint8)
    frame_bgr[:, :32] = (0, 0, 255)  # red left half, black right half
    namespace = {"frame_bgr": frame_bgr}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["mask"].shape == (48, 64)
    assert (namespace["mask"][:, :32] == 0).all() and (namespace["mask"][:, 32:] == 3).all()  # red, dark
    assert namespace["shown"].shape == frame_bgr.shape


def test_every_command_in_the_table_exists():
    documented = set(re.findall(r"^\| `edgeseg (\w+)", README.read_text(), re.M))
    assert documented == set(COMMANDS)
    build_parser()  # every subcommand's parser builds
