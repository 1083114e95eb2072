"""Argument types that refuse obviously invalid numbers while parsing (a usage error, exit 2).

Limits that depend on memory (a batch's bytes) are the library's to check;
these only refuse what can never make sense: a negative count, zero samples
per shard, a duration that is not a finite non-negative number.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: More worker processes than this is a typo, not a plan (each one is a Python process).
MAX_WORKERS = 1024


def count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=``: an integer in ``[minimum, maximum]``.

    Examples
    --------
    >>> count(1)("3")
    3
    >>> count(1)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be at least 1, got 0
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    parse.__name__ = "count"  # argparse names the type in some messages
    return parse


#: ``--workers``: 0 runs in this process, N starts N worker processes.
workers = count(0, MAX_WORKERS)


def duration(text: str) -> float:
    """An argparse ``type=``: a finite number >= 0 (milliseconds, seconds...).

    Examples
    --------
    >>> duration("2.5")
    2.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value
