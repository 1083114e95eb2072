"""Turn a polygon into an exact boolean mask.

The convention
--------------
Pixel (row r, col c) is inside the polygon when its centre, the point
(x=c, y=r), is inside by the even-odd rule.  Centres that lie exactly on the
boundary follow a half-open rule, like the top-left rule of GPU rasterisers:

* an edge is crossed by the scan line y=r when ``min(y0, y1) <= r < max(y0, y1)``;
* a centre exactly on a crossing belongs to the side of larger x.

So two polygons that share an edge never both claim a pixel and never leave a
gap between them, and a square with corners (0,0) and (7,7) covers 7 x 7 = 49
pixels, not 64.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._compiled import kernel
from .contour import MAX_POINTS
from .dicom import MAX_PIXELS

Convention = Literal["center", "challenge"]

#: Largest coordinate magnitude accepted: products of coordinate differences
#: then stay finite, so every crossing is computed without overflow.
MAX_COORDINATE = 1e150
#: Most (edge, row) crossings the rasteriser computes for one polygon (the sum
#: over edges of the image rows each spans), so its work is bounded by
#: vertices + crossings + pixels.  A hand-drawn contour crosses each row about
#: twice; this allows 256 crossings per row of the largest image, and refuses
#: a zig-zag of 100,000 vertices across a 256-row image (25.6 million).
MAX_CROSSINGS = 1 << 20


def _check(points: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) as (x, y); got shape {points.shape}")
    if len(points) > MAX_POINTS:
        raise ValueError(f"points has {len(points)} vertices, more than MAX_POINTS={MAX_POINTS}")
    if not (np.abs(points) < MAX_COORDINATE).all():  # also false for NaN
        raise ValueError(f"points contains NaN, infinity or a coordinate beyond {MAX_COORDINATE:g}")
    try:
        height, width = (int(n) for n in shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shape must be (H, W); got {shape!r}") from exc
    if (height, width) != tuple(shape):  # int() truncated a fractional size
        raise ValueError(f"shape must be two integers (H, W); got {shape!r}")
    if height < 0 or width < 0 or height * width > MAX_PIXELS:
        raise ValueError(f"shape must be (H, W) with 0 <= H*W <= {MAX_PIXELS}; got {shape!r}")
    return points, height, width


def polygon_to_mask(
    points: np.ndarray,
    shape: tuple[int, int],
    *,
    convention: Convention = "center",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rasterise a closed polygon to a boolean mask.

    Parameters
    ----------
    points : array_like of shape (N, 2)
        Vertices as (x, y) = (column, row) in pixel units, pixel centres at
        integers, as read by :func:`dicontour.read_contour`.  The polygon is
        closed implicitly; it may self-intersect (even-odd rule) and may reach
        outside the image (it is clipped).
    shape : tuple of int
        (H, W) of the mask.
    convention : {"center", "challenge"}
        ``"center"`` (default): pixel (r, c) is inside when its centre (x=c, y=r)
        is inside, with the half-open rule for centres on an edge (see the
        module docs).  ``"challenge"``: what the Sunnybrook challenge helper
        gives (PIL ``ImageDraw.polygon(xy, outline=0, fill=1)``), which drops
        boundary pixels; offered only for comparison.
    out : bool ndarray of shape (H, W), optional
        Where to write the mask (a batch slot, say), instead of a new array.

    Returns
    -------
    bool ndarray of shape (H, W)
        ``out`` when given.

    Raises
    ------
    ValueError
        Malformed points or shape, more than ``MAX_POINTS`` vertices, a
        coordinate that is not finite or beyond ``MAX_COORDINATE``, a mask over
        ``MAX_PIXELS``, more than ``MAX_CROSSINGS`` (edge, row) crossings
        (checked before any work array is allocated; see
        :func:`count_crossings`); an ``out`` that is not a bool (H, W) array.

    Notes
    -----
    A scan-line fill, compiled with numba: each edge contributes one crossing
    per pixel row it spans; each row's sorted crossings pair into inside runs.
    The work is proportional to vertices + rows crossed + pixels filled, with
    no per-pixel point-in-polygon test, and the work arrays hold one small
    integer per crossing (at most ``MAX_CROSSINGS``), so memory stays at the
    mask plus a few MB whatever the polygon (``benchmarks/bench_mask.py``
    measures it against the PIL helper and the earlier numpy fill).  The
    kernel is compiled on its first call after an install (a few seconds),
    cached on disk, and loaded from there by later processes.  With ``out``
    (a loader's slot) no mask is allocated.

    Examples
    --------
    >>> square = [(0, 0), (0, 3), (3, 3), (3, 0)]
    >>> polygon_to_mask(square, (5, 5)).astype(int)
    array([[1, 1, 1, 0, 0],
           [1, 1, 1, 0, 0],
           [1, 1, 1, 0, 0],
           [0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0]])
    """
    points, height, width = _check(points, shape)
    if convention == "challenge":
        mask = _challenge_mask(points, height, width)
        if out is None:
            return mask
        _check_out(out, height, width)
        out[...] = mask
        return out
    if convention != "center":
        raise ValueError(f"convention must be 'center' or 'challenge'; got {convention!r}")
    if out is None:
        mask = np.zeros((height, width), dtype=bool)
    else:
        _check_out(out, height, width)
        mask = out
        mask.fill(False)
    if len(points) < 3 or height == 0 or width == 0:
        return mask
    _fill(mask, points)
    return mask


