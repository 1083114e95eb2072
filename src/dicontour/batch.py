"""What a training step receives: :class:`Batch` (images, masks) with its :class:`BatchMeta`.

A ``Batch`` is a 2-tuple ``(images, masks)``, so ``for images, masks in
loader`` unpacks it as before, and it carries the per-sample metadata as
``batch.meta``: one column per field (patient id, slice, pixel spacing, case
id, source index), in batch order.  ``batch.as_dict()`` gives the
dictionary MONAI's transforms and most training scripts expect
(``"image"``, ``"label"`` and one key per metadata column).

The metadata is computed in the training process, from the source's compact
columns and the batch's sample indices (the loader knows which samples a
batch holds and which were skipped); nothing about it travels back from the
workers.

The module sits below the loader and the cache: both serve batches of these
types (the cache's :class:`~dicontour.cache.CacheSource` is a
:class:`~dicontour.loader.SampleSource` without importing the loader).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def case_id(patient_id: str, slice: int) -> str:
    """The case id of a slice: ``<patient_id>_<slice:04d>`` (nnU-Net style).

    Examples
    --------
    >>> case_id("SCD0000101", 48)
    'SCD0000101_0048'
    """
    return f"{patient_id}_{slice:04d}"


def out_of_range(indices: np.ndarray, count: int) -> int | None:
    """The first of the int64 ``indices`` outside ``0 .. count - 1``, or None.

    What a source's ``meta`` checks before it looks anything up.

    Examples
    --------
    >>> out_of_range(np.array([0, 3, -1]), 3), out_of_range(np.array([2]), 3)
    (3, None)
    """
    if not (indices.view(np.uint64) >= count).any():  # negatives too, as huge unsigned
        return None
    return int(indices[(indices < 0) | (indices >= count)][0])


@dataclass(frozen=True)
class BatchMeta:
    """Per-sample metadata of one batch, as columns in batch order.

    Attributes
    ----------
    patient_id : tuple of str
        The patient of each sample (``""`` where the source cannot tell).
    slice : int64 ndarray of shape (B,)
        The slice number n of ``dicoms/<patient_id>/<n>.dcm`` (-1 where unknown).
    pixel_spacing : float64 ndarray of shape (B, 2)
        (row, column) spacing in mm, NaN where the source does not record it
        (the cache does not: see ``docs/loader.md``).  Of the image as read,
        before any ``size`` crop or pad (which does not rescale) and before a
        transform (which may: spacing is not updated by augmentation).
    case_id : tuple of str
        ``<patient_id>_<slice:04d>``: the key of the sample in split files
        (``Index.subset(cases=...)``, ``dicontour split``).
    index : int64 ndarray of shape (B,)
        The samples' positions in the source (``loader.source``).

    Examples
    --------
    >>> meta = BatchMeta.unknown(np.array([4, 7]))
    >>> len(meta), meta.case_id, meta.pixel_spacing.shape
    (2, ('4', '7'), (2, 2))
    >>> meta[1]["index"]
    7
    """

    patient_id: tuple[str, ...]
    slice: np.ndarray
    pixel_spacing: np.ndarray
    case_id: tuple[str, ...]
    index: np.ndarray

    @classmethod
    def unknown(cls, indices: np.ndarray) -> BatchMeta:
        """Metadata for a source that offers none: indices only, the case id is the index."""
        indices = np.asarray(indices, dtype=np.int64)
        n = len(indices)
        return cls(
            patient_id=("",) * n,
            slice=np.full(n, -1, dtype=np.int64),
            pixel_spacing=np.full((n, 2), np.nan),
            case_id=tuple(str(k) for k in indices.tolist()),
            index=indices,
        )

    @property
    def key(self) -> tuple[str, ...]:
        """The samples' keys: the same as :attr:`case_id`."""
        return self.case_id

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j: int) -> dict[str, Any]:
        """Sample j's metadata as a dict of plain Python values."""
        return {
            "patient_id": self.patient_id[j],
            "slice": int(self.slice[j]),
            "pixel_spacing": tuple(float(v) for v in self.pixel_spacing[j]),
            "case_id": self.case_id[j],
            "index": int(self.index[j]),
        }

    def as_dict(self) -> dict[str, Any]:
        """The columns by name: patient_id, slice, pixel_spacing, case_id, index."""
        return {
            "patient_id": list(self.patient_id),
            "slice": self.slice,
            "pixel_spacing": self.pixel_spacing,
            "case_id": list(self.case_id),
            "index": self.index,
        }


class Batch(tuple):
    """One training batch: the 2-tuple ``(images, masks)``, with ``.meta``.

    Unpacks like a tuple (``images, masks = batch``); ``batch.images``,
    ``batch.masks`` and ``batch.meta`` name the parts; :meth:`as_dict` gives
    MONAI's dictionary form.

    Attributes
    ----------
    images : float32 ndarray of shape (B, H, W), or (B, 1, H, W) with ``channels=True``
    masks : bool ndarray of shape (B, H, W) ("i", "o") or (B, 2, H, W) ("both");
        (B, C, H, W) with ``channels=True``, C = 1 or 2
    meta : BatchMeta

    Examples
    --------
    >>> batch = Batch(np.zeros((2, 3, 3), np.float32), np.zeros((2, 3, 3), bool),
    ...               BatchMeta.unknown(np.array([0, 1])))
    >>> images, masks = batch
    >>> images is batch.images, sorted(batch.as_dict())
    (True, ['case_id', 'image', 'index', 'label', 'patient_id', 'pixel_spacing', 'slice'])
    """

    # A tuple subclass cannot have non-empty __slots__: meta lives in __dict__.
    meta: BatchMeta

    def __new__(cls, images: np.ndarray, masks: np.ndarray, meta: BatchMeta) -> Batch:
        batch = super().__new__(cls, (images, masks))
        batch.meta = meta
        return batch

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self[0], self[1], self.meta))

    @property
    def images(self) -> np.ndarray:
        return self[0]

    @property
    def masks(self) -> np.ndarray:
        return self[1]

    def __repr__(self) -> str:
        return (
            f"Batch(images={self[0].dtype} {self[0].shape}, masks={self[1].dtype} "
            f"{self[1].shape}, case_id={list(self.meta.case_id)})"
        )

    def as_dict(self) -> dict[str, Any]:
        """``{"image": images, "label": masks, **meta.as_dict()}`` (MONAI's keys)."""
        return {"image": self[0], "label": self[1], **self.meta.as_dict()}
