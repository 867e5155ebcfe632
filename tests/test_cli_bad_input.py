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
