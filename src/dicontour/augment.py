"""Augmentation for ``BatchLoader(transform=...)``: random geometry and intensity, reproducible.

Every transform here is a small frozen dataclass, picklable (worker processes
receive it once), and called as ``t(image, mask, rng) -> (image, mask)``:

* ``image``: float32 ndarray of shape (H, W) = (rows, columns);
* ``mask``: bool ndarray of shape (C, H, W), the target's masks ([i, o] for
  ``"both"``);
* ``rng``: the ``numpy.random.Generator`` the loader made for this sample and
  epoch, ``default_rng([seed, epoch, sample])``.  All randomness comes from
  it, so an epoch's augmented batches are the same for any number of workers
  and after a resume.

Geometry moves image and masks together, with the same draw; masks are
moved by nearest neighbour, so they stay bool and hold no new values.  Only
numpy is needed.  :func:`from_monai` and :func:`from_torchio` wrap a MONAI
dictionary transform or a TorchIO transform in the same interface (and seed
their generators from ``rng``).

Examples
--------
>>> from dicontour.augment import Compose, RandomFlip, RandomRot90, RandomIntensity
>>> augment = Compose([RandomFlip(), RandomRot90(), RandomIntensity()])
>>> image = np.arange(16, dtype=np.float32).reshape(4, 4)
>>> mask = np.zeros((1, 4, 4), bool); mask[0, 0, 0] = True
>>> out, out_mask = augment(image, mask, np.random.default_rng([0, 0, 7]))
>>> out.shape, out_mask.dtype, int(out_mask.sum())
((4, 4), dtype('bool'), 1)
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import numpy as np

__all__ = [
    "Compose",
    "RandomAffine",
    "RandomCrop",
    "RandomFlip",
    "RandomIntensity",
    "RandomRot90",
    "affine",
    "from_monai",
    "from_torchio",
]

Pair = tuple[np.ndarray, np.ndarray]


def _range(name: str, value: Sequence[float], *, low: float = -math.inf) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair of numbers; got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and low <= a <= b):
        raise ValueError(f"{name} must be finite with {low} <= min <= max; got {value!r}")
    return a, b


def _probability(p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1]; got {p!r}")
    return float(p)


@dataclass(frozen=True)
class Compose:
    """Apply ``transforms`` in order, each drawing from the same generator.

    Examples
    --------
    >>> Compose([RandomFlip(axes=(1,), p=1.0)])(
    ...     np.array([[1.0, 2.0]], np.float32), np.array([[[True, False]]]), None)
    (array([[2., 1.]], dtype=float32), array([[[False,  True]]]))
    """

    transforms: Sequence[Callable[..., Pair]]

    def __post_init__(self) -> None:
        transforms = tuple(self.transforms)
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose takes callables; got {type(t).__name__}")
        object.__setattr__(self, "transforms", transforms)

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        for transform in self.transforms:
            image, mask = transform(image, mask, rng)
        return image, mask


@dataclass(frozen=True)
class RandomFlip:
    """Flip along each of ``axes`` (0: rows, upside down; 1: columns) with probability p.

    One draw per axis, in the order given, whether or not it flips.

    Examples
    --------
    >>> image = np.array([[1, 2], [3, 4]], np.float32)
    >>> RandomFlip(axes=(0,), p=1.0)(image, image[None] > 2, None)[0]
    array([[3., 4.],
           [1., 2.]], dtype=float32)
    """

    axes: tuple[int, ...] = (0, 1)
    p: float = 0.5

    def __post_init__(self) -> None:
        axes = tuple(int(a) for a in self.axes)
        if not set(axes) <= {0, 1}:
            raise ValueError(f"axes must be 0 (rows) and/or 1 (columns); got {self.axes!r}")
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "p", _probability(self.p))

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        for axis in self.axes:
            if self.p == 1.0 or (self.p > 0.0 and rng.random() < self.p):
                image = np.flip(image, axis)
                mask = np.flip(mask, axis + 1)
        return image, mask


@dataclass(frozen=True)
class RandomRot90:
    """Rotate by k quarter turns (counter-clockwise), k uniform in 0..3, with probability p.

    A non-square image keeps its shape: only k = 0 or 2 (half turns) are drawn.

    Examples
    --------
    >>> image = np.array([[1, 2], [3, 4]], np.float32)
    >>> out, _ = RandomRot90()(image, image[None] > 0, np.random.default_rng(1))
    >>> sorted(out.ravel().tolist())
    [1.0, 2.0, 3.0, 4.0]
    """

    p: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _probability(self.p))

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        if self.p < 1.0 and not rng.random() < self.p:
            return image, mask
        square = image.shape[0] == image.shape[1]
        k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
        if k == 0:
            return image, mask
        return np.rot90(image, k), np.rot90(mask, k, axes=(1, 2))


def affine(
    image: np.ndarray,
    mask: np.ndarray,
    matrix: np.ndarray,
    *,
    interpolation: Literal["linear", "nearest"] = "linear",
) -> Pair:
    """Resample image and masks through a 2x2 ``matrix`` about the image centre.

    Output pixel (r, c) takes the input at ``centre + matrix @ ((r, c) - centre)``,
    the convention of ``scipy.ndimage.affine_transform`` (output to input),
    with centre ((H - 1) / 2, (W - 1) / 2).  The image is interpolated
    bilinearly (or by nearest neighbour) with the edge values repeated
    outside; masks by nearest neighbour (round half up) with False outside.

    Parameters
    ----------
    image : float32 ndarray of shape (H, W)
    mask : bool ndarray of shape (C, H, W)
    matrix : float ndarray of shape (2, 2)
    interpolation : {"linear", "nearest"}

    Returns
    -------
    image : float32 ndarray of shape (H, W)
    mask : bool ndarray of shape (C, H, W)

    Notes
    -----
    Pure numpy, 3-5x faster than ``scipy.ndimage.affine_transform`` (order 1
    for the image, 0 for the mask) on a 256 x 256 slice: the image in blocks
    of rows that stay in the CPU cache, the masks only inside the bounding
    box their pixels can land in (a contour covers a few percent of the image).
    A flipped or turned view (from :class:`RandomFlip`, :class:`RandomRot90`)
    is read through its strides, not copied first: the same output, bit for bit.
    Bilinear values match scipy's ``mode="nearest"`` to float32 rounding.

    Examples
    --------
    >>> image = np.arange(9, dtype=np.float32).reshape(3, 3)
    >>> quarter = np.array([[0.0, 1.0], [-1.0, 0.0]])       # a quarter turn
    >>> affine(image, image[None] == 0, quarter)[0]
    array([[2., 5., 8.],
           [1., 4., 7.],
           [0., 3., 6.]], dtype=float32)
    """
    height, width = image.shape
    matrix = np.asarray(matrix, dtype=np.float64)
    centre = np.array([(height - 1) / 2.0, (width - 1) / 2.0])
    offset = centre - matrix @ centre
    if interpolation == "nearest":
        rows = np.arange(height, dtype=np.float64)
        columns = np.arange(width, dtype=np.float64)
        source_rows, source_columns = _sources(matrix, offset, rows, columns)
        out = _nearest(image, source_rows, source_columns, outside=None)
    elif interpolation == "linear":
        out = _bilinear(image, matrix, offset)
    else:
        raise ValueError(f"interpolation must be 'linear' or 'nearest'; got {interpolation!r}")
    return out, _warp_mask(mask, matrix, offset)


def _sources(
    matrix: np.ndarray, offset: np.ndarray, rows: np.ndarray, columns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Input (row, column) coordinates of the output grid ``rows`` x ``columns``."""
    source_rows = (matrix[0, 0] * rows + offset[0])[:, None] + (matrix[0, 1] * columns)[None, :]
    source_columns = (matrix[1, 0] * rows + offset[1])[:, None] + (matrix[1, 1] * columns)[None, :]
    return source_rows, source_columns


