"""`edgeseg export` on bad input and used output folders (issue 10).

Each refusal is checked through the command line: exit code 2, a message naming the problem and the flag or file,
no traceback, and nothing written (the --out folder does not exist afterwards). Re-exporting into a used folder
removes the files the previous export wrote and this one did not, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil

import pytest

from edgeseg.cli import main
from edgeseg.errors import ExportError, ModelFileError, OutputPathError
from edgeseg.export.formats import FORMATS
from edgeseg.export.manifest import MANIFEST_NAME
from edgeseg.export.onnx_io import read_meta
from edgeseg.export.pipeline import export_model


def export_cli(capsys, ckpt, out, *args) -> tuple[int, str]:
    """Run `edgeseg export CKPT --out OUT ARGS`; (exit code, stderr), after checking no traceback was printed."""
    code = main(["export", str(ckpt), "--out", str(out), *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err


def manifest_files(out) -> dict:
    return json.loads((out / MANIFEST_NAME).read_text())["files"]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if the checkpoint is loaded: the refusals under test come before any slow work."""
    import edgeseg.training.checkpoint as checkpoint

    def refuse(path):
        raise AssertionError(f"load_model({path}) ran before the request was refused")

    monkeypatch.setattr(checkpoint, "load_model", refuse)


# ----- 1. re-exporting into a used --out folder -------------------------------------------------------------------
def test_reexport_removes_the_previous_exports_files_and_keeps_the_users(tiny_ckpt, tmp_path, capsys, caplog):
    out = tmp_path / "export"
    assert export_cli(capsys, tiny_ckpt, out, "--precision", "fp32", "fp16")[0] == 0
    assert set(manifest_files(out)) == {"model.onnx", "model_fp16.onnx"}
    for name, entry in manifest_files(out).items():  # hashes checked against hashlib, independently
        assert entry["sha256"] == sha256(out / name)
    (out / "notes.txt").write_text("mine")  # the user's files, EdgeSeg never wrote them
    (out / "sub").mkdir()
    (out / "sub" / "model_int8.onnx").write_bytes(b"user's model")
    (out / "model_int8.onnx").write_bytes(b"another tool's model")  # an export output name, not ours

    caplog.set_level(logging.INFO)
    assert export_cli(capsys, tiny_ckpt, out, "--precision", "fp32")[0] == 0
    assert not (out / "model_fp16.onnx").exists()
    assert "removed model_fp16.onnx" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["export_manifest.json", "model.onnx", "model_int8.onnx",
                                                     "notes.txt", "sub"]
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "sub" / "model_int8.onnx").read_bytes() == b"user's model"
    assert (out / "model_int8.onnx").read_bytes() == b"another tool's model"
    assert "model_int8.onnx, which this export did not write" in caplog.text  # kept, and said so
    assert set(manifest_files(out)) == {"model.onnx"}


def test_a_recorded_file_changed_by_the_user_is_kept(tiny_ckpt, tmp_path, caplog):
    export_model(tiny_ckpt, tmp_path, precisions=("fp32", "fp16"))
    (tmp_path / "model_fp16.onnx").write_bytes(b"edited by hand")
    export_model(tiny_ckpt, tmp_path)
    assert (tmp_path / "model_fp16.onnx").read_bytes() == b"edited by hand"
    assert "changed since EdgeSeg wrote it" in caplog.text
    assert set(manifest_files(tmp_path)) == {"model.onnx"}


def test_a_manifest_entry_outside_the_folder_is_never_removed(tiny_ckpt, tmp_path, caplog):
    out = tmp_path / "export"
    export_model(tiny_ckpt, out)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["files"]["../victim.txt"] = {"sha256": sha256(victim)}  # a tampered manifest
    manifest["files"][str(victim)] = {"sha256": sha256(victim)}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    export_model(tiny_ckpt, out)
    assert victim.read_text() == "keep me"
    assert "not a file inside" in caplog.text and set(manifest_files(out)) == {"model.onnx"}


def test_an_unreadable_manifest_removes_nothing(tiny_ckpt, tmp_path, caplog):
    export_model(tiny_ckpt, tmp_path, precisions=("fp32", "fp16"))
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    export_model(tiny_ckpt, tmp_path)
    assert (tmp_path / "model_fp16.onnx").is_file() and f"ignoring {tmp_path / MANIFEST_NAME}" in caplog.text
    assert set(manifest_files(tmp_path)) == {"model.onnx"}


