"""`edgeseg models`: list the model registry."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list the models that can be trained")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeseg.models import list_models

    for name in list_models():
        print(name)
    return 0
