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
# Work arrays hold one band of rows at a time (see polygon_to_mask).
_BAND_CROSSINGS = 1 << 18
_BAND_PIXELS = 1 << 20


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
    A vectorised scan-line fill: each edge contributes one crossing per pixel
    row it spans; sorted crossings pair into inside runs.  The work is
    proportional to vertices + rows crossed + pixels filled, with no per-pixel
    point-in-polygon test (``benchmarks/bench_mask.py`` measures it against the
    PIL helper).  Rows are processed in bands, so memory stays at the mask plus
    a few MB whatever the polygon.  With ``out`` (a loader's slot) no mask is
    allocated: that, not the fill, is most of a call's cost after the checks.

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
    height, width = mask.shape
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.concatenate((x0[1:], x0[:1])), np.concatenate((y0[1:], y0[:1]))
    first_row, counts = _rows_crossed(y0, height)
    total = int(counts.sum())
    if total > MAX_CROSSINGS:
        raise ValueError(
            f"the polygon's edges cross {total} (edge, row) pairs, more than "
            f"MAX_CROSSINGS={MAX_CROSSINGS}"
        )
    if total == 0:
        return
    flip = y1 < y0
    x_low, y_low = np.where(flip, x1, x0), np.where(flip, y1, y0)
    dx, dy = x1 - x0, y1 - y0
    # Rows are filled in bands holding at most about _BAND_CROSSINGS crossings
    # and _BAND_PIXELS pixels, so the work arrays stay small whatever the
    # polygon (a zig-zag of 100,000 vertices spanning the image crosses 1e8+
    # (edge, row) pairs); each band sees every crossing of its rows, so the
    # result does not depend on the banding.
    if total <= _BAND_CROSSINGS and height * width <= _BAND_PIXELS:
        _fill_rows(mask, first_row, counts, total, x_low, y_low, dx, dy)  # the usual case
        return
    for start, stop in _bands(first_row, counts, height, width):
        band_first = np.maximum(first_row, start)
        band_counts = np.maximum(np.minimum(first_row + counts, stop) - band_first, 0)
        band_total = int(band_counts.sum())
        if band_total:
            _fill_rows(mask, band_first, band_counts, band_total, x_low, y_low, dx, dy)


def _rows_crossed(y: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """First row and number of rows each edge (y[i] -> y[i+1]) crosses inside the image.

    Rows crossed by edge i: the integers r with min(y0, y1) <= r < max(y0, y1),
    clipped to the image.  ceil is monotone, so it is taken once per vertex.
    """
    ceil_y = np.minimum(np.maximum(np.ceil(y), 0), height)
    ceil_y1 = np.concatenate((ceil_y[1:], ceil_y[:1]))
    first_row = np.minimum(ceil_y, ceil_y1).astype(np.intp)
    counts = (np.maximum(ceil_y, ceil_y1) - first_row).astype(np.intp)
    return first_row, counts


def count_crossings(points: np.ndarray, shape: tuple[int, int]) -> int:
    """How many (edge, row) crossings rasterising ``points`` on ``shape`` costs.

    The rasteriser refuses a polygon over :data:`MAX_CROSSINGS`; this tells
    beforehand, in O(vertices) time and memory.

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
    return int(_rows_crossed(points[:, 1], height)[1].sum())


def _bands(
    first_row: np.ndarray, counts: np.ndarray, height: int, width: int
) -> list[tuple[int, int]]:
    """Cut rows 0..height into bands of bounded crossings and pixels."""
    per_row = np.cumsum(
        np.bincount(first_row, minlength=height + 1)
        - np.bincount(first_row + counts, minlength=height + 1)
    )[:height]
    before = np.cumsum(per_row) - per_row  # crossings in the rows above each row
    rows_per_band = max(1, _BAND_PIXELS // width)
    starts = np.flatnonzero(np.diff(before // _BAND_CROSSINGS, prepend=-1))
    starts = np.union1d(starts, np.arange(0, height, rows_per_band))
    stops = np.append(starts[1:], height)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _fill_rows(
    mask: np.ndarray,
    first_row: np.ndarray,
    counts: np.ndarray,
    total: int,
    x_low: np.ndarray,
    y_low: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
) -> None:
    """Fill ``mask`` where edge i crosses rows first_row[i] .. first_row[i] + counts[i] - 1.

    Every crossing of those rows must be given, since crossings pair up row by row.
    """
    width = mask.shape[1]
    # One crossing per (edge, row).  x is interpolated from the edge's lower
    # end, so an edge shared by two polygons (walked in opposite directions)
    # gives bit-identical crossings and the two masks tile exactly.  Multiply
    # before dividing: for integer and half-integer vertices the product is
    # exact, so a centre exactly on an edge gets exactly its x (a precomputed
    # slope such as 58/14 is rounded, and 7 * (58/14) gives 29.000000000000004).
    edge = np.repeat(np.arange(len(counts)), counts)
    rows = first_row[edge] + (np.arange(total) - (np.cumsum(counts) - counts)[edge])
    crossing_x = x_low[edge] + (rows - y_low[edge]) * dx[edge] / dy[edge]
    del edge

    # Pixel c is right of a crossing at x when c >= ceil(x).  Sorted by
    # (row, ceil(x)), crossings pair up into the inside runs [c0, c1) of each
    # row (even-odd rule), written straight into the flat mask.
    cols = np.minimum(np.maximum(np.ceil(crossing_x), 0), width)
    keys = np.sort((rows * width + cols).astype(np.intp))
    run_start = keys[0::2]
    run_length = keys[1::2] - run_start
    filled = int(run_length.sum())
    if filled:
        base = np.repeat(run_start - (np.cumsum(run_length) - run_length), run_length)
        mask.ravel()[base + np.arange(filled)] = True


def _challenge_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """The Sunnybrook challenge helper's mask, kept only as a reference."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points.tolist()], outline=0, fill=1)
    return np.asarray(canvas, dtype=bool)
