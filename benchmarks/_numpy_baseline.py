"""The numpy fast paths replaced by numba kernels (issue 10), kept as the in-run baseline.

``bench_mask.py`` and ``bench_read.py`` time the library's ``polygon_to_mask``
and ``read_contour`` with their kernel and, swapped in by :func:`numpy_paths`,
with these: the code of the commit before the kernels (bc576ee), trimmed to
the common case (the rasteriser's "center" fill without its banding, which
real contours never needed).  Everything around them (argument checks, file
reading, polygon checks) is the library's, so the ratio is the kernels'.
"""

from __future__ import annotations

import contextlib
import functools
import re
import statistics
from collections.abc import Callable, Iterator

import numpy as np
from _common import rate

from dicontour import contour, raster
from dicontour.contour import _LINE, MAX_POINTS
from dicontour.raster import MAX_CROSSINGS


@contextlib.contextmanager
def numpy_paths() -> Iterator[None]:
    """Within the block, the library runs the numpy fill and parser instead of its kernels."""
    fill, parse = raster._fill, contour._parse_fast
    raster._fill, contour._parse_fast = _fill, _parse_fast
    try:
        yield
    finally:
        raster._fill, contour._parse_fast = fill, parse


def against_numpy(work: Callable[[], int], rounds: int = 7) -> tuple[float, float, float]:
    """us per item of ``work`` with the numpy paths and with the kernels, in interleaved rounds.

    Returns the medians (numpy, kernel) and the median of the rounds' ratios.
    """
    pairs = []
    for _ in range(rounds):
        with numpy_paths():
            numpy_us = 1e6 / rate(work, min_seconds=0.5, repeats=1)
        pairs.append((numpy_us, 1e6 / rate(work, min_seconds=0.5, repeats=1)))
    numpy_us, kernel_us = (statistics.median(pair[k] for pair in pairs) for k in (0, 1))
    return numpy_us, kernel_us, statistics.median(a / b for a, b in pairs)


# ------------------------------------------------------------------ the rasteriser


def _fill(mask: np.ndarray, points: np.ndarray) -> None:
    """The numpy scan-line fill ("center" convention), ~15 numpy calls per polygon."""
    height, width = mask.shape
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.concatenate((x0[1:], x0[:1])), np.concatenate((y0[1:], y0[:1]))
    ceil_y = np.minimum(np.maximum(np.ceil(y0), 0), height)
    ceil_y1 = np.concatenate((ceil_y[1:], ceil_y[:1]))
    first_row = np.minimum(ceil_y, ceil_y1).astype(np.intp)
    counts = (np.maximum(ceil_y, ceil_y1) - first_row).astype(np.intp)
    total = int(counts.sum())
    if total > MAX_CROSSINGS:
        raise ValueError(f"more than MAX_CROSSINGS={MAX_CROSSINGS}")
    if total == 0:
        return
    flip = y1 < y0
    x_low, y_low = np.where(flip, x1, x0), np.where(flip, y1, y0)
    dx, dy = x1 - x0, y1 - y0
    edge = np.repeat(np.arange(len(counts)), counts)
    rows = first_row[edge] + (np.arange(total) - (np.cumsum(counts) - counts)[edge])
    crossing_x = x_low[edge] + (rows - y_low[edge]) * dx[edge] / dy[edge]
    cols = np.minimum(np.maximum(np.ceil(crossing_x), 0), width)
    keys = np.sort((rows * width + cols).astype(np.intp))
    run_start = keys[0::2]
    run_length = keys[1::2] - run_start
    filled = int(run_length.sum())
    if filled:
        base = np.repeat(run_start - (np.cumsum(run_length) - run_length), run_length)
        mask.ravel()[base + np.arange(filled)] = True


# ------------------------------------------------------------------ the contour parser

_LINE_BYTES = re.compile(_LINE.pattern.encode("ascii"))
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_ASCII_BLANKS = b" \t\v\f"
_MAX_DIGITS = 15
_FAST_MAX_BYTES = 1 << 20
_POW10_INT = 10 ** np.arange(_MAX_DIGITS + 1, dtype=np.int64)
_POW10_FLOAT = _POW10_INT.astype(np.float64)


