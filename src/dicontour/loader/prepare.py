"""Per-sample preparation done in the workers: intensity normalisation, fitting to a size.

Images are (H, W) = (rows, columns) float32; masks are (H, W) or (C, H, W)
bool.  Normalisation uses the image's own statistics, before any padding, so
padding does not change them; padded pixels are 0 in the output (mask False).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Normalize = Literal["zscore", "percentile"] | None
NORMALIZE = (None, "zscore", "percentile")


def normalize(image: np.ndarray, how: Normalize) -> np.ndarray:
    """Normalise one image's intensities.

    Parameters
    ----------
    image : float32 ndarray of shape (H, W)
    how : {None, "zscore", "percentile"}
        None: unchanged.  ``"zscore"``: subtract the mean, divide by the
        standard deviation (a constant image becomes all 0).  ``"percentile"``:
        clip to the 1st..99th percentile and scale that range to [0, 1] (a
        constant image becomes all 0).

    Returns
    -------
    float32 ndarray of shape (H, W)

    Examples
    --------
    >>> normalize(np.array([[1, 2], [3, 4]], np.float32), "zscore").round(2)
    array([[-1.34, -0.45],
           [ 0.45,  1.34]], dtype=float32)
    >>> normalize(np.zeros((2, 2), np.float32), "percentile")
    array([[0., 0.],
           [0., 0.]], dtype=float32)
    """
    if how is None:
        return image
    if how == "zscore":
        # float64 statistics: a float32 sum over 65k pixels loses digits.
        mean = image.mean(dtype=np.float64)
        std = image.std(dtype=np.float64)
        out = image - np.float32(mean)
        if std > 0:
            out /= np.float32(std)
        return out
    if how == "percentile":
        low, high = np.percentile(image, [1.0, 99.0])
        if not high > low:
            return np.zeros_like(image)
        out = (image - np.float32(low)) * np.float32(1.0 / (high - low))
        return np.clip(out, 0.0, 1.0, out=out)
    raise ValueError(f"normalize must be one of {NORMALIZE}; got {how!r}")


def centre_slices(source: int, target: int) -> tuple[slice, slice]:
    """(from, to) slices that centre ``source`` pixels in ``target`` along one axis.

    A longer source is cropped, a shorter one padded; an odd difference puts
    the extra pixel at the end (bottom or right).

    Examples
    --------
    >>> centre_slices(5, 3)
    (slice(1, 4, None), slice(0, 3, None))
    >>> centre_slices(3, 6)
    (slice(0, 3, None), slice(1, 4, None))
    """
    if source >= target:
        start = (source - target) // 2
        return slice(start, start + target), slice(0, target)
    start = (target - source) // 2
    return slice(0, source), slice(start, start + source)


def place(array: np.ndarray, out: np.ndarray) -> None:
    """Write ``array`` (..., h, w) centred into ``out`` (..., H, W): crop or zero-pad.

    Examples
    --------
    >>> out = np.full((2, 4), -1)
    >>> place(np.array([[1, 2], [3, 4]]), out)
    >>> out
    array([[0, 1, 2, 0],
           [0, 3, 4, 0]])
    """
    if array.shape == out.shape:
        out[...] = array
        return
    rows_from, rows_to = centre_slices(array.shape[-2], out.shape[-2])
    cols_from, cols_to = centre_slices(array.shape[-1], out.shape[-1])
    out[...] = 0
    out[..., rows_to, cols_to] = array[..., rows_from, cols_from]