def _flat_pixels(array: np.ndarray) -> tuple[np.ndarray, int, tuple[int, ...]]:
    """The memory of ``array`` as one flat array, where its element 0 is, and each axis's step.

    ``array[i, j, ...]`` is ``flat[origin + i * steps[0] + j * steps[1] + ...]``.
    A flipped or turned view (what :class:`RandomFlip` and :class:`RandomRot90`
    return) is read where it lies, through its strides: resampling it gathers
    the very values a copy would hold, without the copy (a quarter turn's copy
    is a transpose, ~100 us for 256 x 256 float32).
    """
    itemsize = array.itemsize
    if array.flags.c_contiguous or any(s % itemsize for s in array.strides):
        array = np.ascontiguousarray(array)  # a copy only for odd strides
        steps = tuple(s // itemsize for s in array.strides) if array.ndim else ()
        return array.reshape(-1), 0, steps
    steps = tuple(s // itemsize for s in array.strides)
    # The element at the lowest address: the last one along an axis of negative step.
    low = tuple(n - 1 if s < 0 else 0 for n, s in zip(array.shape, steps, strict=True))
    span = 1 + sum((n - 1) * abs(s) for n, s in zip(array.shape, steps, strict=True))
    first = array[tuple(slice(i, i + 1) for i in low)]
    # Every address between the view's lowest and highest lies in its one buffer.
    flat = np.lib.stride_tricks.as_strided(first, (span,), (itemsize,), writeable=False)
    origin = -sum(i * s for i, s in zip(low, steps, strict=True))
    return flat, origin, steps


def _nearest(
    array: np.ndarray, rows: np.ndarray, columns: np.ndarray, *, outside: object
) -> np.ndarray:
    """array[..., round(rows), round(columns)]; ``outside`` where off the grid (None: the edge)."""
    height, width = array.shape[-2:]
    r = np.floor(rows + 0.5).astype(np.intp)
    c = np.floor(columns + 0.5).astype(np.intp)
    inside = None
    if outside is not None:
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
    # maximum/minimum, not np.clip: its Python-side checks cost more than the work here.
    np.minimum(np.maximum(r, 0, out=r), height - 1, out=r)
    np.minimum(np.maximum(c, 0, out=c), width - 1, out=c)
    flat, origin, steps = _flat_pixels(array)
    index = r * steps[-2]
    index += c * steps[-1]
    index += origin
    out = np.empty((*array.shape[:-2], *r.shape), dtype=array.dtype)
    # One gather per leading index (mask channel), each from the channel's first pixel on.
    for lead in np.ndindex(array.shape[:-2]):
        start = sum(i * s for i, s in zip(lead, steps, strict=False))
        flat.take(index + start if start else index, out=out[lead], mode="clip")
    if inside is not None:
        out &= inside
    return out


#: Output pixels resampled at a time by :func:`_bilinear` (64 rows of 256): its
#: temporaries (64 to 128 KB) stay in the CPU cache and under the allocator's mmap
#: threshold.  Measured on 256 x 256: 16 rows 1.6x, 32 rows 1.1x, 128 rows 2x the
#: time of 64 rows (whole-image temporaries cost an mmap and page faults apiece).
_BLOCK_PIXELS = 64 * 256


def _bilinear(image: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Bilinear resampling of ``image`` through (matrix, offset), edges repeated outside.

    Output pixel (r, c) takes the input at ``matrix @ (r, c) + offset``.
    Written for speed (a worker runs it per sample): float32 throughout,
    blocks of rows, every step into a buffer made once (``out=``), row and
    column coordinates side by side in one array (one call does both), the
    four corners gathered from shifted views of the input's memory with one
    index array, read through the strides of a flipped or turned view.
    """
    height, width = image.shape
    if height < 2 or width < 2:
        rows, columns = _sources(matrix, offset, np.arange(height), np.arange(width))
        return _nearest(image, rows, columns, outside=None).astype(np.float32)
    pixels, origin, (row_step, column_step) = _flat_pixels(image.astype(np.float32, copy=False))
    # Corner (top, left) of a cell is pixels[origin + top * row_step + left * column_step]
    # and its neighbours are row_step and column_step further (either may be negative):
    # index from the lowest of the four, each corner from its own shifted view.
    lowest = min(0, row_step, column_step, row_step + column_step)
    corners = [pixels[d - lowest :] for d in (0, column_step, row_step, row_step + column_step)]
    top_left, top_right, bottom_left, bottom_right = corners
    # Source coordinates, separable: (row, column) of output (r, c) is
    # row_part[:, r] + column_part[:, c], the same float32 sums as a full grid.
    matrix = matrix.astype(np.float32)
    offset = offset.astype(np.float32)
    row_terms = np.arange(height, dtype=np.float32)
    column_terms = np.arange(width, dtype=np.float32)
    row_part = np.stack(
        [matrix[0, 0] * row_terms + offset[0], matrix[1, 0] * row_terms + offset[1]]
    )
    column_part = np.stack([matrix[0, 1] * column_terms, matrix[1, 1] * column_terms])
    # Integers are exact in float32 below 2**24: the flat index is computed there.
    exact = np.float32 if len(pixels) < 2**24 else np.float64
    upper = np.array([height - 1, width - 1], dtype=np.float32)[:, None, None]
    last_cell = np.array([height - 2, width - 2], dtype=exact)[:, None, None]
    out = np.empty((height, width), dtype=np.float32)
    block = (min(max(_BLOCK_PIXELS // width, 1), height), width)
    source = np.empty((2, *block), dtype=np.float32)  # (row, column) of each output pixel
    cell = np.empty((2, *block), dtype=exact)  # its cell's top-left corner
    a, b = np.empty(block, dtype=np.float32), np.empty(block, dtype=np.float32)
    index32 = np.empty(block, dtype=np.int32 if exact is np.float32 else np.int64)
    index = np.empty(block, dtype=np.intp)
    for start in range(0, height, block[0]):
        stop = min(start + block[0], height)
        if stop - start != block[0]:  # the last, shorter block
            source, cell = source[:, : stop - start], cell[:, : stop - start]
            a, b, index32, index = (x[: stop - start] for x in (a, b, index32, index))
        np.add(row_part[:, start:stop, None], column_part[:, None, :], out=source)
        np.clip(source, 0, upper, out=source)
        # The cell's top-left corner; the last row/column uses the cell before
        # it with a weight of 1, so that no corner runs past the edge.
        np.floor(source, out=cell)
        np.minimum(cell, last_cell, out=cell)
        source -= cell  # now the weights of the bottom row and the right column
        top, left = cell
        top *= row_step
        if column_step != 1:
            left *= column_step
        top += left
        if origin + lowest:
            top += origin + lowest
        # float -> int32 -> intp: numpy converts float32 to int64 without SIMD, 5x slower.
        np.copyto(index32, top, casting="unsafe")
        np.copyto(index, index32)
        row_weight, column_weight = source
        # mode="clip": in range already; with out=, take()'s default "raise" buffers.
        o = out[start:stop]
        top_left.take(index, out=o, mode="clip")
        top_right.take(index, out=a, mode="clip")
        a -= o
        a *= column_weight
        o += a  # the top edge, interpolated
        bottom_left.take(index, out=a, mode="clip")
        bottom_right.take(index, out=b, mode="clip")
        b -= a
        b *= column_weight
        a += b  # the bottom edge
        a -= o
        a *= row_weight
        o += a
    return out


def _bounding_box(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """((first, last) row, (first, last) column) holding a True in 2-D ``mask``; None if none.

    Reduced in memory order: a flipped or turned view is first turned back
    (views, no copy), since numpy's ``any`` along a reversed or transposed
    axis runs 4-15x slower; the box is then mapped back to the view's axes.
    """
    turned = abs(mask.strides[1]) > abs(mask.strides[0])
    stored = mask.T if turned else mask
    flips = (stored.strides[0] < 0, stored.strides[1] < 0)
    stored = stored[:: -1 if flips[0] else 1, :: -1 if flips[1] else 1]
    rows = np.flatnonzero(stored.any(axis=1))
    if not len(rows):
        return None
    columns = np.flatnonzero(stored.any(axis=0))
    box = []
    for hits, flipped, n in zip((rows, columns), flips, stored.shape, strict=True):
        first, last = int(hits[0]), int(hits[-1])
        box.append((n - 1 - last, n - 1 - first) if flipped else (first, last))
    return (box[1], box[0]) if turned else (box[0], box[1])


def _warp_mask(mask: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resampling of bool (C, H, W), computed only where True can land."""
    height, width = mask.shape[1:]
    out = np.zeros(mask.shape, dtype=bool)
    # The masks' bounding box, from the rows and columns holding a True (one
    # contour's mask: no reduction over channels, and a flipped view is not copied).
    anywhere = mask[0] if mask.shape[0] == 1 else np.asarray(mask.any(axis=0))
    box = _bounding_box(anywhere)
    if box is None:
        return out
    (first_row, last_row), (first_column, last_column) = box
    # Output pixels whose source rounds into that box [lo - 0.5, hi + 0.5): the
    # inverse map of the box's corners bounds them (plus a pixel for rounding).
    # Plain floats: a 2 x 2 inverse in numpy costs more in calls than in arithmetic.
    (a, b), (c, d) = matrix.tolist()
    o_r, o_c = offset.tolist()
    det = a * d - b * c
    inverse: tuple[float, ...] = (d / det, -b / det, -c / det, a / det) if det else (math.nan,)
    if not all(math.isfinite(v) for v in inverse):
        r_lo, r_hi, c_lo, c_hi = 0, height, 0, width
    else:
        i00, i01, i10, i11 = inverse
        box_rows = (first_row - 0.5 - o_r, last_row + 0.5 - o_r)
        box_columns = (first_column - 0.5 - o_c, last_column + 0.5 - o_c)
        landed_r = [i00 * y + i01 * x for y in box_rows for x in box_columns]
        landed_c = [i10 * y + i11 * x for y in box_rows for x in box_columns]
        r_lo = max(math.floor(min(landed_r)) - 1, 0)
        r_hi = min(math.ceil(max(landed_r)) + 2, height)
        c_lo = max(math.floor(min(landed_c)) - 1, 0)
        c_hi = min(math.ceil(max(landed_c)) + 2, width)
    if r_lo >= r_hi or c_lo >= c_hi:
        return out
    rows = np.arange(r_lo, r_hi, dtype=np.float64)
    columns = np.arange(c_lo, c_hi, dtype=np.float64)
    source_rows, source_columns = _sources(matrix, offset, rows, columns)
    out[:, r_lo:r_hi, c_lo:c_hi] = _nearest(mask, source_rows, source_columns, outside=False)
    return out


@dataclass(frozen=True)
class RandomAffine:
    """Rotate by an angle in [-degrees, degrees] and zoom by a factor in ``scale``, with chance p.

    About the image centre; the shape is kept.  Image bilinear (or
    ``interpolation="nearest"``), edge values repeated where the image moved
    away; masks nearest-neighbour, False there.  A zoom factor s > 1 enlarges
    the content.  The angle is uniform, the factor log-uniform (zooming in
    and out equally likely).  See :func:`affine`.

    Examples
    --------
    >>> image = np.zeros((5, 5), np.float32); image[2, 2] = 1
    >>> out, out_mask = RandomAffine(degrees=30)(image, image[None] > 0, np.random.default_rng(0))
    >>> out_mask[0, 2, 2], out.shape                          # the centre stays put
    (np.True_, (5, 5))
    """

    degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    p: float = 1.0
    interpolation: Literal["linear", "nearest"] = "linear"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.degrees) and 0 <= self.degrees <= 180):
            raise ValueError(f"degrees must be in [0, 180]; got {self.degrees!r}")
        object.__setattr__(self, "scale", _range("scale", self.scale, low=1e-6))
        object.__setattr__(self, "p", _probability(self.p))
        if self.interpolation not in ("linear", "nearest"):
            raise ValueError(
                f"interpolation must be 'linear' or 'nearest'; got {self.interpolation!r}"
            )

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        if self.p < 1.0 and not rng.random() < self.p:
            return image, mask
        angle = math.radians(rng.uniform(-self.degrees, self.degrees))
        low, high = self.scale
        zoom = math.exp(rng.uniform(math.log(low), math.log(high)))
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        matrix = np.array([[cos, -sin], [sin, cos]])
        return affine(image, mask, matrix, interpolation=self.interpolation)


@dataclass(frozen=True)
class RandomIntensity:
    """Random gamma, then a random intensity scale, with probability p; masks untouched.

    Gamma acts on the image's own range: ``lo + (hi - lo) * ((x - lo) / (hi - lo)) ** g``
    with lo, hi the image's min and max, so it suits raw and normalised
    images alike (a constant image is left as it is).  Then every pixel is
    multiplied by a factor drawn from ``scale``.  ``gamma`` is drawn
    log-uniformly, ``scale`` uniformly.

    Examples
    --------
    >>> image = np.array([[0.0, 0.25, 1.0]], np.float32)
    >>> out, _ = RandomIntensity(scale=(2, 2), gamma=(0.5, 0.5))(image, image[None] > 0, None)
    >>> out
    array([[0., 1., 2.]], dtype=float32)
    """

    scale: tuple[float, float] = (0.9, 1.1)
    gamma: tuple[float, float] = (0.8, 1.25)
    p: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _range("scale", self.scale))
        object.__setattr__(self, "gamma", _range("gamma", self.gamma, low=1e-6))
        object.__setattr__(self, "p", _probability(self.p))

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        if self.p < 1.0 and not rng.random() < self.p:
            return image, mask
        gamma = self._draw(rng, self.gamma, log=True)
        factor = self._draw(rng, self.scale, log=False)
        image = np.asarray(image, dtype=np.float32)
        lo, hi = (float(image.min()), float(image.max())) if gamma != 1.0 else (0.0, 0.0)
        if hi > lo:
            # The first step writes a new array (no separate copy): the input,
            # maybe a view of the caller's array, is left as it was.
            out = np.subtract(image, np.float32(lo))
            out /= np.float32(hi - lo)  # not *= 1 / range: overflows for a tiny range
            # x ** gamma as exp(gamma * log x): numpy vectorises float32 exp and
            # log, not pow (63 us against 274 us for 256 x 256); log 0 = -inf -> 0.
            with np.errstate(divide="ignore"):
                np.log(out, out=out)
            out *= np.float32(gamma)
            np.exp(out, out=out)
            out *= np.float32(hi - lo)
            out += np.float32(lo)
        else:  # gamma 1 or a constant image: only the scale
            out = image.copy()
        if factor != 1.0:
            out *= np.float32(factor)
        return out, mask

    @staticmethod
    def _draw(rng: np.random.Generator | None, bounds: tuple[float, float], *, log: bool) -> float:
        low, high = bounds
        if low == high:
            return low
        assert rng is not None  # a range needs a generator
        if log:
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        return float(rng.uniform(low, high))


