"""Bad options to `edgeseg bench` and `edgeseg eval`: a clear error naming the option, exit 2, nothing written."""

from __future__ import annotations

import pytest

from edgeseg.cli import main


@pytest.mark.parametrize("argv, message", [
    (["--frames", "0"], "--frames must be >= 1"),
    (["--min-iters", "0", "--min-seconds", "0"], "times nothing"),
    (["--warmup", "-1"], "must be >= 0"),
])
def test_bench_refuses_bad_counts_before_loading_anything(tmp_path, capsys, argv, message):
    code = main(["bench", str(tmp_path / "absent.onnx"), "--json", str(tmp_path / "b.json"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "b.json").exists()


def test_bench_json_onto_a_folder_is_refused(tmp_path, capsys):
    code = main(["bench", str(tmp_path / "absent.onnx"), "--json", str(tmp_path)])
    assert code == 2 and "is a folder" in capsys.readouterr().err


def test_eval_limit_zero_is_an_error_not_nan(tmp_path, capsys):
    code = main(["eval", str(tmp_path / "absent.onnx"), "--data", "synthetic", "--limit", "0"])
    assert code == 2 and "--limit must be at least 1" in capsys.readouterr().err


def test_backend_choices_are_listed(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "m.onnx", "--json", "x.json", "--backend", "cuda-magic"])
    err = capsys.readouterr().err
    assert "onnxruntime-cuda" in err and "tensorrt" in err


@pytest.mark.parametrize("command, argv, message", [
    ("eval", ["--tta-scales", "0", "1"], r"--tta-scales must be in (0, 4]"),
    ("eval", ["--tta-scales", "1", "1"], "lists a scale twice"),
    ("run", ["--tta-scales", "40", "--source", "synthetic:1"], r"--tta-scales must be in (0, 4]"),
])
def test_bad_tta_scales_are_refused_before_the_model_loads(tmp_path, capsys, command, argv, message):
    """The model does not exist: the TTA options are checked first, so their error, not the file's, is reported."""
    extra = ["--data", "synthetic"] if command == "eval" else ["--masks", str(tmp_path / "masks")]
    code = main([command, str(tmp_path / "absent.onnx"), *extra, *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith(f"edgeseg {command}: error:") and "Traceback" not in err


def test_eval_refuses_tta_on_ready_made_masks(tmp_path, capsys):
    code = main(["eval", "--pred", str(tmp_path), "--data", "synthetic", "--tta-flip"])
    assert code == 2 and "--pred masks are already predicted" in capsys.readouterr().err
