"""`edgeseg eval`: score a model (.pt, .onnx, .engine) or a folder of predicted masks on a labelled split.

Prints the four FCN-paper scores, per-class IoU and accuracy and the row-normalised confusion matrix; `--json FILE`
writes the scores, `--out DIR` writes scores.json, confusion.json (raw pixel counts), confusion.png and
per_class.png, and for models that give a confidence (logits out, not an in-graph argmax) confidence_bins.json and
confidence_bins.png: the scores per bin of the pixels' highest softmax probability. All come from the one
evaluation loop (edgeseg.evaluation), whose scores carry the confusion matrix.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from edgeseg.errors import ConfigError
from edgeseg.files import write_file
from edgeseg.metrics import SegmentationScores, format_score, row_normalised

# What --out DIR holds.
OUT_FILES = ("scores.json", "confusion.json", "confusion.png", "per_class.png")
# ... and, for models with a confidence, the scores per confidence bin.
CONFIDENCE_FILES = ("confidence_bins.json", "confidence_bins.png")
# The terminal shows the confusion matrix up to this many classes (wider tables wrap); --out always has it.
MAX_PRINTED_CONFUSION_CLASSES = 20


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="pixel acc, mean acc, mIoU, fwIoU, per-class IoU and accuracy, and the "
                                         "confusion matrix of a model or masks")
    parser.add_argument("model", nargs="?", help=".pt checkpoint, .onnx or .engine (omit with --pred)")
    parser.add_argument("--pred", metavar="PRED_DIR",
                        help="folder of predicted class-id PNGs named like the dataset's images")
    parser.add_argument("--data", required=True, help="dataset folder, or 'synthetic'")
    from edgeseg.runtime.backends import BACKENDS

    parser.add_argument("--split", default="val", help="the dataset split to score")
    parser.add_argument("--json", dest="json_out", metavar="FILE",
                        help="write the scores (fractions in [0, 1]) to this JSON file")
    parser.add_argument("--out", dest="out_dir", metavar="DIR",
                        help=f"folder for {', '.join(OUT_FILES)}, and {' and '.join(CONFIDENCE_FILES)} (IoU per "
                        "confidence bin) for models that output logits (the PNGs need matplotlib: the train or bench "
                        "extra)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="inference backend for .onnx/.engine models (auto: by file type and provider)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    from edgeseg.cli.model_fact_options import add_model_fact_options

    add_model_fact_options(parser)
    from edgeseg.cli.triton_options import add_triton_options

    add_triton_options(parser)
    from edgeseg.cli.tta_options import add_tta_options

    add_tta_options(parser)
    parser.set_defaults(func=run)


def _predict_fn(model_path: Path, backend: str = "auto", model_facts: Any = None, tta: Any = None):
    """(predict function, class names) for a model file, importing torch only for .pt."""
    if model_path.suffix in (".pt", ".pth"):
        if model_facts:
            raise ConfigError(f"--classes/--mean/--std/--input-size/... describe .onnx and engine files; "
                              f"{model_path.name} is a checkpoint, which carries its own")
        from edgeseg.training.checkpoint import load_model
        from edgeseg.training.predictor import TorchPredictor

        model, meta = load_model(model_path)
        return TorchPredictor(model, meta, tta=tta).predict, meta
    from edgeseg.runtime.segmenter import Segmenter

    segmenter = Segmenter(model_path, backend=backend, model_facts=model_facts, tta=tta)
    return segmenter.predict, segmenter.meta


def check_outputs(args: argparse.Namespace) -> None:
    """The output guard, before the model loads: --json names a file, --out a folder that exists or can be
    created, and neither replaces an input (the model, the dataset's files, the --pred masks) or the other."""
    from edgeseg.output_guard import Input, Output, check_outputs as guard, dataset_input, model_inputs

    outputs = [Output("--json", args.json_out)] if args.json_out else []
    if args.out_dir:
        outputs.append(Output("--out", args.out_dir, folder=True, files=OUT_FILES + CONFIDENCE_FILES))
    inputs = model_inputs(args.model) + dataset_input(args.data)
    if args.pred:
        inputs.append(Input("the --pred folder", args.pred, whole=True))
    if args.classes is not None:
        inputs.append(Input("--classes", args.classes))
    guard(outputs, inputs)


def _finite_or_none(value: Any) -> Any:
    """NaN (a class that never occurs) as JSON null, since NaN is not JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def scores_json(scores: SegmentationScores, *, model: str | None, pred: str | None, data: str, split: str,
                model_name: str | None) -> dict[str, Any]:
    """What scores.json and --json hold: fractions in [0, 1] (null for a class absent from labels and predictions)."""
    result = {"model": model, "model_name": model_name, "pred": pred, "data": data, "split": split,
              "classes": scores.class_names, **scores.to_dict()}
    return _finite_or_none(result)


def confusion_json(scores: SegmentationScores) -> str:
    """confusion.json's text: like json.dumps(indent=2), but one line per matrix row so it reads as a table."""
    data = scores.confusion_dict()
    rows = ",\n    ".join(json.dumps(row) for row in data.pop("matrix"))
    head = json.dumps(data, indent=2)[:-2]  # without the closing "\n}"
    return f'{head},\n  "matrix": [\n    {rows}\n  ]\n}}\n'


def confidence_bins_json(scores: SegmentationScores, *, model: str | None, data: str, split: str) -> dict[str, Any]:
    """What confidence_bins.json holds: per bin of the highest softmax probability p, its pixels and scores."""
    return _finite_or_none({
        "model": model, "data": data, "split": split, "classes": scores.class_names,
        "binning": "pixels by their highest softmax probability p = q / 255 (q the uint8 confidence): bin "
                   "[confidence_from, confidence_to), the last one including p = 1; pixel_share is the fraction "
                   "of all labelled pixels in the bin; null where a bin has no pixels or a class is absent from it",
        "bins": scores.by_confidence,
    })


def describe(args: argparse.Namespace, model_name: str | None, num_images: int) -> str:
    """One line naming what was scored on what, for the pictures' titles."""
    what = f"{model_name} ({Path(args.model).name})" if args.model else f"predictions in {Path(args.pred).name}/"
    data = "synthetic" if args.data == "synthetic" else Path(args.data).resolve().name
    return f"{what} on {data}, {args.split} split, {num_images} images"


def _percent_cell(percent: float, count: int) -> str:
    """A confusion cell as on confusion.png: '.' for no pixels, '<1' for a sliver, '-' for a class never labelled."""
    if math.isnan(percent):
        return "-"
    if count == 0:
        return "."
    return "<1" if percent < 1.0 else f"{percent:.0f}"


def format_scores(scores: SegmentationScores) -> str:
    """The scores as people read them: percentages (format_score), a per-class table and the confusion matrix."""
    lines = [f"{scores.num_images} images: pixel acc {format_score(scores.pixel_acc)}, mean acc "
             f"{format_score(scores.mean_acc)}, mIoU {format_score(scores.miou)}, fwIoU {format_score(scores.fwiou)}",
             f"  {'class':<16}{'IoU':>9}{'acc':>9}"]
    for name in scores.class_names:
        lines.append(f"  {name:<16}{format_score(scores.per_class_iou[name]):>9}"
                     f"{format_score(scores.per_class_acc.get(name, math.nan)):>9}")
    if scores.confusion is not None and len(scores.class_names) <= MAX_PRINTED_CONFUSION_CLASSES:
        percent = 100.0 * row_normalised(scores.confusion)
        lines.append("confusion matrix, % of each true class's pixels (rows: true class, columns: predicted)")
        lines.append(f"  {'':<16}" + "".join(f"{name[:5]:>6}" for name in scores.class_names))
        for name, row, counts in zip(scores.class_names, percent, scores.confusion):
            cells = "".join(f"{_percent_cell(v, c):>6}" for v, c in zip(row, counts))
            lines.append(f"  {name:<16}{cells}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from edgeseg.data import open_dataset
    from edgeseg.evaluation import evaluate_pred_dir, evaluate_predictor

    if (args.model is None) == (args.pred is None):
        raise ConfigError("give either a MODEL file or --pred PRED_DIR")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1 image, got {args.limit}")
    from edgeseg.cli.tta_options import tta_from_args

    tta = tta_from_args(args)
    if tta is not None and args.pred:
        raise ConfigError("--tta-scales/--tta-flip apply to a MODEL; --pred masks are already predicted")
    check_outputs(args)
    if args.out_dir:
        from edgeseg.accuracy_plots import require_matplotlib

        require_matplotlib()  # before the model loads, not after the whole split was scored
    model_name = None
    if args.pred:
        dataset = open_dataset(args.data, args.split)
        scores = evaluate_pred_dir(args.pred, dataset, limit=args.limit)
    else:
        from edgeseg.cli.model_fact_options import model_facts_from_args

        from edgeseg.cli.triton_options import open_triton_segmenter

        remote = open_triton_segmenter(args.model, args, tta=tta)
        predict, meta = ((remote.predict, remote.meta) if remote is not None else
                         _predict_fn(Path(args.model), args.backend, model_facts_from_args(args), tta))
        model_name = meta.model_name
        dataset = open_dataset(args.data, args.split, synthetic_size=meta.input_size)
        # the confidence comes from the same kernel pass as the mask; a graph ending in argmax has none
        by_confidence = bool(args.out_dir) and meta.output_format != "classmap"
        scores = evaluate_predictor(predict, dataset, meta.classes, limit=args.limit, by_confidence=by_confidence)
    result = scores_json(scores, model=args.model, pred=args.pred, data=str(args.data), split=args.split,
                         model_name=model_name)
    print(format_scores(scores))
    text = json.dumps(result, indent=2) + "\n"
    if args.json_out:
        write_file(args.json_out, text)
        print(f"wrote {args.json_out}")
    if args.out_dir:
        from edgeseg.accuracy_plots import write_accuracy_plots

        out_dir = Path(args.out_dir)
        write_file(out_dir / "scores.json", text)
        write_file(out_dir / "confusion.json", confusion_json(scores))
        title = describe(args, model_name, scores.num_images)
        write_accuracy_plots(out_dir, scores, title)
        written = list(OUT_FILES)
        if scores.by_confidence is not None:
            from edgeseg.accuracy_plots import write_confidence_plot

            write_file(out_dir / "confidence_bins.json", json.dumps(confidence_bins_json(
                scores, model=args.model, data=str(args.data), split=args.split), indent=2) + "\n")
            write_confidence_plot(out_dir, scores.by_confidence, title)
            written += CONFIDENCE_FILES
        print(f"wrote {', '.join(str(out_dir / name) for name in written)}")
        if scores.by_confidence is None:
            why = "--pred masks carry no confidence" if args.pred else "the model ends in an argmax (exported with " \
                "--argmax), so it has no per-pixel confidence; export it without --argmax to get them"
            print(f"no {' / '.join(CONFIDENCE_FILES)}: {why}")
    return 0