def test_reexport_without_engine_removes_the_engine_its_sidecar_and_runtime_cache(tiny_ckpt, tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not importable")
    export_model(tiny_ckpt, tmp_path, engine=True, flavour="tensorrt_rtx")
    engine = tmp_path / FORMATS["fp32"].engine_name
    assert set(manifest_files(tmp_path)) == {"model.onnx", engine.name, engine.name + ".json"}
    cache = tmp_path / (engine.name + ".cache")
    cache.write_bytes(b"kernels of this engine")  # what `edgeseg run` writes next to an RTX engine
    export_model(tiny_ckpt, tmp_path, engine=True, flavour="tensorrt_rtx")  # a rebuilt engine drops the old cache
    assert engine.is_file() and not cache.exists()
    cache.write_bytes(b"kernels of this engine")
    export_model(tiny_ckpt, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export_manifest.json", "model.onnx"]


def _failing_fp16_step(monkeypatch):
    import dataclasses

    import edgeseg.export.formats as formats

    def fail(fp32, dst, **options):
        raise ExportError("fp16 conversion failed (injected)")

    monkeypatch.setitem(formats.FORMATS, "fp16", dataclasses.replace(FORMATS["fp16"], step=fail))


def test_a_failed_export_into_a_new_folder_leaves_nothing(tiny_ckpt, tmp_path, monkeypatch, capsys):
    _failing_fp16_step(monkeypatch)  # fails after model.onnx was written
    code, err = export_cli(capsys, tiny_ckpt, tmp_path / "a" / "b", "--precision", "fp32", "fp16")
    assert code == 2 and "fp16 conversion failed (injected)" in err
    assert not (tmp_path / "a").exists()


def test_a_failed_export_into_a_used_folder_leaves_the_previous_export_as_it_was(tiny_ckpt, tmp_path, monkeypatch):
    import edgeseg.export.pipeline as pipeline

    export_model(tiny_ckpt, tmp_path, precisions=("fp32",))
    (tmp_path / "notes.txt").write_text("mine")
    before = {p.name: sha256(p) for p in tmp_path.iterdir()}

    def fail(*args, **kwargs):
        raise ExportError("report failed (injected)")

    monkeypatch.setattr(pipeline, "_accuracy_report", fail)  # fails after model_fp16.onnx was written (staged)
    with pytest.raises(ExportError, match="injected"):
        export_model(tiny_ckpt, tmp_path, precisions=("fp32", "fp16"))
    assert {p.name: sha256(p) for p in tmp_path.iterdir()} == before  # no model_fp16.onnx next to the old export
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*"))  # no staging folder or lock left behind


# ----- 2. options refused by validation leave no --out folder ---------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--input-size", "0", "5"], "--input-size must be positive"),
    (["--dynamic", "1x64x64", "1x32x32", "1x96x96"], "min <= opt <= max"),
    (["--dynamic", "1x64x64", "1x64", "1x96x96"], "is not NxHxW"),
    (["--input-size", "64", "64", "--dynamic", "1x64x64", "1x64x64", "1x96x96"], "not both"),
    (["--precision", "fp32", "fp16", "--fp16-io", "--uint8-input"], "--fp16-io and --uint8-input exclude"),
    (["--argmax", "--lowres"], "exclude each other"),
    (["--workspace-mb", "64"], "--workspace-mb applies only with --engine"),
    (["--precision", "int8"], "int8 needs --calib"),
])
def test_a_refused_option_leaves_no_out_folder(tiny_ckpt, tmp_path, capsys, no_model_loading, args, message):
    out = tmp_path / "new" / "export"
    try:
        code, err = export_cli(capsys, tiny_ckpt, out, *args)
    except SystemExit as exc:  # argparse's own usage errors (a shape it cannot parse) exit 2 as well
        code, err = exc.code, capsys.readouterr().err
        assert "Traceback" not in err
    assert code == 2 and message in err
    assert not (tmp_path / "new").exists()


# ----- 3. --report-data whose classes do not match the model ------------------------------------------------------
def test_report_data_with_other_classes_writes_nothing(tiny_ckpt, tmp_path, image_dir, capsys):
    data = tmp_path / "data3"
    shutil.copytree(image_dir, data)
    (data / "classes.json").write_text(json.dumps({"classes": ["a", "b", "c"]}))
    code, err = export_cli(capsys, tiny_ckpt, tmp_path / "out", "--precision", "fp32", "fp16", "--report-data", data)
    assert code == 2 and "3 classes, the model 4" in err and "--report-data" in err
    assert not (tmp_path / "out").exists()


# ----- 4. calibration frames --------------------------------------------------------------------------------------
def test_fewer_calibration_frames_than_asked_is_a_loud_warning(tiny_ckpt, tmp_path, frames, capsys, caplog):
    import cv2

    one = tmp_path / "one"
    one.mkdir()
    cv2.imwrite(str(one / "frame.png"), frames[0])
    code, _ = export_cli(capsys, tiny_ckpt, tmp_path / "out", "--precision", "int8", "--calib", one,
                         "--calib-frames", "4")
    assert code == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "usable frame" in r.getMessage()]
    assert len(warnings) == 1
    assert "only 1 usable frame(s)" in warnings[0].getMessage() and "fewer than the 4 asked" in warnings[0].getMessage()
    assert read_meta(tmp_path / "out" / "model_int8.onnx").quantization["calib_frames"] == 1