@dataclass(frozen=True)
class RandomCrop:
    """Crop or zero-pad image and masks to ``size`` (H, W) at a random position.

    Along an axis longer than the size, a random window is kept; along a
    shorter one, the sample is placed at a random offset in zeros (False in
    the masks).  Give the loader the same ``size`` (``BatchLoader(size=...)``)
    so that its batches have that shape.

    Examples
    --------
    >>> image = np.ones((4, 6), np.float32)
    >>> out, out_mask = RandomCrop((5, 3))(image, image[None] > 0, np.random.default_rng(0))
    >>> out.shape, out_mask.shape, int(out_mask.sum())
    ((5, 3), (1, 5, 3), 12)
    """

    size: tuple[int, int]

    def __post_init__(self) -> None:
        try:
            h, w = (int(v) for v in self.size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be (H, W); got {self.size!r}") from None
        if h < 1 or w < 1:
            raise ValueError(f"size must be positive; got {self.size!r}")
        object.__setattr__(self, "size", (h, w))

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        if image.shape == self.size:
            return image, mask
        out = np.zeros(self.size, dtype=np.float32)
        out_mask = np.zeros((mask.shape[0], *self.size), dtype=bool)
        source, target = [], []
        for n, s in zip(image.shape, self.size, strict=True):
            start = int(rng.integers(abs(n - s) + 1))
            if n >= s:
                source.append(slice(start, start + s))
                target.append(slice(0, s))
            else:
                source.append(slice(0, n))
                target.append(slice(start, start + n))
        out[target[0], target[1]] = image[source[0], source[1]]
        out_mask[:, target[0], target[1]] = mask[:, source[0], source[1]]
        return out, out_mask


# ------------------------------------------------------------------ adapters


def _require(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} is needed for this adapter; "
            f"install it with: pip install 'dicontour[{extra}]'"
        ) from exc


