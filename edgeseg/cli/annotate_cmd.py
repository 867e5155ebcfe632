"""`edgeseg annotate`: write EdgeSeg's metadata into a model made by another tool, so it runs without flags.

An .onnx file gets the ModelMeta in its metadata_props, written to --out NEW.onnx (or over the input with --in-place,
atomically); a TensorRT engine gets its sidecar <engine>.json (reading the engine needs TensorRT and a GPU, so run
it where the engine runs). What is written is what `edgeseg run` would use with the same flags: the facts the file
already carries, the graph's own facts, and the flags, checked against each other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeseg.cli.model_fact_options import add_model_fact_options, model_facts_from_args
from edgeseg.errors import ConfigError, OutputPathError
from edgeseg.files import ENGINE_SUFFIXES, model_kind
from edgeseg.output_guard import Input, Output, check_outputs

_EPILOG = """\
examples:
  edgeseg annotate deeplab.onnx --out deeplab_edgeseg.onnx --classes classes.json \\
      --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225 --input-size 512 1024
  edgeseg annotate segformer.engine --classes 19 --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225
  edgeseg run deeplab_edgeseg.onnx --source clip.mp4 --out overlay.mp4        # no flags needed any more
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "annotate",
        help="write EdgeSeg's metadata (classes, input size, normalisation) into an ONNX file or an engine's sidecar",
        description=__doc__.splitlines()[0],
        epilog=_EPILOG,
    )
    parser.add_argument("model", help="the .onnx file or TensorRT engine (.engine/.plan/.trt) to describe")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="NEW.onnx", help="write the annotated ONNX model here (.onnx only)")
    where.add_argument("--in-place", action="store_true",
                       help="replace the .onnx file itself with its annotated copy (atomically)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --out file or engine sidecar")
    add_model_fact_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeseg.annotate import annotate_engine, annotate_onnx

    model = Path(args.model)
    facts = model_facts_from_args(args)
    if model_kind(model) == "onnx":
        written, meta = annotate_onnx(model, _onnx_target(model, args), facts)
    elif model_kind(model) == "engine":
        if args.out or args.in_place:
            raise ConfigError(f"an engine's metadata goes into its sidecar {model.name}.json next to it; --out and "
                              "--in-place are for .onnx files")
        from edgeseg.sidecar import sidecar_path

        _check_outputs([Output("the sidecar", sidecar_path(model))], args)  # the engine itself stays an input
        written, sidecar = annotate_engine(model, facts, force=args.force)
        meta = sidecar.meta
    else:
        raise ConfigError(f"don't know how to annotate {model}: expected a .onnx file or a TensorRT engine "
                          f"({', '.join(ENGINE_SUFFIXES)})")
    size = "x".join(map(str, meta.input_size))
    print(f"wrote {written}: {meta.num_classes} classes, input {size} {meta.input_format}, output {meta.output_format}"
          f", mean {' '.join(f'{v:g}' for v in meta.mean)}, std {' '.join(f'{v:g}' for v in meta.std)}")
    return 0


def _onnx_target(model: Path, args: argparse.Namespace) -> Path:
    """Where the annotated ONNX goes: --out (never the input, never an existing file without --force) or the input's
    real path with --in-place (so a symlinked model is replaced atomically where it lives)."""
    if args.in_place:
        check_outputs([Output("--in-place", model)])  # writable; replacing the input is what was asked
        return model
    if not args.out:
        raise ConfigError(f"say where to write the annotated model: --out NEW.onnx, or --in-place to replace {model}")
    out = Path(args.out)
    if model_kind(out) != "onnx":
        raise ConfigError(f"--out {out} must end in .onnx")
    _check_outputs([Output("--out", args.out)], args)
    if out.exists() and not args.force:
        raise OutputPathError(f"--out {out} already exists; pass --force to replace it")
    return out


def _check_outputs(outputs: list, args: argparse.Namespace) -> None:
    """The output guard: never over the model (unless --in-place) or the --classes file. An engine's sidecar is
    what annotate writes, so it is not an input here."""
    inputs = [Input("the model", args.model)] + ([Input("--classes", args.classes)] if args.classes else [])
    check_outputs(outputs, inputs)
