"""What a BatchLoader reads from: a *sample source*.

A source is a small, picklable description of N samples that every worker
process receives once.  It must not hold per-sample Python objects (keep
paths, shapes and offsets in numpy arrays), so that its size stays compact and
copying it into each worker is cheap.

Two sources exist: :class:`IndexSource` (DICOMs and contour files found by a
scan) and the preprocessed cache's source (``dicontour.cache``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from ..targets import Target as Target  # re-exported: defined once, in targets.py

#: ``transform(image, mask, rng) -> (image, mask)``: image float32 (H, W), mask
#: bool (C, H, W), rng a ``numpy.random.Generator`` made for this sample and
#: epoch; returns arrays of the same kinds (see ``dicontour.augment``).
Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@runtime_checkable
class SampleSource(Protocol):
    """The interface BatchLoader needs.

    ``read`` runs in worker processes and raises ``DicomError`` or
    ``ContourError`` (naming the file) for a sample that cannot be read.

    A source may also offer ``read_into(k, target, image, mask) -> None``,
    writing sample k into the given arrays (a slot of the loader's shared
    memory) and raising ``ValueError`` if their shapes differ from the
    sample's.  Workers use it instead of ``read`` when nothing is to be done
    to a sample (no ``normalize``, no ``size``), saving an intermediate
    array; it is optional, so it is not part of this protocol's checks.

    A source may also offer ``meta(indices) -> BatchMeta``: the patient id,
    slice, pixel spacing and case id of the samples at ``indices`` (an int64
    array), computed from compact columns.  The loader calls it in the
    training process for every batch it delivers (``batch.meta``); without
    it, batches carry the indices only (:meth:`BatchMeta.unknown`).
    """

    def __len__(self) -> int:
        """Number of samples N."""
        ...

    def shapes(self) -> np.ndarray:
        """int64 array (N, 2): the (H, W) of each sample's image."""
        ...

    def has(self, target: Target) -> np.ndarray:
        """bool array (N,): whether sample k has the contour(s) ``target`` needs."""
        ...

    def read(self, k: int, target: Target) -> tuple[np.ndarray, np.ndarray]:
        """(image float32 (H, W), mask bool (H, W), or (2, H, W) [i, o] for "both")."""
        ...

    def describe(self, k: int) -> str:
        """Where sample k comes from (patient, slice, files), for errors and logs."""
        ...