def _as_numpy(value: Any) -> np.ndarray:
    """A numpy array from a numpy array, a torch tensor or a MONAI MetaTensor."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _seed(rng: np.random.Generator) -> int:
    # < 2**32: MONAI's set_random_state hands the seed to numpy's RandomState.
    return int(rng.integers(2**32 - 1))


@dataclass(frozen=True)
class MonaiTransform:
    """A MONAI dictionary transform as a dicontour transform (made by :func:`from_monai`)."""

    transform: Callable[[dict[str, Any]], Any]
    image_key: str = "image"
    label_key: str = "label"

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        transforms = _require("monai.transforms", "monai")
        if isinstance(self.transform, transforms.Randomizable):
            self.transform.set_random_state(seed=_seed(rng))
        data = {
            self.image_key: np.ascontiguousarray(image, dtype=np.float32)[None],
            self.label_key: np.ascontiguousarray(mask, dtype=np.float32),
        }
        out = self.transform(data)
        if not isinstance(out, dict):
            raise TypeError(
                f"the MONAI transform returned {type(out).__name__}, not one dict "
                "(transforms that make several samples, such as RandCropByPosNegLabeld, "
                "cannot feed one batch slot per sample)"
            )
        out_image = _as_numpy(out[self.image_key])
        out_label = _as_numpy(out[self.label_key])
        if out_image.ndim != 3 or out_image.shape[0] != 1:
            raise ValueError(
                f"the MONAI transform returned an image {out_image.shape}, not (1, H, W)"
            )
        # Labels come back as floats; an interpolating transform may blur them: cut at 0.5.
        return out_image[0].astype(np.float32, copy=False), out_label >= 0.5


def from_monai(
    transform: Callable[[dict[str, Any]], Any],
    *,
    image_key: str = "image",
    label_key: str = "label",
) -> MonaiTransform:
    """Use a MONAI dictionary transform (``...d`` with ``keys=[image_key, label_key]``).

    It receives ``{image_key: float32 (1, H, W), label_key: float32 (C, H, W)}``
    (channel first, masks as 0/1) and must return one such dict; the label
    comes back as ``label >= 0.5``.  Use ``mode="nearest"`` for the label in
    spatial transforms so that it stays 0/1.  Before each sample, a
    randomizable transform (a ``Compose`` passes it on to its members) is
    seeded with ``set_random_state(seed=...)`` from the sample's generator, so
    the augmentation is as reproducible as the built-in ones.

    Raises
    ------
    ImportError
        MONAI is not installed (``pip install 'dicontour[monai]'``).
    TypeError
        ``transform`` is not callable.

    Examples
    --------
    >>> from monai.transforms import Compose, RandFlipd                 # doctest: +SKIP
    >>> flip = RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1)  # doctest: +SKIP
    >>> loader = BatchLoader(index, transform=from_monai(Compose([flip])))   # doctest: +SKIP
    """
    _require("monai.transforms", "monai")
    if not callable(transform):
        raise TypeError(f"transform must be a MONAI transform; got {type(transform).__name__}")
    return MonaiTransform(transform, image_key, label_key)


@dataclass(frozen=True)
class TorchioTransform:
    """A TorchIO transform as a dicontour transform (made by :func:`from_torchio`)."""

    transform: Callable[[Any], Any]
    _keys: tuple[str, str] = field(default=("image", "label"), repr=False)

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        torch = _require("torch", "torchio")
        tio = _require("torchio", "torchio")
        image_key, label_key = self._keys
        # TorchIO works on 4-D (C, X, Y, Z) tensors: a slice is (C, H, W, 1).
        subject = tio.Subject(
            {
                image_key: tio.ScalarImage(
                    tensor=torch.from_numpy(np.array(image, dtype=np.float32)[None, :, :, None])
                ),
                label_key: tio.LabelMap(
                    tensor=torch.from_numpy(np.array(mask, dtype=np.uint8)[:, :, :, None])
                ),
            }
        )
        # TorchIO draws from torch's global generator: seed it from the sample's
        # generator, inside fork_rng so the caller's torch state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(rng))
            out = self.transform(subject)
        out_image = out[image_key].data.numpy()
        out_label = out[label_key].data.numpy()
        if out_image.shape[-1] != 1 or out_label.shape[-1] != 1:
            raise ValueError(
                f"the TorchIO transform returned image {tuple(out_image.shape)}, label "
                f"{tuple(out_label.shape)}: expected (C, H, W, 1) for a 2-D slice"
            )
        return out_image[0, :, :, 0].astype(np.float32, copy=False), out_label[..., 0] > 0


def from_torchio(transform: Callable[[Any], Any]) -> TorchioTransform:
    """Use a TorchIO transform on a ``Subject(image=ScalarImage, label=LabelMap)`` of the slice.

    The image is (1, H, W, 1) and the masks (C, H, W, 1) (TorchIO's 4-D
    layout, depth 1); TorchIO resamples label maps by nearest neighbour.
    TorchIO draws its random parameters from torch's global generator; before
    each sample it is seeded from the sample's generator (inside
    ``torch.random.fork_rng``, so a ``workers=0`` loader leaves the training
    process's torch generator untouched).  For 2-D slices, keep the third
    axis out of spatial transforms (e.g. ``RandomAffine(degrees=(0, 0, 0, 0,
    -10, 10))`` rotates about the through-plane axis only).

    Raises
    ------
    ImportError
        TorchIO is not installed (``pip install 'dicontour[torchio]'``).

    Examples
    --------
    >>> import torchio as tio                                           # doctest: +SKIP
    >>> flip = from_torchio(tio.RandomFlip(axes=(0, 1)))               # doctest: +SKIP
    >>> loader = BatchLoader(index, transform=flip)                     # doctest: +SKIP
    """
    _require("torchio", "torchio")
    if not callable(transform):
        raise TypeError(f"transform must be a TorchIO transform; got {type(transform).__name__}")
    return TorchioTransform(transform)