def _parse_fast(data: bytes) -> np.ndarray | None:
    if len(data) > _FAST_MAX_BYTES or not data.isascii():
        return None
    shapes = set(data.translate(_ZERO_DIGITS).splitlines())
    for shape in shapes:
        if _LINE_BYTES.fullmatch(shape) is None and shape.strip(_ASCII_BLANKS):
            return None
    if b"e" in data or b"E" in data:
        values = None
    else:
        layout = _fixed_layout(shapes)
        values = _decimals(data) if layout is None else _fixed_point(data, *layout)
    if values is None:
        values = np.array(list(map(float, data.split())), dtype=np.float64)
        if not np.isfinite(values).all():
            return None
    if len(values) > 2 * MAX_POINTS:
        return None
    return values.reshape(-1, 2)


def _fixed_layout(shapes: set[bytes]) -> tuple[int, bool, int] | None:
    layouts = set()
    widest = 0
    for shape in shapes:
        for field in shape.split():
            if field.startswith(b"-"):
                return None
            dot = field.find(b".")
            whole = len(field) if dot < 0 else dot
            layouts.add((0, False) if dot < 0 else (len(field) - dot - 1, True))
            widest = max(widest, whole - field.startswith(b"+"))
    if len(layouts) != 1:
        return None
    ((fraction, dotted),) = layouts
    return (fraction, dotted, widest) if fraction + widest <= _MAX_DIGITS else None


def _fixed_point(data: bytes, fraction: int, dotted: bool, widest: int) -> np.ndarray:
    codes = np.frombuffer(b"\n" + data + b"\n", dtype=np.uint8)
    blank = codes <= ord(" ")
    last = np.flatnonzero(blank[1:] > blank[:-1])
    digits = codes.take(last - _distances(fraction, dotted, widest), mode="clip")
    digits -= np.uint8(ord("0"))
    whole = digits[fraction:]
    kept = whole < 10
    for j in range(1, widest):
        kept[j] &= kept[j - 1]
    whole *= kept
    mantissa = _POW10_INT[: fraction + widest] @ digits
    return mantissa / _POW10_FLOAT[fraction]


@functools.lru_cache(maxsize=64)
def _distances(fraction: int, dotted: bool, widest: int) -> np.ndarray:
    distances = [*range(fraction), *range(fraction + dotted, fraction + dotted + widest)]
    column = np.array(distances, dtype=np.intp).reshape(-1, 1)
    column.setflags(write=False)
    return column


def _decimals(data: bytes) -> np.ndarray | None:
    codes = np.frombuffer(data, dtype=np.uint8)
    in_number = codes > ord(" ")
    chars = codes[in_number]
    if not len(chars):
        return np.empty(0, dtype=np.float64)
    flags = np.zeros(len(codes) + 2, dtype=np.int8)
    flags[1:-1] = in_number
    edges = np.flatnonzero(flags[1:] != flags[:-1])
    lengths = edges[1::2] - edges[0::2]
    if lengths.max() > _MAX_DIGITS:
        return None
    ends = np.cumsum(lengths)
    digit = chars - np.uint8(ord("0"))
    is_digit = digit < 10
    digits_before = np.zeros(len(chars) + 1, dtype=np.intp)
    np.cumsum(is_digit, out=digits_before[1:])
    right = np.repeat(digits_before[ends], lengths) - digits_before[1:]
    sums = np.zeros(len(chars) + 1, dtype=np.int64)
    np.cumsum((digit * is_digit) * _POW10_INT[right], out=sums[1:])
    mantissa = sums[ends] - sums[ends - lengths]
    fraction = np.zeros(len(ends), dtype=np.intp)
    dots = np.flatnonzero(chars == ord("."))
    fraction[np.searchsorted(ends, dots, side="right")] = right[dots]
    values = mantissa / _POW10_FLOAT[fraction]
    negative = chars[ends - lengths] == ord("-")
    values[negative] = -values[negative]
    return values
