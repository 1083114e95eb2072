"""What a BatchLoader reads from: a *sample source*.

A source is a small, picklable description of N samples that every worker
process receives once.  It must not hold per-sample Python objects (keep
paths, shapes and offsets in numpy arrays), so that its size stays compact and
copying it into each worker is cheap.

Two sources exist: :class:`IndexSource` (DICOMs and contour files found by a
scan) and the preprocessed cache's source (``dicontour.cache``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..targets import Target as Target  # re-exported: defined once, in targets.py


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
