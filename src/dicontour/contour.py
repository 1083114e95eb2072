"""Read one hand-drawn contour file into an (N, 2) array of (x, y) points.

A contour file holds one closed polygon, one ``x y`` pair per line: x is the
column and y the row, in pixel units, with pixel centres at integer
coordinates.  Points stay in (x, y) order here, as in the file; the
rasteriser (:func:`dicontour.polygon_to_mask`) takes them as they are and
returns (row, col) masks.
"""

from __future__ import annotations

import functools
import math
import os
import re
from typing import BinaryIO, NoReturn

import numpy as np

from ._files import open_for
from .errors import ContourError

#: Most points accepted in one contour, checked before parsing into an array.
MAX_POINTS = 100_000
#: Largest contour file accepted, in bytes (about 30 bytes a point).
MAX_BYTES = MAX_POINTS * 64
#: How far (pixels) a contour may reach beyond the image's outer edge.  Pixel
#: centres run 0..W-1, so the image itself spans -0.5..W-0.5 in x (likewise y).
OUT_OF_BOUNDS_MARGIN = 1.0

# The number grammar: ASCII decimal floats only.  Python's float() also takes
# "1_0", non-ASCII digits ("\u0661") and surrounding Unicode spaces, none of
# which a contour tool writes; they are refused so that what is accepted is
# exactly what the docs say.  NaN and infinity are spelled out to get their own
# error code.
# (Written so that no string splits two ways between its parts: a long run of
# digits that fails to match is then rejected in linear time.)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# A whole good line in one match (the common case); other lines are diagnosed field by field.
_LINE = re.compile(rf"[ \t\v\f]*({_NUMBER.pattern})[ \t\v\f]+({_NUMBER.pattern})[ \t\v\f]*")
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
# Fields are separated by ASCII blanks; str.split would also split at Unicode
# spaces and at control characters such as \x1c.
_BLANKS = re.compile(r"[ \t\v\f]+")


def parse_contour(text: str, *, name: str = "<contour>") -> np.ndarray:
    """Parse the text of a contour file.

    Accepts CRLF line ends, blank lines (skipped), surrounding blanks and a
    closing point that repeats the first (dropped).

    The grammar, line by line: optional blanks (ASCII space, tab, vertical tab,
    form feed), a number, blanks, a number, optional blanks.  A number is an
    ASCII decimal float: an optional sign, digits with an optional fraction
    (``12``, ``12.``, ``12.5``, ``.5``) and an optional exponent (``e-3``).
    Anything else (``1_0``, non-ASCII digits, hexadecimal, commas) is not a
    number; ``nan`` and ``inf`` are numbers that are not finite.

    Parameters
    ----------
    text : str
        The file's content.
    name : str
        The file name used in errors.

    Returns
    -------
    float64 ndarray of shape (N, 2)
        The polygon's vertices as (x, y) = (column, row).

    Raises
    ------
    ContourError
        ``empty-contour`` for a file with no points, ``unparseable-contour`` for
        a line that is not two numbers, ``non-finite-coordinate`` for NaN or
        infinity, ``too-few-points`` for fewer than 3 distinct points,
        ``too-many-points`` above :data:`MAX_POINTS`.

    Examples
    --------
    >>> parse_contour("1 1\\r\\n4 1\\n4 3\\n1 1\\n")
    array([[1., 1.],
           [4., 1.],
           [4., 3.]])
    """
    array = _parse_fast(text.encode("ascii")) if text.isascii() else None
    if array is None:
        array = _parse_lines(text, name)
    return check_polygon(array, name=name)


