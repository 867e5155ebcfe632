"""`edgeseg eval`: score a model (.pt, .onnx, .engine) or a folder of predicted masks on a labelled split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeseg.errors import ConfigError, OutputPathError
from edgeseg.files import write_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="pixel acc, mean acc, mIoU, fwIoU and per-class IoU of a model or masks")
    parser.add_argument("model", nargs="?", help=".pt checkpoint, .onnx or .engine (omit with --pred)")
    parser.add_argument("--pred", help="folder of predicted class-id PNGs named like the dataset's images")
    parser.add_argument("--data", required=True, help="dataset folder, or 'synthetic'")
    from edgeseg.runtime.backends import BACKENDS

    parser.add_argument("--split", default="val", help="the dataset split to score")
    parser.add_argument("--json", dest="json_out", help="write the scores here")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="inference backend for .onnx/.engine models (auto: by file type and provider)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.set_defaults(func=run)


def _predict_fn(model_path: Path, backend: str = "auto"):
    """(predict function, class names) for a model file, importing torch only for .pt."""
    if model_path.suffix in (".pt", ".pth"):
        from edgeseg.training.checkpoint import load_model
        from edgeseg.training.predictor import TorchPredictor

        model, meta = load_model(model_path)
        return TorchPredictor(model, meta).predict, meta
    from edgeseg.runtime.segmenter import Segmenter

    segmenter = Segmenter(model_path, backend=backend)
    return segmenter.predict, segmenter.meta


def run(args: argparse.Namespace) -> int:
    from edgeseg.data import open_dataset
    from edgeseg.evaluation import evaluate_pred_dir, evaluate_predictor

    if (args.model is None) == (args.pred is None):
        raise ConfigError("give either a MODEL file or --pred PRED_DIR")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1 image, got {args.limit}")
    if args.json_out and Path(args.json_out).is_dir():
        raise OutputPathError(f"--json {args.json_out} is a folder; give a file name")
    if args.pred:
        dataset = open_dataset(args.data, args.split)
        scores = evaluate_pred_dir(args.pred, dataset, limit=args.limit)
    else:
        predict, meta = _predict_fn(Path(args.model), args.backend)
        dataset = open_dataset(args.data, args.split, synthetic_size=meta.input_size)
        scores = evaluate_predictor(predict, dataset, meta.classes, limit=args.limit)
    result = scores.to_dict()
    print(
        f"{scores.num_images} images: pixel acc {scores.pixel_acc:.4f}, mean acc {scores.mean_acc:.4f}, "
        f"mIoU {scores.miou:.4f}, fwIoU {scores.fwiou:.4f}"
    )
    for name, iou in scores.per_class_iou.items():
        print(f"  {name:<16} IoU {iou:.4f}")
    if args.json_out:
        write_file(args.json_out, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0
