"""One benchmark table across model files: `edgeseg bench A.onnx B_fp16.onnx C.engine ...` (no torch).

Each model gets one row: its format (from the file name), the precision it was built in (its metadata, or an engine's
sidecar when the engine cannot be opened here), the backend that really ran it, its size on disk, its mIoU on a
labelled split when one is given, and p50/p99 latency per stage with FPS (`edgeseg.bench.benchmark_segmenter`).
A model this machine cannot run (a TensorRT engine without a GPU, a missing backend) is a row with status 'skipped',
a broken file one with status 'failed'; both carry the EdgeSegError message as their reason and no numbers, never
zeros, and the other rows still run.
"""

from __future__ import annotations

import glob
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.errors import BackendUnavailableError, ConfigError, EdgeSegError, ModelFileError
from edgeseg.files import CHECKPOINT_SUFFIXES, ENGINE_SUFFIXES, model_kind
from edgeseg.metrics import format_score

log = logging.getLogger(__name__)

OK, SKIPPED, FAILED = "ok", "skipped", "failed"
TABLE_STAGES = ("preprocess", "infer", "postprocess")  # the per-stage columns; 'frame' is their sum plus overhead
_ORT_BACKENDS = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-trt")


@dataclass
class BenchRow:
    """One model's line of the table. Numbers are None unless status is 'ok' (mIoU also when no --data was given)."""

    path: Path  # or, for a glob pattern that matched no model file, the pattern
    format: str
    size_mb: float | None
    precision: str | None = None
    status: str = OK
    reason: str | None = None
    backend: str | None = None
    miou: float | None = None
    eval_images: int | None = None
    model_name: str | None = None  # the architecture, from the model's metadata
    result: dict[str, Any] | None = None  # benchmark_segmenter's dict (stages, fps, backend, ...)
    label: str = ""
    error: EdgeSegError | None = field(default=None, repr=False)  # why it did not run (not written to JSON)

    @property
    def ran(self) -> bool:
        return self.status == OK

    @property
    def fps(self) -> float | None:
        return self.result["fps"] if self.result else None

    def latency_ms(self, stage: str, percentile: str) -> float | None:
        """`percentile` is 'p50', 'p90' or 'p99'; None when the stage was not timed."""
        if not self.result:
            return None
        return self.result["stages"].get(stage, {}).get(f"latency_ms_{percentile}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON row: units in the key names, mIoU as a fraction, null (never 0) for what was not measured."""
        stages = self.result["stages"] if self.result else None
        timed = ("frame", *TABLE_STAGES)
        return {
            "model": str(self.path),
            "format": self.format,
            "model_name": self.model_name,
            "precision": self.precision,
            "backend": self.backend,
            "status": self.status,
            "reason": self.reason,
            "size_mb": self.size_mb,
            "miou": self.miou,
            "eval_images": self.eval_images,
            "fps": self.fps,
            "latency_ms_p50": {s: self.latency_ms(s, "p50") for s in timed} if stages else None,
            "latency_ms_p99": {s: self.latency_ms(s, "p99") for s in timed} if stages else None,
            "input_size": self.result["input_size"] if self.result else None,
            "stages": stages,
        }


# ----- which files ----------------------------------------------------------------------------------------------------
def model_format(path: Path) -> str:
    """'onnx' or 'engine' by the file's suffix; ConfigError for anything bench cannot run."""
    kind = model_kind(path)
    if kind:
        return kind
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise ConfigError(f"bench times exported models; {path} is a checkpoint: export it first with "
                          f"`edgeseg export {path} --out DIR`, then bench DIR/*.onnx")
    raise ConfigError(f"bench runs .onnx and {'/'.join(ENGINE_SUFFIXES)} files; {path} is neither")


def _is_model_file(path: Path) -> bool:
    return path.is_file() and model_kind(path) is not None


def resolve_models(arguments: Sequence[str]) -> list[Path]:
    """The model files the arguments name, in the order given, each once.

    A glob pattern is expanded here too (a shell passes a pattern that matched nothing on as it is, and some shells
    never expand them); it keeps only .onnx/.engine files, so `runs/export/*` skips the sidecars. A pattern that
    matches no model file stays in the list as itself and becomes a 'skipped' row (`OUT/*.onnx OUT/*.engine` on a
    machine that built no engine still benchmarks the .onnx files, and the table says no engine was there).
    A file named literally must exist and be a model: that is an error before anything is loaded, since a typo
    should not cost minutes of benchmarking. The same file named twice (also through a symlink or two overlapping
    patterns) is benchmarked once, with a warning.
    """
    resolved: list[Path] = []
    first_name: dict[Path, str] = {}
    for argument in arguments:
        path = Path(argument)
        if path.exists() or not glob.has_magic(argument):
            if path.is_dir():
                raise ModelFileError(f"model {path} is a folder; give the .onnx/.engine files in it "
                                     f"(e.g. {path}/*.onnx)")
            if not path.is_file():
                raise ModelFileError(f"model {path} does not exist")
            matches = [path]
        else:
            matches = [Path(p) for p in sorted(glob.glob(argument)) if _is_model_file(Path(p))]
            if not matches:
                log.warning("no model file matches %s", argument)
                resolved.append(path)
                continue
        for match in matches:
            model_format(match)
            key = match.resolve()
            if key in first_name:
                log.warning("%s is the same file as %s: benchmarked once", match, first_name[key])
                continue
            first_name[key] = str(match)
            resolved.append(match)
    if not resolved:
        raise ConfigError("give at least one model file")
    return resolved


def check_backend_fits(paths: Sequence[Path], backend: str) -> None:
    """An explicit --backend must be able to open every model (ONNX Runtime runs .onnx, TensorRT runs engines)."""
    if backend not in (*_ORT_BACKENDS, "tensorrt"):
        return  # 'auto' picks per file; other backends (a server) say themselves what they take
    wanted = "onnx" if backend in _ORT_BACKENDS else "engine"
    misfits = [str(p) for p in paths if p.exists() and model_format(p) != wanted]
    if misfits:
        raise ConfigError(f"--backend {backend} runs only {'.onnx' if wanted == 'onnx' else '.engine'} files, not "
                          f"{', '.join(misfits)}; use --backend auto to run each file on its own backend")


def display_labels(paths: Sequence[Path]) -> list[str]:
    """Short names for the table and chart: the file name, or more of the path where two file names are equal."""
    labels = [p.name for p in paths]
    for depth in range(2, 1 + max(len(p.parts) for p in paths)):
        clashes = {label for label in labels if labels.count(label) > 1}
        if not clashes:
            break
        labels = [str(Path(*p.parts[-depth:])) if label in clashes else label for p, label in zip(paths, labels)]
    return labels


def declared_precision(path: Path) -> str | None:
    """The precision an engine was built in, from its sidecar, for rows whose model could not be opened here."""
    if model_format(path) != "engine":
        return None  # an ONNX file's metadata is read by opening it; a file that did not open says nothing
    from edgeseg.sidecar import read_sidecar

    try:
        return read_sidecar(path).precision
    except ModelFileError:
        return None  # the row's reason already says what is wrong with the engine


# ----- measuring ------------------------------------------------------------------------------------------------------
def bench_model(
    path: Path,
    frames: Sequence[np.ndarray],
    *,
    backend: str = "auto",
    dataset_for: Callable[[Any], Any] | None = None,
    limit: int | None = None,
    loop_options: dict[str, Any] | None = None,
    model_facts: Any = None,
) -> BenchRow:
    """One row: open the model, score it on `dataset_for(meta)` when given, then time it on `frames`.

    EdgeSegErrors become the row's reason (BackendUnavailableError: 'skipped', any other: 'failed'); anything else
    is a bug and propagates.
    """
    from edgeseg.bench import benchmark_segmenter
    from edgeseg.evaluation import evaluate_predictor
    from edgeseg.runtime.segmenter import Segmenter

    if not path.exists():  # a pattern that matched no model file (resolve_models checked every literal name)
        return BenchRow(path=path, format=model_kind(path) or "?", size_mb=None, status=SKIPPED, reason=f"no model file matches {path}")
    row = BenchRow(path=path, format=model_format(path), size_mb=path.stat().st_size / 1e6)
    try:
        with Segmenter(path, backend=backend, model_facts=model_facts) as segmenter:  # facts: edgeseg.model_facts
            row.precision, row.backend = segmenter.meta.precision, segmenter.backend.name
            row.model_name = segmenter.meta.model_name
            if dataset_for is not None:
                scores = evaluate_predictor(segmenter.predict, dataset_for(segmenter.meta), segmenter.meta.classes,
                                            limit=limit, progress=sys.stderr.isatty())
                row.miou, row.eval_images = scores.miou, scores.num_images
            row.result = benchmark_segmenter(segmenter, frames, **(loop_options or {}))
            row.backend = row.result["backend"]
    except EdgeSegError as exc:
        row.status = SKIPPED if isinstance(exc, BackendUnavailableError) else FAILED
        row.reason, row.error = str(exc), exc
        row.backend = row.miou = row.eval_images = row.result = row.model_name = None
        row.precision = row.precision or declared_precision(path)
    return row


def bench_models(paths: Sequence[Path], frames: Sequence[np.ndarray], **options: Any) -> list[BenchRow]:
    """A row per model, one model after the other (each is closed before the next is opened)."""
    rows = []
    labels = display_labels(paths)
    for index, (path, label) in enumerate(zip(paths, labels), 1):
        log.info("bench %d/%d: %s", index, len(paths), path)
        row = bench_model(path, frames, **options)
        row.label = label
        if not row.ran:  # the table repeats it; said now too, since a long run may follow
            log.info("%s %s: %s", label, row.status, row.reason)
        rows.append(row)
    return rows


# ----- reporting ------------------------------------------------------------------------------------------------------
def _ms_pair(row: BenchRow, stage: str) -> str:
    p50, p99 = row.latency_ms(stage, "p50"), row.latency_ms(stage, "p99")
    return "-" if p50 is None or p99 is None else f"{p50:.2f}/{p99:.2f}"


def format_table(rows: Sequence[BenchRow]) -> str:
    """The table people read: a header, one line per model, then the reasons of the models that did not run, each
    distinct reason once ([1], [2], ... in the status column), so three engines skipped for one cause read as one."""
    header = ["model", "format", "precision", "backend", "size MB", "mIoU",
              *(f"{s} p50/p99 ms" for s in TABLE_STAGES), "FPS", "status"]
    reasons: list[str] = []
    lines = []
    for row in rows:
        status = row.status
        if not row.ran:
            if row.reason not in reasons:
                reasons.append(row.reason or "")
            status += f" [{reasons.index(row.reason or '') + 1}]"
        miou = "-" if row.miou is None else format_score(row.miou)
        lines.append([row.label or row.path.name, row.format, row.precision or "?", row.backend or "-",
                      "-" if row.size_mb is None else f"{row.size_mb:.1f}", miou,
                      *(_ms_pair(row, s) for s in TABLE_STAGES),
                      "-" if row.fps is None else f"{row.fps:.1f}", status])
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    numeric = range(4, 10)  # size .. FPS: right-aligned

    def render(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    text = [render(line) for line in [header, *lines]]
    if reasons:
        text += ["", *(f"[{i}] {reason}" for i, reason in enumerate(reasons, 1))]
    return "\n".join(text)


def exit_code(rows: Sequence[BenchRow]) -> int:
    """0: every model ran or was skipped (this machine cannot run it) and at least one ran; 1: some ran but a model
    failed (a broken file). When none ran the caller raises instead (exit 2)."""
    return 1 if any(row.status == FAILED for row in rows) else 0


def nothing_ran_error(rows: Sequence[BenchRow]) -> EdgeSegError:
    """The error to raise when no model ran: one model's own error (as `bench MODEL` always did), or for several
    one naming every model's reason."""
    if len(rows) == 1:
        return rows[0].error or ModelFileError(rows[0].reason)
    reasons = "; ".join(f"{row.label or row.path.name}: {row.reason}" for row in rows)
    kind = BackendUnavailableError if all(row.status == SKIPPED for row in rows) else ModelFileError
    return kind(f"none of the {len(rows)} models ran ({reasons})")