def check_polygon(points: np.ndarray, *, name: str = "<contour>") -> np.ndarray:
    """Check a polygon's (x, y) points as every contour reader does; drop a closing repeat.

    The one set of rules behind :func:`parse_contour` and the RT Structure Set
    reader (:mod:`dicontour.rtstruct`), so both report the same problem codes.

    Parameters
    ----------
    points : float ndarray of shape (N, 2)
        (x, y) = (column, row) vertices.
    name : str
        The contour named in errors.

    Returns
    -------
    float64 ndarray of shape (M, 2)
        ``points``, without a last point that repeats the first.

    Raises
    ------
    ContourError
        ``empty-contour``, ``non-finite-coordinate``, ``too-few-points``,
        ``too-many-points`` (as :func:`parse_contour`).

    Examples
    --------
    >>> check_polygon(np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    array([[0., 0.],
           [2., 0.],
           [0., 2.]])
    """
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(array):
        raise ContourError(name, "no points in file", code="empty-contour")
    if len(array) > MAX_POINTS:
        raise ContourError(name, f"more than {MAX_POINTS} points", code="too-many-points")
    if not np.isfinite(array).all():
        raise ContourError(name, "a coordinate is not finite", code="non-finite-coordinate")
    if len(array) > 1 and (array[-1] == array[0]).all():
        array = array[:-1]
    if not _has_three_distinct(array):
        distinct = len(np.unique(array, axis=0))
        raise ContourError(
            name, f"a polygon needs 3 distinct points, found {distinct}", code="too-few-points"
        )
    return array


# The fast path sees each distinct line shape once: digits all read as "0"
# (the grammar treats every digit alike), a 150-line file has a handful of shapes.
_LINE_BYTES = re.compile(_LINE.pattern.encode("ascii"))
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_ASCII_BLANKS = b" \t\v\f"
# 10**k for k digits: exact in int64 and in float64 up to k = 15 (< 2**53).
_MAX_DIGITS = 15
# Larger files take the careful path: the fast path's work arrays (about 60
# bytes per byte of text) stay under 64 MB.  Contour files are a few KB.
_FAST_MAX_BYTES = 1 << 20
_POW10_INT = 10 ** np.arange(_MAX_DIGITS + 1, dtype=np.int64)
_POW10_FLOAT = _POW10_INT.astype(np.float64)


def _parse_fast(data: bytes) -> np.ndarray | None:
    """Parse a well-formed file in a few whole-buffer steps, or return None.

    None means "not certainly well-formed": the caller then runs the careful
    line-by-line path (:func:`_parse_lines`), which accepts the same files,
    gives the same points and explains every failure with its line.

    Lines are those of the careful path (``bytes.splitlines`` ends them at
    ``\\n``, ``\\r\\n`` and ``\\r`` only); each distinct line shape must match
    the line grammar or be blank.  What is left between the blanks and line
    ends is then numbers of the grammar, two on each non-blank line.
    """
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
    if values is None:  # exponents, or more than 15 digits: Python's float
        values = np.array(list(map(float, data.split())), dtype=np.float64)
        if not np.isfinite(values).all():  # "1e999": the careful path names the line
            return None
    if len(values) > 2 * MAX_POINTS:
        return None  # the careful path names the line
    return values.reshape(-1, 2)


def _fixed_layout(shapes: set[bytes]) -> tuple[int, bool, int] | None:
    """(fraction digits, dot, most integer digits) shared by every number, else None.

    ``shapes`` are well-formed lines with their digits read as "0" (see
    :func:`_parse_fast`).  None when numbers differ in fraction digits or in
    having a dot, when one is negative (``-0`` keeps its sign only through
    ``float``), or when a number may have more than 15 digits.
    """
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
    """The numbers of a well-formed file whose numbers share one layout (:func:`_fixed_layout`).

    Every number then ends with ``fraction`` digits, after a dot when
    ``dotted``, and before that holds up to ``widest`` digits: each number's
    digits are read at fixed distances from its last character.  Its value is
    its digits as an integer m (< 10**15, exact) divided by 10**fraction (exact
    too), as in :func:`_decimals`: the same float as ``float(text)``.
    """
    codes = np.frombuffer(b"\n" + data + b"\n", dtype=np.uint8)
    blank = codes <= ord(" ")  # blanks and line ends; number characters are above
    last = np.flatnonzero(blank[1:] > blank[:-1])  # each number's last character
    # Row j: the character at distance j (fraction digits, skip the dot, whole
    # digits) left of each number's end; before the first number lies the
    # leading newline ("clip" reads it there).
    digits = codes.take(last - _distances(fraction, dotted, widest), mode="clip")
    digits -= np.uint8(ord("0"))  # wraps to >= 10 for anything but a digit
    # A whole part ends at its first non-digit going left (a blank or "+"):
    # beyond it lie the previous number's digits.
    whole = digits[fraction:]
    kept = whole < 10
    for j in range(1, widest):
        kept[j] &= kept[j - 1]
    whole *= kept
    mantissa = _POW10_INT[: fraction + widest] @ digits
    return mantissa / _POW10_FLOAT[fraction]


