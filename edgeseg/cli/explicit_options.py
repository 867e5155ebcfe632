"""Which options the user typed: argparse fills every option with its default, so a value equal to the default
cannot tell `--epochs 10` from no --epochs at all. `track_explicit(parser)` makes the parser's options record
their dest in `args.explicit_options` when they appear on the command line (also inside a subcommand's parser),
which is what lets typed options win over a --recipe while `--help` still shows the real defaults.
"""

from __future__ import annotations

import argparse

EXPLICIT_ATTR = "explicit_options"
_UNTRACKED = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


class _Recorded:
    """Mixed in front of an argparse Action class: note the dest, then do what the action does."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, EXPLICIT_ATTR, None)
        if given is None:
            given = set()
            setattr(namespace, EXPLICIT_ATTR, given)
        given.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


def track_explicit(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make every option already added to `parser` record itself when given; call after the last add_argument."""
    for action in parser._actions:
        if isinstance(action, (_Recorded, *_UNTRACKED)):
            continue
        cls = type(action)
        action.__class__ = type(f"Recorded{cls.__name__}", (_Recorded, cls), {})
    return parser


def explicit_options(args: argparse.Namespace) -> set[str]:
    """The dests given on the command line (empty when none, or when the parser was not tracked)."""
    return set(getattr(args, EXPLICIT_ATTR, ()))
