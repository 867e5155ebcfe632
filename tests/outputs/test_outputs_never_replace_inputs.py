"""Issue 18, "One guard, used by every command": each case the issue lists, through the command line. Each must
exit 2 with one `edgeseg CMD: error:` line naming the option, before any work, and leave every input byte for byte
as it was (SHA-256 of every file before and after). On the main branch before the guard, each of these exited 0
having replaced the input (or, for --out X.mp4 --masks X.mp4, failed late leaving a mask behind)."""

from __future__ import annotations

import pytest

from edgeseg.cli import main

from .conftest import sha256_tree


def refused(capsys, argv: list[str], *needles: str) -> str:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, (code, err)
    assert err.startswith(f"edgeseg {argv[0]}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_run_stats_onto_the_model_directly_and_through_a_symlink(world, capsys):
    model, video = world["model"], world["video"]
    link = world["root"] / "stats_link.json"
    link.symlink_to(model)
    before = sha256_tree(world["root"])
    refused(capsys, ["run", model, "--source", video, "--stats", model], f"--stats {model} is the model {model}")
    refused(capsys, ["run", model, "--source", video, "--stats", link], f"--stats {link} is the model")
    assert sha256_tree(world["root"]) == before and link.is_symlink()


def test_run_stats_onto_an_image_of_the_source_folder(world, capsys):
    images = world["images"]
    before = sha256_tree(world["root"])
    refused(capsys, ["run", world["model"], "--source", f"{images}/", "--stats", images / "a.jpg"],
            "would replace a.jpg, a file of the --source")
    assert sha256_tree(world["root"]) == before


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_json_onto_the_datasets_classes_file(world, capsys, command):
    data = world["data"]
    before = sha256_tree(world["root"])
    refused(capsys, [command, world["model"], "--data", data, "--json", data / "classes.json"],
            f"--json {data / 'classes.json'} is inside the --data dataset {data}")
    assert sha256_tree(world["root"]) == before


def test_eval_pred_json_onto_a_ground_truth_label(world, capsys):
    data = world["data"]
    label = data / "val" / "labels" / "x0.png"
    before = sha256_tree(world["root"])
    refused(capsys, ["eval", "--pred", world["pred"], "--data", data, "--json", label], "--data dataset")
    assert sha256_tree(world["root"]) == before


def test_serve_log_into_the_models_code(world, capsys):
    repo = world["repo"]
    before = sha256_tree(world["root"])
    refused(capsys, ["serve", repo, "--log", repo / "m" / "1" / "model.py"], "inside the model repository")
    assert sha256_tree(world["root"]) == before


@pytest.mark.parametrize("flag", ["--stats", "--masks"])
def test_run_out_and_another_output_on_one_path(world, capsys, flag):
    out = world["root"] / "X.mp4"
    before = sha256_tree(world["root"])
    refused(capsys, ["run", world["model"], "--source", world["video"], "--out", out, flag, out],
            f"--out {out} and {flag} {out} are the same path")
    assert sha256_tree(world["root"]) == before and not out.exists()


@pytest.mark.parametrize("flag", ["--stats", "--out"])
def test_a_trailing_slash_names_a_folder(world, capsys, flag):
    where = f"{world['root'] / 'new'}/"
    refused(capsys, ["run", world["model"], "--source", world["video"], flag, where], f"{flag} {where} ends in '/'")
    assert not (world["root"] / "new").exists()


# ----- "Too late": unwritable places are refused before the work ------------------------------------------------
@pytest.mark.parametrize("where", ["/proc", "read-only mount"])
@pytest.mark.parametrize("command", ["eval", "bench"])
def test_json_on_an_unwritable_place_fails_before_scoring(world, capsys, read_only_dir, monkeypatch, where,
                                                          command):
    import edgeseg.evaluation as evaluation

    monkeypatch.setattr(evaluation, "evaluate_predictor", _no_work)
    folder = read_only_dir if where == "read-only mount" else "/proc"
    argv = [command, world["model"], "--data", world["data"], "--json", f"{folder}/scores.json"]
    if command == "bench":
        import edgeseg.bench_table as bench_table

        monkeypatch.setattr(bench_table, "bench_models", _no_work)
    refused(capsys, argv, f"--json {folder}/scores.json: cannot write in {folder}")


def _no_work(*args, **kwargs):
    raise AssertionError("the long work started before the output was refused")


@pytest.mark.parametrize("where", ["/proc", "read-only mount"])
@pytest.mark.parametrize("flag", ["--out", "--triton", "--deepstream"])
def test_export_outputs_on_an_unwritable_place_fail_before_loading(world, capsys, read_only_dir, monkeypatch, where,
                                                                   flag):
    import edgeseg.training.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "load_model", _no_work)
    ckpt = world["root"] / "best.pt"
    ckpt.write_bytes(b"not loaded: the output is refused first")
    folder = read_only_dir if where == "read-only mount" else "/proc"
    target = f"{folder}/edgeseg_out"
    out = target if flag == "--out" else world["root"] / "export"
    argv = ["export", ckpt, "--out", out]
    if flag != "--out":
        argv += [flag, target]
    if flag == "--triton":
        argv += ["--uint8-input", "--argmax", "--max-batch", "2"]
    refused(capsys, argv, f"{flag} {target}: cannot write in {folder}")
    assert not (world["root"] / "export").exists()
