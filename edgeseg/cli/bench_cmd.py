"""`edgeseg bench`: one table of model files on this machine (format, precision, backend, size, mIoU, p50/p99 per
stage, FPS), JSON out and a chart next to it; DESCRIPTION below says what the user sees, exit status included."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeseg.cli.numbers import finite_float


# Lines under 80 columns: the help formatter keeps them as written.
DESCRIPTION = """\
Benchmark one or more exported models on this machine and print one table:
format, precision (as built), the backend that ran, size on disk, mIoU (with
--data), p50/p99 latency per stage (preprocess, infer, postprocess) and FPS.
Writes OUT.json (one row per model under "rows") and a chart, OUT.png.

A model this machine cannot run (a TensorRT engine without a GPU, a backend
that is not installed) is a 'skipped' row, a broken file a 'failed' row: both
give the reason and no numbers, and the other models still run. A glob pattern
that matches no model file is a 'skipped' row too.

Exit status: 0 when at least one model ran and none failed (skipped rows are
fine), 1 when at least one ran and another failed, 2 when none ran or an
option is wrong."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="one table of models: size, mIoU, latency p50/p99 per stage, FPS; JSON out",
                            description=DESCRIPTION)
    from edgeseg.runtime.backends import BACKENDS

    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help=".onnx or .engine files, one table row each; glob patterns (runs/export/*.onnx) are "
                             "expanded here too")
    parser.add_argument("--json", dest="json_out", required=True, metavar="OUT.json",
                        help="where to write the results (JSON); the chart goes next to it, as OUT.png")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="inference backend (auto: by file type and the best available provider)")
    parser.add_argument("--source", default=None,
                        help="video or image folder to take frames from (unset: synthetic street scenes)")
    parser.add_argument("--frame-size", type=int, nargs=2, metavar=("H", "W"), default=(360, 480),
                        help="size of the synthetic frames (without --source)")
    parser.add_argument("--frames", type=int, default=16, help="distinct frames to cycle through")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    parser.add_argument("--min-seconds", type=finite_float, default=3.0, help="time at least this long")
    parser.add_argument("--min-iters", type=int, default=30, help="and at least this many calls")
    parser.add_argument("--data", default=None,
                        help="labelled dataset folder (or 'synthetic'): adds each model's mIoU on --split")
    parser.add_argument("--split", default="val", help="the --data split to score")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images of --split")
    parser.add_argument("--compare", metavar="CKPT", default=None,
                        help="also run, on --video, the naive loops users write (PyTorch eager FP32 from this "
                             "checkpoint, ONNX Runtime defaults) and EdgeSeg's pipeline; adds end-to-end FPS, "
                             "ratios and a chart, OUT_compare.png; needs exactly one MODEL")
    parser.add_argument("--video", default=None, help="video for --compare")
    from edgeseg.cli.model_fact_options import add_model_fact_options

    add_model_fact_options(parser)  # the same facts for every MODEL
    from edgeseg.cli.triton_options import add_triton_options

    add_triton_options(parser)
    parser.set_defaults(func=run)


def _frames(source: str | None, count: int, size: tuple[int, int]):
    """`count` BGR frames from a video or image folder, or synthetic street scenes of `size`, made as they are
    needed (edgeseg.bench.FrameStream): only those that fit in 512 MB are held."""
    from edgeseg.bench import FrameStream

    if source is None:
        from edgeseg.data import synthetic_frames

        return FrameStream(lambda: synthetic_frames(count, size), count)
    from edgeseg.data.frame_files import iter_frames

    return FrameStream(lambda: iter_frames(source, limit=count), count)


