"""The `edgeseg` command: one module per subcommand, each with `add_parser(subparsers)` and `run(args) -> int`.

Command modules are imported only when their subcommand runs, so `edgeseg run` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from edgeseg.errors import EdgeSegError

# subcommand -> module under edgeseg.cli that defines add_parser() and run()
COMMANDS = {
    "models": "models_cmd",
    "train": "train_cmd",
    "eval": "eval_cmd",
    "export": "export_cmd",
    "run": "run_cmd",
    "bench": "bench_cmd",
    "demo": "demo_cmd",
    "doctor": "doctor_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeseg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
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
        print(f"edgeseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
