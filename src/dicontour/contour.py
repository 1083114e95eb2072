"""Read one hand-drawn contour file into an (N, 2) array of (x, y) points.

A contour file holds one closed polygon, one ``x y`` pair per line: x is the
column and y the row, in pixel units, with pixel centres at integer
coordinates.  Points stay in (x, y) order here, as in the file; the
rasteriser (:func:`dicontour.polygon_to_mask`) takes them as they are and
returns (row, col) masks.
"""

from __future__ import annotations

import math
import os
import re
from typing import BinaryIO, NoReturn

import numpy as np

from ._compiled import kernel
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


def _parse_fast(data: bytes) -> np.ndarray | None:
    """Parse a well-formed file in one compiled pass over its bytes, or return None.

    None means "not certainly well-formed": the caller then runs the careful
    line-by-line path (:func:`_parse_lines`), which accepts the same files,
    gives the same points and explains every failure with its line.

    Lines are those of the careful path (``\\n``, ``\\r\\n`` and ``\\r``
    end them); each must be blank or two numbers of the grammar between ASCII
    blanks.  A number with up to 15 significant digits is its digits as an
    integer m (exact in a double) divided by 10**k for its k fraction digits
    (exact for k <= 22): IEEE division rounds the exact quotient correctly, so
    the result is the double ``float(text)`` gives, bit for bit (the fast path
    of Clinger's algorithm).  Numbers with an exponent or more digits are
    converted by ``float``.
    """
    codes = np.frombuffer(data, dtype=np.uint8)
    # Each number takes a character and a separator: room for every number, up
    # to MAX_POINTS points (a file with more overflows: the careful path names the line).
    values = np.empty(min((len(data) + 1) // 2, 2 * MAX_POINTS), dtype=np.float64)
    count = _scan_numbers(codes, values)
    if count == _UNSURE:
        return None
    if count == _NEEDS_FLOAT:  # well-formed, but exponents or many digits: Python's float
        values = np.array(list(map(float, data.split())), dtype=np.float64)
        if not np.isfinite(values).all():  # "1e999": the careful path names the line
            return None
        return values.reshape(-1, 2)
    return values[:count].reshape(-1, 2).copy()  # not a view holding the larger buffer


# What _scan_numbers returns instead of a count.
_UNSURE = -1
_NEEDS_FLOAT = -2
# 10.0**k, exact in a double for k <= 22.
_POW10 = np.array([float(10**k) for k in range(23)])


@kernel
def _scan_numbers(codes: np.ndarray, values: np.ndarray) -> int:
    """Read the numbers of a well-formed file into ``values``; return how many.

    ``_UNSURE`` when a line is not blank or two numbers of the grammar, when a
    byte is anything else (other control characters, non-ASCII) or when the
    numbers overflow ``values``; ``_NEEDS_FLOAT`` when every line is well-formed
    but a number has an exponent, more than 15 significant digits or more than
    22 fraction digits (``values`` is then incomplete).
    """
    n = len(codes)
    count = 0
    exact = True
    i = 0
    while i < n:
        # At a line's start: blanks, then a line end (a blank line) or two numbers.
        while i < n and _is_blank(codes[i]):
            i += 1
        if i == n:
            break
        if codes[i] == 10 or codes[i] == 13:  # "\n", or "\r" (of "\r\n" too)
            i += 1
            continue
        for field in range(2):
            if field == 1:
                if i == n or not _is_blank(codes[i]):  # one number, then the line's end
                    return _UNSURE
                while i < n and _is_blank(codes[i]):
                    i += 1
            i, value, kind = _scan_number(codes, i)
            if kind == 2:
                return _UNSURE
            if count == len(values):
                return _UNSURE
            exact = exact and kind == 0
            values[count] = value
            count += 1
        while i < n and _is_blank(codes[i]):
            i += 1
        if i < n and codes[i] != 10 and codes[i] != 13:  # a third field, or a stray byte
            return _UNSURE
    return count if exact else _NEEDS_FLOAT


@kernel
def _is_blank(code: int) -> bool:
    """Space, tab, vertical tab, form feed: the blanks of the line grammar."""
    return code == 32 or code == 9 or code == 11 or code == 12


@kernel
def _scan_number(codes: np.ndarray, i: int) -> tuple[int, float, int]:
    """(end, value, kind) of the number at ``codes[i]``.

    kind 0: a number of the grammar, ``value`` is the float; 1: a number of the
    grammar that needs Python's float; 2: not a number of the grammar (nor
    followed by a blank, a line end or the end).
    """
    n = len(codes)
    negative = False
    if i < n and (codes[i] == 43 or codes[i] == 45):  # "+", "-"
        negative = codes[i] == 45
        i += 1
    mantissa = 0
    significant = 0  # digits from the first non-zero one
    digits = 0
    fraction = 0
    while i < n and 48 <= codes[i] <= 57:
        digit = codes[i] - 48
        if significant or digit:
            significant += 1
            if significant <= 15:
                mantissa = mantissa * 10 + digit
        digits += 1
        i += 1
    if i < n and codes[i] == 46:  # "."
        i += 1
        # The integer part's loop again, counting fraction digits too: a shared
        # helper returning a tuple made the whole parse 17% slower (9.7 -> 11.4 us).
        while i < n and 48 <= codes[i] <= 57:
            digit = codes[i] - 48
            if significant or digit:
                significant += 1
                if significant <= 15:
                    mantissa = mantissa * 10 + digit
            digits += 1
            fraction += 1
            i += 1
    if digits == 0:
        return i, 0.0, 2
    kind = 0 if significant <= 15 and fraction <= 22 else 1
    if i < n and (codes[i] == 101 or codes[i] == 69):  # "e", "E"
        i += 1
        if i < n and (codes[i] == 43 or codes[i] == 45):
            i += 1
        start = i
        while i < n and 48 <= codes[i] <= 57:
            i += 1
        if i == start:
            return i, 0.0, 2
        kind = 1
    if i < n and not (_is_blank(codes[i]) or codes[i] == 10 or codes[i] == 13):
        return i, 0.0, 2
    value = mantissa / _POW10[fraction] if kind == 0 else 0.0
    return i, -value if negative else value, kind


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
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2 and points.shape[1] == 2 and len(points):
        x_min, y_min, x_max, y_max = _extent(np.ascontiguousarray(points))
    else:  # numpy's own error for an empty or misshapen array
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


@kernel
def _extent(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x min, y min, x max, y max) of (N >= 1, 2) points, NaN where a column holds one.

    What ``points.min(axis=0)`` and ``points.max(axis=0)`` give, in one pass:
    those two small-axis reductions cost about 15 us per contour, a loader's
    largest check.
    """
    x_min = x_max = points[0, 0]
    y_min = y_max = points[0, 1]
    for k in range(1, len(points)):
        x, y = points[k, 0], points[k, 1]
        # "not (a <= b)" is true for NaN too, so a NaN, once met, stays (as in numpy).
        if not (x_min <= x) and x_min == x_min:
            x_min = x
        if not (x_max >= x) and x_max == x_max:
            x_max = x
        if not (y_min <= y) and y_min == y_min:
            y_min = y
        if not (y_max >= y) and y_max == y_max:
            y_max = y
    return x_min, y_min, x_max, y_max