def test_enough_calibration_frames_give_no_warning(tiny_ckpt, tmp_path, image_dir, caplog):
    export_model(tiny_ckpt, tmp_path, precisions=("int8",), calib=image_dir / "val" / "images", calib_frames=6,
                 progress=False)  # exactly the 6 images there are
    assert read_meta(tmp_path / "model_int8.onnx").quantization["calib_frames"] == 6
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "usable frame" in r.getMessage()]


def test_calibration_folder_without_a_usable_frame_is_refused(tiny_ckpt, tmp_path, capsys, no_model_loading):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    (broken / "b.jpg").write_bytes(b"")
    code, err = export_cli(capsys, tiny_ckpt, tmp_path / "out", "--precision", "int8", "--calib", broken)
    assert code == 2 and "--calib: no readable frames" in err and str(broken) in err
    assert not (tmp_path / "out").exists()


def test_calib_frames_zero_is_still_an_error(tiny_ckpt, tmp_path, image_dir, capsys, no_model_loading):
    code, err = export_cli(capsys, tiny_ckpt, tmp_path / "out", "--precision", "int8", "--calib", image_dir,
                           "--calib-frames", "0")
    assert code == 2 and "--calib-frames must be >= 1, got 0" in err and not (tmp_path / "out").exists()


# ----- 5. an --out that cannot be a folder ------------------------------------------------------------------------
def test_out_that_is_a_file_is_refused_before_any_work(tiny_ckpt, tmp_path, capsys, no_model_loading):
    taken = tmp_path / "taken"
    taken.write_bytes(b"precious")
    code, err = export_cli(capsys, tiny_ckpt, taken)
    assert code == 2 and f"--out {taken} is a file; --out takes a folder" in err
    assert taken.read_bytes() == b"precious"


def test_out_under_a_file_is_refused_before_any_work(tiny_ckpt, tmp_path, capsys, no_model_loading):
    taken = tmp_path / "taken"
    taken.write_bytes(b"precious")
    code, err = export_cli(capsys, tiny_ckpt, taken / "sub" / "export")
    assert code == 2 and f"cannot create this folder, {taken} is a file, not a folder" in err
    assert taken.read_bytes() == b"precious"


def test_an_output_name_taken_by_a_folder_is_refused_before_any_work(tiny_ckpt, tmp_path, no_model_loading):
    (tmp_path / "model_fp16.onnx").mkdir()
    with pytest.raises(OutputPathError, match="model_fp16.onnx is a folder"):
        export_model(tiny_ckpt, tmp_path, precisions=("fp32", "fp16"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_fp16.onnx"]


# ----- 6. checkpoints that are not checkpoints --------------------------------------------------------------------
def _bad_checkpoints(root, tiny_ckpt):
    import torch

    folder = root / "run"
    folder.mkdir()
    shutil.copy(tiny_ckpt, folder / "best.pt")
    truncated = root / "truncated.pt"
    data = tiny_ckpt.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    torch.save({"state_dict": {}}, root / "foreign.pt")
    torch.save([1, 2, 3], root / "list.pt")
    payload = torch.load(tiny_ckpt, weights_only=True)
    torch.save(dict(payload, meta=dict(payload["meta"], model_name="no_such_model")), root / "unknown_model.pt")
    torch.save(dict(payload, meta={"classes": ["a"]}), root / "bad_meta.pt")
    return {
        "folder": (folder, "is a folder, not a file; give the file itself (e.g. " + str(folder / "best.pt")),
        "missing": (root / "missing.pt", "does not exist"),
        "truncated": (truncated, "not an EdgeSeg checkpoint (corrupt"),
        "foreign": (root / "foreign.pt", "is not an EdgeSeg checkpoint"),
        "list": (root / "list.pt", "is not an EdgeSeg checkpoint"),
        "unknown_model": (root / "unknown_model.pt", "no_such_model"),
        "bad_meta": (root / "bad_meta.pt", "metadata"),
    }


@pytest.mark.parametrize("case", ["folder", "missing", "truncated", "foreign", "list", "unknown_model", "bad_meta"])
def test_bad_checkpoint_is_a_clear_model_file_error(tiny_ckpt, tmp_path, capsys, case):
    path, message = _bad_checkpoints(tmp_path, tiny_ckpt)[case]
    code, err = export_cli(capsys, path, tmp_path / "out")
    assert code == 2 and message in err and str(path) in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ModelFileError):
        export_model(path, tmp_path / "out")


def test_the_manifest_records_exactly_the_written_files(tiny_ckpt, tmp_path, image_dir):
    export_model(tiny_ckpt, tmp_path, precisions=("fp32", "fp16"), report_data=image_dir, progress=False)
    written = {p.name for p in tmp_path.iterdir()} - {MANIFEST_NAME}
    assert set(manifest_files(tmp_path)) == written == {"model.onnx", "model_fp16.onnx", "report.json"}