def _check(args: argparse.Namespace) -> list[Path]:
    """Every option, the model files and the output paths, before any model is loaded or timed: the models to run."""
    from edgeseg.bench_table import check_backend_fits, resolve_models
    from edgeseg.config import size_hw
    from edgeseg.errors import ConfigError, OutputPathError

    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    if args.warmup < 0 or args.min_iters < 0 or args.min_seconds < 0:
        raise ConfigError("--warmup, --min-iters and --min-seconds must be >= 0")
    if args.min_iters < 1 and args.min_seconds <= 0:
        raise ConfigError("--min-iters 0 with --min-seconds 0 times nothing: give at least one of them")
    height, width = size_hw(args.frame_size, "--frame-size")
    if args.source is None:  # drawing one synthetic frame of that size must fit
        from edgeseg.data.scenes.frames import render_bytes
        from edgeseg.memory import require_memory

        require_memory(render_bytes((height, width)), f"a synthetic frame at --frame-size {height} {width}",
                       "pass a smaller --frame-size")
    if args.limit is not None and args.data is None:
        raise ConfigError("--limit counts --data images to score: give --data DIR too, or leave --limit out")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1 image, got {args.limit}")
    if args.compare:  # checked before the timing, not after it
        from edgeseg._optional import install_hint, is_available
        from edgeseg.errors import BackendUnavailableError

        if not args.video:
            raise ConfigError("--compare needs --video (the clip all contenders segment)")
        if not is_available("torch"):
            raise BackendUnavailableError("--compare runs a PyTorch loop and needs 'torch', which is not installed; "
                                          f"{install_hint('torch', command='bench')}")
        for option, value in (("--compare", args.compare), ("--video", args.video)):
            if not Path(value).is_file():
                raise ConfigError(f"{option} {value} is not a file")
    out = Path(args.json_out)
    if out.suffix.lower() == ".png":
        raise OutputPathError(f"--json {out} ends in .png, the chart's name next to it: give a .json file name")
    check_outputs(args, [Path(m) for m in args.models])  # before the models are looked at; again once globs expand
    models = resolve_models(args.models)
    check_backend_fits(models, args.backend)
    if args.compare and len(models) != 1:
        raise ConfigError(f"--compare races one model against the naive loops; got {len(models)} models: give one")
    check_outputs(args, models)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create the folder of --json {out}: {exc.strerror or exc}") from exc
    return models


def _outputs(args: argparse.Namespace) -> dict[str, Path]:
    """What bench writes: the JSON, the table chart next to it and, with --compare, the race chart."""
    out = Path(args.json_out)
    paths = {"--json": out, "the chart": out.with_suffix(".png")}
    if args.compare:
        paths["the --compare chart"] = out.with_name(out.stem + "_compare.png")
    return paths


def check_outputs(args: argparse.Namespace, models: list[Path]) -> None:
    """The output guard: no output replaces a model (or its sidecar), a source, the dataset or another output."""
    from edgeseg.output_guard import Input, Output, check_outputs as guard, dataset_input, model_inputs, source_inputs

    outputs = [Output(flag, args.json_out if flag == "--json" else path)  # as typed: a trailing '/' names a folder
               for flag, path in _outputs(args).items()]
    inputs = [item for model in models for item in model_inputs(model)]
    inputs += source_inputs([args.source, args.video]) + dataset_input(args.data)
    inputs += [Input(flag, value) for flag, value in (("--compare", args.compare), ("--classes", args.classes))
               if value is not None]
    guard(outputs, inputs)


def _dataset_for(args: argparse.Namespace):
    """meta -> the dataset to score on, or None without --data. A folder is opened (and checked) now, once."""
    if args.data is None:
        return None
    from edgeseg.data import open_dataset

    if args.data == "synthetic":  # synthetic scenes are drawn at each model's own input size
        return lambda meta: open_dataset("synthetic", args.split, synthetic_size=meta.input_size)
    dataset = open_dataset(args.data, args.split)
    if len(dataset) == 0:
        from edgeseg.errors import DataError

        raise DataError(f"--data {args.data} has no images in its {args.split!r} split")
    return lambda meta: dataset


def _chart_path(args: argparse.Namespace) -> Path | None:
    """Where the table chart goes, or None (with a warning now, not after the timing) when matplotlib is missing."""
    import logging

    from edgeseg._optional import install_hint, is_available

    if is_available("matplotlib"):
        return _outputs(args)["the chart"]
    logging.getLogger(__name__).warning("no chart: matplotlib is not installed (%s)", install_hint("matplotlib"))
    return None


