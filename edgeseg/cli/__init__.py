"""The `edgeseg` command: one module per subcommand, each with `add_parser(subparsers)` and `run(args) -> int`.

Command modules are imported only when their subcommand runs, so `edgeseg run` never imports torch.
What every subcommand shares lives here, once: the help formatter (defaults shown, epilogs kept as written),
`-v/--verbose` before or after the subcommand, and the translation of errors into "edgeseg CMD: error: ..." and
exit code 2 (EdgeSegError, and a missing optional dependency named with the extra that brings it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import Any, Sequence

from edgeseg._optional import install_hint, is_optional
from edgeseg.errors import EdgeSegError

# subcommand -> module under edgeseg.cli that defines add_parser() and run(); in the order people use them
COMMANDS = {
    "models": "models_cmd",
    "train": "train_cmd",
    "export": "export_cmd",
    "run": "run_cmd",
    "bench": "bench_cmd",
    "eval": "eval_cmd",
    "annotate": "annotate_cmd",
    "demo": "demo_cmd",
    "doctor": "doctor_cmd",
    "serve": "serve_cmd",
}

# Lines under 80 columns: RawDescriptionHelpFormatter keeps them as written.
DESCRIPTION = """\
EdgeSeg segments images and video in real time. It trains FCN segmentation
models (PyTorch), exports them to ONNX, FP16, INT8 and TensorRT engines, and
streams cameras, video files and network streams through a runtime that needs
no PyTorch.

The usual order:
  edgeseg train    writes a checkpoint (best.pt)
  edgeseg export   turns it into .onnx files and, with --engine, TensorRT engines
  edgeseg run      segments video, cameras or image folders with them
  edgeseg bench    measures their latency and FPS on this machine
  edgeseg eval     scores their accuracy (mIoU) on a labelled dataset
`edgeseg demo` does all of it on synthetic scenes; `edgeseg doctor` shows what
this machine can run. `edgeseg COMMAND --help` describes each command."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions and epilogs keep their line breaks; an option's default is shown after its help text.

    Defaults that say nothing (None, False, flags, an empty list) are not shown, and sequences read as they are
    typed (`--image-size 128 160`), not as Python tuples."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        default = action.default
        if (not text or "%(default)" in text or action.nargs == 0 or default is argparse.SUPPRESS
                or default is None or default is False or (isinstance(default, (list, tuple)) and not default)):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text  # a required positional has no default to show
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _add_verbose(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")


class CommandParser(argparse.ArgumentParser):
    """The parser of every subcommand: our formatter, and -v/--verbose after the subcommand name as well."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["formatter_class"] = HelpFormatter  # one look for every command, whatever a module asks for
        super().__init__(*args, **kwargs)
        # SUPPRESS: without -v here the subparser sets nothing, so a -v given before the subcommand survives
        _add_verbose(self, argparse.SUPPRESS)


def package_version() -> str:
    """The installed distribution's version; edgeseg.__version__ when running from a source tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgeseg")
    except PackageNotFoundError:
        from edgeseg import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeseg", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                        help="print the installed EdgeSeg version and exit")
    _add_verbose(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND",
                                parser_class=CommandParser)
    for name, module in COMMANDS.items():
        importlib.import_module(f"edgeseg.cli.{module}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except EdgeSegError as exc:
        if isinstance(exc.__cause__, BrokenPipeError):  # an output written through to a closed pipe (/dev/stdout)
            _silence_stdout()
            return 128 + signal.SIGPIPE
        print(f"edgeseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        # An optional dependency imported at module level (torch by edgeseg.models, ...): name the extra, no traceback.
        if not exc.name or not is_optional(exc.name):
            raise  # a module we do not know of: a bug or a broken install, the traceback helps
        top = exc.name.split(".")[0]
        print(f"edgeseg {args.command}: error: {args.command} needs '{top}', which is not installed; "
              f"{install_hint(top, command=args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`edgeseg doctor | head -1`): stop quietly, as Unix tools do on SIGPIPE
        _silence_stdout()
        return 128 + signal.SIGPIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's flush at exit does not hit the closed pipe again and print a warning."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a file descriptor
        pass


if __name__ == "__main__":
    sys.exit(main())