def _check_out(out: np.ndarray, height: int, width: int) -> None:
    if not isinstance(out, np.ndarray) or out.dtype != np.bool_ or out.shape != (height, width):
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"out must be a bool array of shape {(height, width)}; got {got}")


def _fill(mask: np.ndarray, points: np.ndarray) -> None:
    """Set the pixels of ``mask`` (all False) inside the polygon ``points`` (3+ vertices)."""
    total = _scan_fill(_one_layout(points), mask, MAX_CROSSINGS)
    if total > MAX_CROSSINGS:
        raise ValueError(
            f"the polygon's edges cross {total} (edge, row) pairs, more than "
            f"MAX_CROSSINGS={MAX_CROSSINGS}"
        )


def count_crossings(points: np.ndarray, shape: tuple[int, int]) -> int:
    """How many (edge, row) crossings rasterising ``points`` on ``shape`` costs.

    The rasteriser refuses a polygon over :data:`MAX_CROSSINGS`; this tells
    beforehand, in O(vertices) time and no memory.

    Parameters
    ----------
    points : array_like of shape (N, 2)
        Vertices as (x, y) = (column, row).
    shape : tuple of int
        (H, W) of the mask.

    Returns
    -------
    int
        The sum over edges of the pixel rows each edge spans within the image.

    Examples
    --------
    >>> count_crossings([(0, 0), (0, 3), (3, 3), (3, 0)], (5, 5))
    6
    """
    points, height, _ = _check(points, shape)
    if len(points) < 3:
        return 0
    return int(_rows_crossed(_one_layout(points), height)[0])


def _one_layout(points: np.ndarray) -> np.ndarray:
    """``points`` C-ordered and writable (copied if need be): one array type for the
    kernels, so that a read-only or Fortran-order input compiles no second version."""
    return np.require(points, requirements=("C_CONTIGUOUS", "WRITEABLE"))


# The compiled kernels (numba, compiled on first use and cached on disk beside
# this file).  No fastmath: every crossing is the IEEE double the rule's
# expression gives, so masks are bit-identical to the reference.


@kernel
def _ceil_within(value: float, size: int) -> int:
    """ceil(value) clipped to 0..size: the first row at or below y (size: the height), or
    the first column at or right of x (size: the width).  ceil is monotone."""
    return int(min(max(np.ceil(value), 0.0), size))