def run(args: argparse.Namespace) -> int:
    from edgeseg.cli.triton_options import bench_on_triton, triton_target

    if triton_target(args.models[0], args) is not None:  # the model runs on a Triton server: one row, its stats
        check_outputs(args, [])
        result = bench_on_triton(args, _frames(args.source, args.frames, tuple(args.frame_size)))
        from edgeseg.files import write_file

        write_file(args.json_out, json.dumps(result, indent=2) + "\n")
        print(f"{result['triton_model']} on {result['url']}: {result['fps']:.1f} FPS, server batch sizes "
              f"{result['server_batch_sizes']}; wrote {args.json_out}")
        return 0
    from edgeseg.bench import device_info
    from edgeseg.bench_table import bench_models, exit_code, format_table, nothing_ran_error
    from edgeseg.files import write_file

    models = _check(args)
    from edgeseg.cli.model_fact_options import model_facts_from_args

    facts = model_facts_from_args(args)
    dataset_for = _dataset_for(args)
    chart = _chart_path(args)
    frames = _frames(args.source, args.frames, tuple(args.frame_size))
    loop_options = {"warmup": args.warmup, "min_seconds": args.min_seconds, "min_iters": args.min_iters}
    rows = bench_models(models, frames, backend=args.backend, dataset_for=dataset_for, limit=args.limit,
                        loop_options=loop_options, model_facts=facts)
    print(format_table(rows))
    result = _result(args, rows, frames, device_info())
    if args.compare and rows[0].ran:
        result["end_to_end"] = _compare(args, rows[0].path, draw=chart is not None)
    write_file(args.json_out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json_out}")
    if chart is not None and any(row.ran for row in rows):
        from edgeseg.bench_chart import table_chart

        table_chart(rows, chart, title=_chart_title(result))
        print(f"wrote {chart}")
    if not any(row.ran for row in rows):
        raise nothing_ran_error(rows)
    return exit_code(rows)


def _result(args: argparse.Namespace, rows: list, frames: list, device: dict) -> dict:
    """The JSON: one model keeps the keys `bench MODEL` always wrote at the top level; 'rows' holds every model."""
    result: dict = {}
    if len(rows) == 1 and rows[0].ran:
        result.update(rows[0].result)
        if rows[0].miou is not None:
            result.update(miou=rows[0].miou, eval_images=rows[0].eval_images)
    result.update(
        device=device,
        frame_size=list(frames[0].shape[:2]),
        timing={"source": args.source or "synthetic", "frames": len(frames), "warmup": args.warmup,
                "min_seconds": args.min_seconds, "min_iters": args.min_iters},
        rows=[row.to_dict() for row in rows],
    )
    if args.data is not None:
        result["data"] = {"path": args.data, "split": args.split, "limit": args.limit}
    return result


def _chart_title(result: dict) -> str:
    device = result["device"]
    where = ", ".join(device.get("gpus") or []) or f"{device['cpu']} ({device['cores']} cores, no GPU)"
    height, width = result["frame_size"]
    ran = [row for row in result["rows"] if row["status"] == "ok"]
    models = sorted({f"{row['model_name']} {row['input_size'][0]}x{row['input_size'][1]}" for row in ran})
    title = f"{', '.join(models)}: edgeseg bench on {where}; {width}x{height} frames"
    data = result.get("data")
    if data:
        images = next((row["eval_images"] for row in result["rows"] if row["eval_images"]), None)
        title += f"; mIoU on {Path(data['path']).name} {data['split']} ({images} images)"
    return title


def _compare(args: argparse.Namespace, model: Path, *, draw: bool = True) -> dict:
    """naive PyTorch, naive ONNX Runtime and EdgeSeg's pipeline on the same video, one after the other."""
    import shutil
    import tempfile

    from edgeseg.bench_compare import compare_chart, ort_default_infer, run_edgeseg, run_naive, torch_infer
    from edgeseg.files import model_kind

    work = Path(tempfile.mkdtemp(prefix="edgeseg-compare-"))
    contenders = {}
    try:  # the contenders' videos are scratch: removed whatever happens
        infer, meta = torch_infer(args.compare)
        contenders["naive_torch_fp32"] = run_naive(infer, meta, args.video, work / "naive_torch.mp4")
        if model_kind(model) == "onnx":
            infer, meta = ort_default_infer(model)
            contenders["naive_ort"] = run_naive(infer, meta, args.video, work / "naive_ort.mp4")
        contenders["edgeseg"] = run_edgeseg(model, args.video, work / "edgeseg.mp4")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = contenders["naive_torch_fp32"]["fps_end_to_end"]
    for name, result in contenders.items():
        result["ratio_to_naive_torch"] = result["fps_end_to_end"] / base
        print(f"end-to-end {name:<18} {result['fps_end_to_end']:7.2f} FPS  {result['ratio_to_naive_torch']:5.2f}x naive")
    from edgeseg.bench import device_info

    summary = {"model": meta.model_name, "video": args.video, "device": device_info(), "contenders": contenders}
    chart = _outputs(args)["the --compare chart"]
    if draw:
        compare_chart(summary, chart)
        print(f"wrote {chart}")
    return summary
