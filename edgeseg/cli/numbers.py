"""The one type of every float option: a finite number, or a usage error naming the option.

Python's float() accepts 'nan' and 'inf', which no option means: `bench --min-seconds inf` would time forever and
`--min-seconds nan` would write a bare NaN into the JSON. `finite_float` refuses them while the command line is
parsed, so argparse names the option ("argument --min-seconds: ...") and exits 2 before anything runs. Each
command checks its options' ranges itself (they hold for the Python API too); `number(...)` adds a range where an
option has no other check.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable


def number(*, at_least: float | None = None, above: float | None = None, at_most: float | None = None,
           below: float | None = None) -> Callable[[str], float]:
    """An argparse `type=` for a finite float within the given bounds (each bound is optional)."""
    bounds = [(at_least, ">="), (above, ">"), (at_most, "<="), (below, "<")]
    wanted = " and ".join(f"{sign} {limit:g}" for limit, sign in bounds if limit is not None)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number" + (f" ({wanted})" if wanted else ""))
        if ((at_least is not None and value < at_least) or (above is not None and value <= above)
                or (at_most is not None and value > at_most) or (below is not None and value >= below)):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


finite_float = number()  # any finite number (a mean, a threshold the command checks itself)