@kernel
def _rows_crossed(points: np.ndarray, height: int) -> tuple[int, int, int]:
    """(crossings, first row, end row) of the polygon's edges within rows 0..height-1.

    Edge k (vertex k to k+1) crosses the rows r with min(y0, y1) <= r <
    max(y0, y1) inside the image: rows min(c0, c1) .. max(c0, c1) - 1 with
    c = ceil(y) clipped to 0..height.  The rows crossed by the closed polygon
    run without a gap from the first row to the end row (excluded).
    """
    n = points.shape[0]
    total, first, end = 0, height, 0
    previous = _ceil_within(points[n - 1, 1], height)
    for k in range(n):
        current = _ceil_within(points[k, 1], height)
        low, high = min(previous, current), max(previous, current)
        if high > low:
            total += high - low
            first, end = min(first, low), max(end, high)
        previous = current
    return total, first, end


@kernel
def _scan_fill(points: np.ndarray, mask: np.ndarray, limit: int) -> int:
    """Fill ``mask`` (all False) inside ``points``; return the crossings counted.

    Nothing is allocated, and nothing filled, when they exceed ``limit``.
    """
    height, width = mask.shape
    total, first, end = _rows_crossed(points, height)
    if total > limit or total == 0:
        return total
    n = points.shape[0]
    # Crossings bucketed by row: row first + j holds slots start[j] .. start[j + 1] - 1.
    # Work arrays: one int32 per crossing and two ints per row crossed (each
    # such row is crossed at least twice), so memory is O(crossings).
    start = np.zeros(end - first + 1, dtype=np.int64)
    for k in range(n):
        a = _ceil_within(points[k, 1], height)
        b = _ceil_within(points[(k + 1) % n, 1], height)
        for r in range(min(a, b), max(a, b)):
            start[r - first + 1] += 1
    for j in range(1, end - first + 1):
        start[j] += start[j - 1]
    cursor = start[:-1].copy()
    columns = np.empty(total, dtype=np.int32)
    for k in range(n):
        x0, y0 = points[k, 0], points[k, 1]
        x1, y1 = points[(k + 1) % n, 0], points[(k + 1) % n, 1]
        a, b = _ceil_within(y0, height), _ceil_within(y1, height)
        if a == b:
            continue
        # x is interpolated from the edge's lower end, so an edge shared by two
        # polygons (walked in opposite directions) gives bit-identical
        # crossings and the two masks tile exactly.  Multiply before dividing:
        # for integer and half-integer vertices the product is exact, so a
        # centre exactly on an edge gets exactly its x (a precomputed slope
        # such as 58/14 is rounded, and 7 * (58/14) gives 29.000000000000004).
        x_low, y_low = (x1, y1) if y1 < y0 else (x0, y0)
        dx, dy = x1 - x0, y1 - y0
        for r in range(min(a, b), max(a, b)):
            x = x_low + (r - y_low) * dx / dy
            # Pixel c is right of a crossing at x when c >= ceil(x).
            columns[cursor[r - first]] = _ceil_within(x, width)
            cursor[r - first] += 1
    # Sorted, a row's crossings pair up into its inside runs [c0, c1) (even-odd rule).
    for j in range(end - first):
        row = columns[start[j] : start[j + 1]]
        _sort(row)
        for p in range(0, len(row) - 1, 2):
            for c in range(row[p], row[p + 1]):
                mask[first + j, c] = True
    return total


@kernel
def _sort(values: np.ndarray) -> None:
    """Sort in place: insertion sort for a row's usual two or four crossings."""
    if len(values) > 16:
        values.sort()
        return
    for i in range(1, len(values)):
        value, j = values[i], i - 1
        while j >= 0 and values[j] > value:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = value


def _challenge_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """The Sunnybrook challenge helper's mask, kept only as a reference."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points.tolist()], outline=0, fill=1)
    return np.asarray(canvas, dtype=bool)