@functools.lru_cache(maxsize=64)
def _distances(fraction: int, dotted: bool, widest: int) -> np.ndarray:
    """Where :func:`_fixed_point` reads digits: distances from a number's last character.

    A column (K, 1), so that ``last - distances`` gives one row per distance.
    """
    distances = [*range(fraction), *range(fraction + dotted, fraction + dotted + widest)]
    column = np.array(distances, dtype=np.intp).reshape(-1, 1)
    column.setflags(write=False)  # shared by every call with this layout
    return column


def _decimals(data: bytes) -> np.ndarray | None:
    """The numbers in ``data``, grammar numbers without exponent between ASCII blanks.

    Each number is its digits as an integer m (< 10**15 < 2**53, so exact)
    divided by 10**k for its k fraction digits (exact too), and IEEE division
    rounds the exact quotient correctly: the same float as ``float(text)``,
    bit for bit (the fast path of Clinger's algorithm).  None when a number
    has more than 15 digits.
    """
    codes = np.frombuffer(data, dtype=np.uint8)
    in_number = codes > ord(" ")  # blanks and line ends are below, number characters above
    chars = codes[in_number]  # the numbers' characters, one after the other
    if not len(chars):
        return np.empty(0, dtype=np.float64)
    flags = np.zeros(len(codes) + 2, dtype=np.int8)
    flags[1:-1] = in_number
    edges = np.flatnonzero(flags[1:] != flags[:-1])
    lengths = edges[1::2] - edges[0::2]
    if lengths.max() > _MAX_DIGITS:
        return None
    ends = np.cumsum(lengths)  # each number's end in ``chars``
    digit = chars - np.uint8(ord("0"))  # wraps to >= 10 for anything but a digit
    is_digit = digit < 10
    digits_before = np.zeros(len(chars) + 1, dtype=np.intp)
    np.cumsum(is_digit, out=digits_before[1:])
    # For each character, the digits to its right in its number: a digit's
    # place value, the fraction length at the dot.
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


def _parse_lines(text: str, name: str) -> np.ndarray:
    """Parse line by line, raising on the first bad line with its number.

    The careful path: it accepts exactly the grammar and explains any failure.
    """
    points: list[tuple[float, float]] = []
    # Only \n, \r\n and \r end a line: str.splitlines also splits at form feeds
    # and other control characters, which would misnumber the lines in errors.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, line in enumerate(lines, start=1):
        match = _LINE.fullmatch(line)
        if match is not None:
            fields = [match[1], match[2]]
        else:
            fields = [field for field in _BLANKS.split(line) if field]
            if not fields:
                continue
            _diagnose(fields, line, number, name)
        x, y = float(fields[0]), float(fields[1])
        if not (math.isfinite(x) and math.isfinite(y)):  # "1e999" overflows to infinity
            raise ContourError(
                name,
                f"coordinate is not finite: {line.strip()[:60]!r}",
                line=number,
                code="non-finite-coordinate",
            )
        points.append((x, y))
        if len(points) > MAX_POINTS:
            raise ContourError(
                name, f"more than {MAX_POINTS} points", line=number, code="too-many-points"
            )
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def _diagnose(fields: list[str], line: str, number: int, name: str) -> NoReturn:
    """Raise the error that a line of ``fields`` not matching the grammar deserves."""
    if len(fields) != 2:
        raise ContourError(
            name, f"expected two numbers 'x y', got {line.strip()[:60]!r}", line=number
        )
    if any(_NON_FINITE.fullmatch(field) for field in fields):
        raise ContourError(
            name,
            f"coordinate is not finite: {line.strip()[:60]!r}",
            line=number,
            code="non-finite-coordinate",
        )
    raise ContourError(name, f"not a number: {line.strip()[:60]!r}", line=number)


def _has_three_distinct(points: np.ndarray) -> bool:
    """Whether ``points`` holds at least 3 distinct points, without sorting them."""
    if len(points) < 3:
        return False
    first, second, third = map(tuple, points[:3].tolist())
    if first != second and third not in (first, second):
        return True  # the usual case, decided without a pass over the points
    differs = (points != points[0]).any(axis=1)
    if not differs.any():
        return False
    second = points[np.argmax(differs)]
    return bool((differs & (points != second).any(axis=1)).any())


