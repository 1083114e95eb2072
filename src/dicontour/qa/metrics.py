"""Overlap between two masks: Dice and IoU (Jaccard)."""

from __future__ import annotations

import numpy as np

from .._docstrings import fill_doc


def _pair(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(
            f"masks differ in shape: predicted={predicted.shape}, truth={truth.shape} "
            "(both must be (H, W))"
        )
    return predicted.astype(bool, copy=False), truth.astype(bool, copy=False)


#: Sections of the docstrings of :func:`dice` and :func:`iou`.
_DOCS = {
    "masks": "Parameters\n----------\n"
    "predicted, truth : bool array_like of the same shape\n    Non-zero means inside.",
    "raises": "Raises\n------\nValueError\n    The shapes differ.",
}


@fill_doc(**_DOCS)
def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient ``2 |A & B| / (|A| + |B|)`` of two boolean masks.

    %(masks)s

    Returns
    -------
    float
        In [0, 1]; 1.0 when both masks are empty (they agree everywhere).

    %(raises)s

    Examples
    --------
    >>> a = np.zeros((5, 5), bool); a[1:3, 1:3] = True      # 4 pixels
    >>> b = np.zeros((5, 5), bool); b[1:3, 1:4] = True      # 6 pixels, 4 shared
    >>> dice(a, b)                                          # 2*4 / (4+6)
    0.8
    """
    a, b = _pair(predicted, truth)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


@fill_doc(**_DOCS)
def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union ``|A & B| / |A | B|`` (Jaccard index).

    %(masks)s

    Returns
    -------
    float
        In [0, 1]; 1.0 when both masks are empty.  ``iou = dice / (2 - dice)``.

    %(raises)s

    Examples
    --------
    >>> a = np.zeros((5, 5), bool); a[1:3, 1:3] = True
    >>> b = np.zeros((5, 5), bool); b[1:3, 1:4] = True
    >>> iou(a, b)                                           # 4 / 6
    0.666...
    """
    a, b = _pair(predicted, truth)
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union
