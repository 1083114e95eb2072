"""dicontour.contour: (N, 2) float64 (x, y) points, lenient on layout, strict on content."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dicontour
from dicontour import ContourError, parse_contour, read_contour
from dicontour.contour import (
    MAX_BYTES,
    MAX_POINTS,
    OUT_OF_BOUNDS_MARGIN,
    _extent,
    check_bounds,
)

TRIANGLE = [[1.0, 2.0], [4.5, 2.0], [4.5, 7.25]]


def test_reads_x_y_pairs(tmp_path):
    path = tmp_path / "IM-0001-0048-icontour-manual.txt"
    path.write_text("120.50 137.50\n121.00 136.50\n119.00 136.00\n")
    points = read_contour(path)
    assert points.dtype == np.float64
    assert points.shape == (3, 2)
    # Column 0 is x (the column), column 1 is y (the row), as in the file.
    np.testing.assert_array_equal(points, [[120.5, 137.5], [121.0, 136.5], [119.0, 136.0]])


@pytest.mark.parametrize(
    "text",
    [
        "1 2\r\n4.5 2\r\n4.5 7.25\r\n",  # CRLF
        "1 2  \n4.5 2\t\n4.5 7.25 \n",  # trailing blanks
        "\n1 2\n\n  \n4.5 2\n4.5 7.25\n\n\n",  # blank lines
        "1 2\n4.5 2\n4.5 7.25\n1 2\n",  # repeated closing point
        "1 2\n4.5 2\n4.5 7.25",  # no final newline
        "  1   2\n4.5\t2\n+4.5 7.25e0\n",  # other blanks and number forms
        "1 2\r4.5 2\r4.5 7.25\r",  # old Mac line ends
    ],
    ids=["crlf", "trailing-blanks", "blank-lines", "closing-point", "no-eol", "blanks", "cr"],
)
def test_accepted_layouts(text):
    np.testing.assert_array_equal(parse_contour(text), TRIANGLE)


def test_only_one_closing_point_dropped():
    points = parse_contour("0 0\n4 0\n4 4\n0 4\n0 0\n")
    assert points.shape == (4, 2)
    # A point repeated elsewhere is kept: the file's polygon is not altered.
    points = parse_contour("0 0\n4 0\n4 4\n4 4\n0 4\n")
    assert points.shape == (5, 2)


def test_file_object_not_closed():
    handle = io.BytesIO(b"1 2\n4.5 2\n4.5 7.25\n")
    np.testing.assert_array_equal(read_contour(handle, name="mem.txt"), TRIANGLE)
    assert not handle.closed


def _error(text: str | bytes, tmp_path) -> ContourError:
    path = tmp_path / "IM-0001-0001-icontour-manual.txt"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, newline="")
    with pytest.raises(ContourError) as info:
        read_contour(path)
    error = info.value
    assert error.path == str(path)
    assert str(path) in str(error), "the message names the file"
    assert isinstance(error, ValueError) and isinstance(error, dicontour.DicontourError)
    if error.line is not None:
        assert f"line {error.line}" in str(error)
    return error


@pytest.mark.parametrize(
    ("text", "code", "line", "words"),
    [
        ("", "empty-contour", None, "no points"),
        ("\n \r\n\t\n", "empty-contour", None, "no points"),
        ("1 2\n3 4\n12.5 abc\n5 6\n", "unparseable-contour", 3, "not a number"),
        ("1 2\n3 4 5\n6 7\n8 9\n", "unparseable-contour", 2, "two numbers"),
        ("1 2\n3\n6 7\n8 9\n", "unparseable-contour", 2, "two numbers"),
        ("1,2\n3,4\n5,6\n", "unparseable-contour", 1, "two numbers"),
        # Token counts that balance out still name the first bad line.
        ("1 2 3\n4\n5 6\n", "unparseable-contour", 1, "two numbers"),
        ("1 2\n\n3 4\nnan 5\n6 7\n", "non-finite-coordinate", 4, "not finite"),
        ("1 2\n3 inf\n6 7\n", "non-finite-coordinate", 2, "not finite"),
        ("1 2\n3 4\n-Infinity 7\n", "non-finite-coordinate", 3, "not finite"),
        ("1 2\n3 4\n", "too-few-points", None, "3 distinct"),
        ("1 2\n3 4\n1 2\n", "too-few-points", None, "3 distinct"),
        ("1 2\n1 2\n3 4\n3 4\n1 2\n", "too-few-points", None, "3 distinct"),
        ("5\n", "unparseable-contour", 1, "two numbers"),
        ("1 1\n2 2\n3 3\n4 4\x0c5 5\n", "unparseable-contour", 4, "two numbers"),
    ],
    ids=[
        "empty",
        "only-blanks",
        "word",
        "three-numbers",
        "one-number",
        "commas",
        "balanced-tokens",
        "nan",
        "inf",
        "minus-infinity",
        "two-points",
        "two-distinct-closed",
        "two-distinct-repeated",
        "single-number",
        "form-feed-inside-a-line",
    ],
)
def test_errors_name_file_line_reason_code(tmp_path, text, code, line, words):
    error = _error(text, tmp_path)
    assert error.code == code
    assert error.line == line
    assert words in error.reason


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xd8\xff\xe0", 1),  # 0x89 is not UTF-8
        (b"1 2\n3 4\n\xff\xd8\xff\xe0\n5 6\n", 3),
    ],
)
def test_binary_garbage(tmp_path, data, line):
    error = _error(data, tmp_path)
    assert error.code == "unparseable-contour"
    assert error.line == line  # where the first byte that is not UTF-8 sits
    assert "not a text file" in error.reason


def test_nul_bytes_are_not_numbers(tmp_path):
    error = _error(b"1 2\n\x00\x00\x00\x00\n3 4\n", tmp_path)
    assert (error.code, error.line) == ("unparseable-contour", 2)


@pytest.mark.slow
def test_more_than_max_points(tmp_path):
    # Distinct points, so only the limit can reject the file.
    lines = "".join(f"{k} {k % 7}\n" for k in range(MAX_POINTS + 1))
    error = _error(lines, tmp_path)
    assert error.code == "too-many-points"
    assert str(MAX_POINTS) in error.reason


@pytest.mark.slow
def test_exactly_max_points_accepted(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("".join(f"{k} {k % 7}\n" for k in range(MAX_POINTS)))
    assert read_contour(path).shape == (MAX_POINTS, 2)


def test_file_over_max_bytes_rejected_without_parsing(tmp_path):
    error = _error(b" " * MAX_BYTES + b"1 2\n", tmp_path)
    assert error.code == "too-many-points"
    assert str(MAX_BYTES) in error.reason


def test_missing_file(tmp_path):
    with pytest.raises(ContourError) as info:
        read_contour(tmp_path / "gone.txt")
    assert info.value.code == "missing-contour"
    assert "gone.txt" in str(info.value)


def test_parse_contour_names_its_source():
    with pytest.raises(ContourError, match=r"^c\.txt: line 2: "):
        parse_contour("1 2\nx y\n", name="c.txt")


# --------------------------------------------------------------------- round trip

coordinate = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def polygons(draw) -> np.ndarray:
    points = draw(st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=40, unique=True))
    # unique: the last point differs from the first, which would read as a closing point.
    return np.array(points, dtype=np.float64)


@settings(max_examples=150, deadline=None)
@given(
    points=polygons(),
    newline=st.sampled_from(["\n", "\r\n"]),
    pad=st.sampled_from(["", " ", "\t", "  "]),
    blank_every=st.integers(0, 5),
    close=st.booleans(),
    fmt=st.sampled_from(["repr", "fixed"]),
)
@pytest.mark.slow
def test_format_then_parse_round_trips(points, newline, pad, blank_every, close, fmt):
    if fmt == "fixed":
        points = np.round(points, 2)  # how the real files are written: "%.2f"
        if len(np.unique(points, axis=0)) < 3 or (points[-1] == points[0]).all():
            return
    rows = np.vstack([points, points[:1]]) if close else points
    lines = []
    for k, (x, y) in enumerate(rows.tolist()):
        text = f"{x!r} {y!r}" if fmt == "repr" else f"{x:.2f} {y:.2f}"
        lines.append(pad + text + pad)
        if blank_every and k % blank_every == 0:
            lines.append(pad)
    parsed = parse_contour(newline.join(lines) + newline)
    assert parsed.dtype == np.float64
    np.testing.assert_array_equal(parsed, points)


@settings(max_examples=100, deadline=None)
@given(points=polygons(), bad_line=st.integers(0, 39), bad=st.sampled_from(["x y", "1", "1 2 3"]))
@pytest.mark.slow
def test_first_bad_line_is_reported(points, bad_line, bad):
    lines = [f"{x!r} {y!r}" for x, y in points.tolist()]
    bad_line = min(bad_line, len(lines))
    lines.insert(bad_line, bad)
    with pytest.raises(ContourError) as info:
        parse_contour("\n".join(lines))
    assert info.value.line == bad_line + 1
    assert info.value.code == "unparseable-contour"


# --------------------------------------------------------------------- the number grammar

# Written independently of the parser: an ASCII decimal float and the blanks between.
ASCII_LINE = re.compile(
    r"[ \t\v\f]*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[ \t\v\f]+"
    r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[ \t\v\f]*",
    re.ASCII,
)


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ("1_0", "unparseable-contour"),  # float() accepts digit grouping
        ("\u0661\u0662", "unparseable-contour"),  # Arabic-Indic digits: float() gives 12.0
        ("\uff11\uff12", "unparseable-contour"),  # fullwidth digits
        ("\u09e7", "unparseable-contour"),  # Bengali digit one
        ("0x1A", "unparseable-contour"),
        ("1,5", "unparseable-contour"),
        ("1.2.3", "unparseable-contour"),
        ("e5", "unparseable-contour"),
        (".", "unparseable-contour"),
        ("+", "unparseable-contour"),
        ("--1", "unparseable-contour"),
        ("1e", "unparseable-contour"),
        ("1e999", "non-finite-coordinate"),  # grammatical, overflows to infinity
        ("NaN", "non-finite-coordinate"),
        ("+inf", "non-finite-coordinate"),
    ],
)
def test_only_ascii_decimal_numbers(bad, code):
    text = f"1 2\n3 4\n5 {bad}\n7 8\n"
    with pytest.raises(ContourError) as info:
        parse_contour(text, name="c.txt")
    assert (info.value.code, info.value.line) == (code, 3)


@pytest.mark.parametrize(
    "separator",
    ["\u00a0", "\u2003", "\u3000", "\x1c", "\x85"],  # Unicode and control "spaces" str.split takes
)
def test_only_ascii_blanks_separate_numbers(separator):
    with pytest.raises(ContourError) as info:
        parse_contour(f"1 2\n3{separator}4\n5 6\n", name="c.txt")
    assert (info.value.code, info.value.line) == ("unparseable-contour", 2)


def test_accepted_number_forms():
    text = "12. -3\n.5 +4\n\v1E2\f2e-1\t\n007 1\n"
    np.testing.assert_array_equal(parse_contour(text), [[12, -3], [0.5, 4], [100, 0.2], [7, 1]])


@settings(max_examples=500, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.text(alphabet="0123456789+-.eE_ \t\n\r\v\f\u00a0\u0661infa", max_size=80),
    )
)
@pytest.mark.slow
def test_arbitrary_text_parses_only_to_the_ascii_grammar(text):
    try:
        points = parse_contour(text, name="fuzz.txt")
    except ContourError as exc:
        assert exc.path == "fuzz.txt"
        return
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    numbered = [line for line in lines if line.strip(" \t\v\f")]
    assert all(ASCII_LINE.fullmatch(line) for line in numbered), numbered
    assert points.shape[1] == 2 and np.isfinite(points).all()


# --------------------------------------------------------------------- bounds


def test_check_bounds_names_the_file_and_the_extent():
    points = np.array([[0.0, 0.0], [40.0, 0.0], [40.0, 5.0]])
    with pytest.raises(ContourError) as info:
        check_bounds(points, (32, 32), name="c.txt")
    assert (info.value.code, info.value.path, info.value.line) == ("out-of-bounds", "c.txt", None)
    assert "x 0.0..40.0" in info.value.reason and "32 rows x 32 columns" in info.value.reason
    check_bounds(points, (32, 40))  # within the margin of a wider image: no error


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(-5, 40, allow_nan=False),
    y=st.floats(-5, 40, allow_nan=False),
    rows=st.integers(1, 32),
    columns=st.integers(1, 32),
)
@pytest.mark.slow
def test_check_bounds_is_the_margin_rule(x, y, rows, columns):
    points = np.array([[0.0, 0.0], [x, 0.0], [x, y], [0.0, y]])
    low, margin = -0.5, OUT_OF_BOUNDS_MARGIN
    inside = low - margin <= min(x, y) and x <= columns - 0.5 + margin and y <= rows - 0.5 + margin
    if inside:
        check_bounds(points, (rows, columns))
    else:
        with pytest.raises(ContourError, match="beyond the image"):
            check_bounds(points, (rows, columns))


@settings(max_examples=300, deadline=None)
@given(
    points=st.lists(
        st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True)), min_size=1, max_size=40
    ),
    order=st.sampled_from("CF"),
)
def test_extent_is_numpys_min_and_max(points, order):
    # check_bounds' one-pass extent: numpy's reductions are the oracle, NaN and infinity included.
    array = np.array(points, dtype=np.float64, order=order)
    got = np.array(_extent(np.ascontiguousarray(array)))
    np.testing.assert_array_equal(got, np.concatenate([array.min(axis=0), array.max(axis=0)]))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120), seed_text=st.sampled_from(["", "1 2\n3 4\n5 6\n"]))
@pytest.mark.slow
def test_arbitrary_bytes_raise_only_contour_errors(data, seed_text):
    handle = io.BytesIO(seed_text.encode() + data)
    try:
        points = read_contour(handle, name="fuzz.txt")
    except ContourError as exc:
        assert exc.path == "fuzz.txt" and exc.code in dicontour.CODES
        return
    assert points.dtype == np.float64 and np.isfinite(points).all() and len(points) >= 3
