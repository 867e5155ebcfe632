"""Issue 18: every command's output options, each pointed at every kind of input that command reads, is refused
(exit 2, one error line, no traceback) and leaves every input byte for byte as it was. The table below is checked
against the parser, so an output option added to a command without a row here fails the first test."""

from __future__ import annotations

import pytest

from edgeseg.cli import build_parser, main

from .conftest import sha256_tree

# command -> {output option: 'file' or 'folder'}
OUTPUT_OPTIONS = {
    "run": {"--out": "file", "--masks": "folder", "--confidence": "folder", "--stats": "file"},
    "eval": {"--json": "file", "--out": "folder"},
    "bench": {"--json": "file"},
    "export": {"--out": "folder", "--triton": "folder", "--deepstream": "folder"},
    "train": {"--out": "folder"},
    "annotate": {"--out": "file"},
    "serve": {"--log": "file"},
    "demo": {"--out": "folder"},
}
_OUTPUT_DESTS = {"out", "out_dir", "json_out", "stats", "masks", "confidence", "log", "triton", "deepstream"}


def test_the_table_lists_every_output_option_of_every_command():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    found = {}
    for name, sub in subparsers.items():
        options = {a.option_strings[-1] for a in sub._actions if a.dest in _OUTPUT_DESTS and a.option_strings}
        if options:
            found[name] = options
    assert found == {name: set(options) for name, options in OUTPUT_OPTIONS.items()}


def _cases(w: dict) -> list[tuple[str, str, list, object, str]]:
    """(command, option, argv without the option, the input it is pointed at, that input's kind)."""
    D, M, imgs, video, cls, P, repo = w["data"], w["model"], w["images"], w["video"], w["classes"], w["pred"], w["repo"]
    ckpt, root = w["root"] / "best.pt", w["root"]
    dataset_files = [(D / "classes.json", "dataset classes.json"), (D / "val" / "labels" / "x0.png", "dataset label"),
                     (D / "train" / "images" / "x1.png", "dataset image")]
    bases = {
        "run": [(["run", M, "--source", imgs, "--classes", cls],
                 [(M, "model"), (imgs / "a.jpg", "source image"), (cls, "classes file"), (imgs, "source folder")]),
                (["run", M, "--source", video], [(video, "source video")])],
        "eval": [(["eval", M, "--data", D, "--classes", cls], [(M, "model"), (cls, "classes file"), (D, "dataset")]
                  + dataset_files),
                 (["eval", "--pred", P, "--data", D], [(P / "x0.png", "predicted mask"), (P, "pred folder")])],
        "bench": [(["bench", M, "--data", D, "--source", imgs, "--classes", cls],
                   [(M, "model"), (imgs / "b.png", "source image"), (cls, "classes file")] + dataset_files)],
        "export": [(["export", ckpt, "--precision", "fp32", "int8", "--calib", imgs, "--report-data", D,
                     "--uint8-input", "--argmax", "--max-batch", "2"],
                    [(ckpt, "checkpoint"), (imgs, "calibration folder"), (imgs / "a.jpg", "calibration image"),
                     (D, "dataset")] + dataset_files)],
        "train": [(["train", "--data", D, "--model", "fcn8s_mobilenetv3", "--pretrained-backbone", ckpt],
                   [(D, "dataset"), (D / "train", "dataset split"), (ckpt, "backbone weights")] + dataset_files)],
        "annotate": [(["annotate", M, "--classes", cls], [(M, "model"), (cls, "classes file")])],
        "serve": [(["serve", repo], [(repo / "m" / "1" / "model.py", "repository code"),
                                     (repo / "m" / "config.pbtxt", "repository config"), (repo, "repository")])],
        "demo": [(["demo", "--data", D, "--video", video], [(D, "dataset"), (video, "video")] + dataset_files)],
    }
    cases = []
    for command, options in OUTPUT_OPTIONS.items():
        for option in options:
            for argv, targets in bases[command]:
                for target, kind in targets:
                    extra = [] if (command, option) != ("export", "--triton") and (command, option) != (
                        "export", "--deepstream") else ["--out", root / "export"]
                    cases.append((command, option, [*argv, *extra], target, kind))
    return cases


_KINDS = {"run", "eval", "bench", "export", "train", "annotate", "serve", "demo"}


@pytest.mark.parametrize("command", sorted(_KINDS))
def test_each_output_option_refuses_each_input(world, capsys, monkeypatch, command):
    import edgeseg.training.checkpoint as checkpoint

    (world["root"] / "best.pt").write_bytes(b"a checkpoint (never loaded: refused first)")
    monkeypatch.setattr(checkpoint, "load_model", _no_work)
    before = sha256_tree(world["root"])
    tried = 0
    for cmd, option, argv, target, kind in _cases(world):
        if cmd != command:
            continue
        code = main([str(a) for a in [*argv, option, target]])
        err = capsys.readouterr().err
        assert code == 2, (option, kind, err)
        assert err.startswith(f"edgeseg {command}: error: ") and "Traceback" not in err, (option, kind, err)
        assert sha256_tree(world["root"]) == before, (option, kind)
        tried += 1
    assert tried >= len(OUTPUT_OPTIONS[command]) * 2


def _no_work(*args, **kwargs):
    raise AssertionError("a model was loaded before the output was refused")
