"""The loader's resumable state: a small, versioned, validated dict.

Because the order is a pure function of (seed, epoch), the position in the
stream is all a restarted job needs: ``epoch`` and ``batch``, the next batch
to deliver.  The other keys describe the loader the state belongs to; loading
a state into a loader configured differently is refused, with every mismatch
shown side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import LoaderError

#: Version of the state layout; bumped when keys change meaning.
VERSION = 1

#: Keys that must match between a saved state and the loader it is loaded into.
CONFIG_KEYS = ("seed", "shuffle", "n", "target", "batch_size", "drop_last", "rank", "world_size")


def check_state(
    state: Mapping[str, Any], expected: Mapping[str, Any], batches: int
) -> tuple[int, int]:
    """Validate a saved state against the loader's own; return (epoch, batch).

    Parameters
    ----------
    state : mapping
        What :meth:`BatchLoader.state_dict` returned earlier.
    expected : mapping
        The loader's current ``state_dict()``.
    batches : int
        Batches per epoch; a position at the end of an epoch becomes the start
        of the next one.

    Raises
    ------
    LoaderError
        A wrong version, missing keys, or values that differ from the loader's.

    Examples
    --------
    >>> mine = {"version": 1, "seed": 0, "epoch": 0, "batch": 0}
    >>> check_state({**mine, "epoch": 2, "batch": 3}, mine, batches=5)
    (2, 3)
    """
    if not isinstance(state, Mapping):
        raise LoaderError(f"a loader state must be a dict; got {type(state).__name__}")
    if state.get("version") != VERSION:
        raise LoaderError(
            f"loader state version {state.get('version')!r} is not supported "
            f"(this dicontour reads version {VERSION})"
        )
    missing = [key for key in expected if key not in state]
    if missing:
        raise LoaderError(f"loader state lacks {', '.join(missing)}")
    mismatches = [
        f"  {key}: state {state[key]!r}, loader {expected[key]!r}"
        for key in CONFIG_KEYS
        if key in expected and state[key] != expected[key]
    ]
    if mismatches:
        raise LoaderError(
            "this state was saved by a loader configured differently:\n" + "\n".join(mismatches)
        )
    epoch, batch = state["epoch"], state["batch"]
    for key, value in (("epoch", epoch), ("batch", batch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise LoaderError(f"loader state {key} must be a non-negative integer; got {value!r}")
    if batch > batches:
        raise LoaderError(f"loader state batch {batch} is past the end of an epoch of {batches}")
    if batch == batches:
        return epoch + 1, 0
    return epoch, batch
