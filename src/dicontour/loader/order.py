"""The order of an epoch: a pure function of (seed, epoch), split between ranks.

Nothing here depends on worker count, timing or earlier epochs, so resuming a
job needs only ``(epoch, batch)``: the order of any epoch can be recomputed.

Positions are 0..n-1 over the *eligible* samples (those with the target
contour); the loader maps them to source indices.
"""

from __future__ import annotations

import numpy as np


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The positions 0..n-1 in the order of epoch ``epoch``.

    Parameters
    ----------
    n : int
        Number of samples.
    seed, epoch : int
        Non-negative; the order is ``default_rng([seed, epoch]).permutation(n)``.
    shuffle : bool
        False gives ``0..n-1`` in every epoch.

    Returns
    -------
    int64 ndarray of shape (n,)

    Examples
    --------
    >>> epoch_order(5, seed=0, epoch=0, shuffle=False)
    array([0, 1, 2, 3, 4])
    >>> sorted(epoch_order(5, seed=0, epoch=3).tolist())
    [0, 1, 2, 3, 4]
    """
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


def rank_share(order: np.ndarray, *, rank: int, world_size: int, drop_last: bool) -> np.ndarray:
    """The part of an epoch's ``order`` that rank ``rank`` of ``world_size`` reads.

    Every rank gets the same number of samples, taken with stride
    ``world_size`` (rank r reads ``order[r::world_size]``).  When n is not a
    multiple of ``world_size``, ``drop_last=False`` pads the order by wrapping
    around to its start (a few samples are read twice in the epoch, by
    different ranks) and ``drop_last=True`` drops the tail (a few samples are
    not read in this epoch; which ones changes from epoch to epoch).

    Examples
    --------
    >>> order = np.arange(5)
    >>> rank_share(order, rank=1, world_size=2, drop_last=False)
    array([1, 3, 0])
    >>> rank_share(order, rank=1, world_size=2, drop_last=True)
    array([1, 3])
    """
    n = len(order)
    if world_size == 1:
        return order
    if drop_last:
        total = (n // world_size) * world_size
        return order[:total][rank::world_size]
    total = -(-n // world_size) * world_size
    return np.resize(order, total)[rank::world_size]


def samples_per_rank(n: int, *, world_size: int, drop_last: bool) -> int:
    """How many samples each rank reads per epoch (see :func:`rank_share`)."""
    return n // world_size if drop_last else -(-n // world_size)


def batch_count(samples: int, batch_size: int, *, drop_last: bool) -> int:
    """Batches in an epoch of ``samples`` samples; the last one is short unless dropped.

    Examples
    --------
    >>> batch_count(10, 4, drop_last=False), batch_count(10, 4, drop_last=True)
    (3, 2)
    """
    return samples // batch_size if drop_last else -(-samples // batch_size)
