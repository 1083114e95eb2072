"""Which mask(s) a training target asks for: ``"i"``, ``"o"`` or ``"both"``.

The one definition every API that takes a ``target`` uses (the index, the
sample sources, the loader, the CLI), so that none of them can forget a value
or silently fall back to another mask.

* ``"i"``: the i-contour's mask (the blood pool), shape (H, W);
* ``"o"``: the o-contour's mask (the outer wall), shape (H, W);
* ``"both"``: the two stacked as (2, H, W), channel 0 the i-mask and channel 1
  the o-mask; only slices that have both contours qualify.
"""

from __future__ import annotations

from typing import Literal, cast

Target = Literal["i", "o", "both"]

#: Every valid target, in the order the docs list them.
TARGETS: tuple[str, ...] = ("i", "o", "both")


def check_target(value: object) -> Target:
    """Return ``value`` as a :data:`Target`, or raise ``ValueError`` naming the valid ones.

    Examples
    --------
    >>> check_target("both")
    'both'
    >>> check_target("x")
    Traceback (most recent call last):
    ...
    ValueError: target must be one of 'i', 'o', 'both'; got 'x'
    """
    # isinstance first: `in` on a tuple compares with ==, which an array answers elementwise.
    if not isinstance(value, str) or value not in TARGETS:
        valid = ", ".join(repr(t) for t in TARGETS)
        raise ValueError(f"target must be one of {valid}; got {value!r}")
    return cast(Target, value)