def read_contour(
    source: str | os.PathLike[str] | BinaryIO, *, name: str | None = None
) -> np.ndarray:
    """Read a contour file.

    Parameters
    ----------
    source : str, path or binary file object
        The file.  A file object is read, not closed.
    name : str, optional
        The name used in errors (defaults to the path).

    Returns
    -------
    float64 ndarray of shape (N, 2)
        Vertices as (x, y) = (column, row), pixel centres at integers.

    Raises
    ------
    ContourError
        The file is missing, too large, not text, or not a valid polygon (see
        :func:`parse_contour`); the message names the file and the line.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.txt"
    >>> _ = path.write_text("120.5 137.5\\n121.0 136.5\\n119.0 136.0\\n")
    >>> read_contour(path).shape
    (3, 2)
    """
    if isinstance(source, str | os.PathLike):
        where = name or os.fspath(source)
        # open_regular, not open(): a FIFO would block open()
        with open_for(source, where, ContourError, "missing-contour") as handle:
            try:
                data = _read_limited(handle)
            except OSError as exc:
                raise ContourError(where, f"cannot read file ({exc})") from exc
    else:
        where = name or str(getattr(source, "name", "<file object>"))
        data = _read_limited(source)
    if len(data) > MAX_BYTES:
        raise ContourError(where, f"file larger than {MAX_BYTES} bytes", code="too-many-points")
    array = _parse_fast(data)  # only ASCII is taken, so the text would decode
    if array is not None:
        return check_polygon(array, name=where)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContourError(
            where,
            f"not a text file ({exc.reason} at byte {exc.start})",
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from exc
    return parse_contour(text, name=where)


def _read_limited(handle: BinaryIO) -> bytes:
    """Read a file up to MAX_BYTES + 1 bytes, from its position.

    read(MAX_BYTES + 1) would allocate 6 MB for every 2 KB file; a local file's
    size from fstat sizes the first read, and a file that grew since is read
    on.  Other file objects are read with the limit.
    """
    try:
        size = max(os.fstat(handle.fileno()).st_size - handle.tell(), 0)
    except (AttributeError, OSError, ValueError):  # no descriptor: BytesIO, remote files
        return handle.read(MAX_BYTES + 1)
    data = handle.read(min(size, MAX_BYTES) + 1)
    if len(data) > size:
        data += handle.read(MAX_BYTES + 1 - len(data))
    return data


def check_bounds(points: np.ndarray, shape: tuple[int, int], *, name: str = "<contour>") -> None:
    """Refuse a contour that reaches more than :data:`OUT_OF_BOUNDS_MARGIN` beyond its image.

    The scan and every loader apply this same rule, so a contour rewritten
    after a scan is refused when loaded rather than silently clipped.

    Parameters
    ----------
    points : float ndarray of shape (N, 2)
        Vertices as (x, y) = (column, row), as :func:`read_contour` returns them.
    shape : tuple of int
        (rows, columns) of the image.
    name : str
        The file name used in errors.

    Raises
    ------
    ContourError
        ``out-of-bounds``, saying how far the points reach.

    Examples
    --------
    >>> check_bounds(np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 5.4]]), (5, 5))
    >>> check_bounds(np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 5.6]]), (5, 5))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dicontour.errors.ContourError: <contour>: points span x 0.0..4.0, y 0.0..5.6, ...
    """
    rows, columns = shape
    low = -0.5 - OUT_OF_BOUNDS_MARGIN
    (x_min, y_min), (x_max, y_max) = points.min(axis=0).tolist(), points.max(axis=0).tolist()
    if (
        x_min < low
        or y_min < low
        or x_max > columns - 0.5 + OUT_OF_BOUNDS_MARGIN
        or (y_max > rows - 0.5 + OUT_OF_BOUNDS_MARGIN)
    ):
        x, y = points[:, 0], points[:, 1]
        raise ContourError(
            name,
            f"points span x {x.min():.1f}..{x.max():.1f}, y {y.min():.1f}..{y.max():.1f}, "
            f"more than {OUT_OF_BOUNDS_MARGIN:g} pixel beyond the image "
            f"({rows} rows x {columns} columns: x and y from -0.5 to {columns - 0.5:g} "
            f"and {rows - 0.5:g})",
            code="out-of-bounds",
        )
