"""The contour parser's fast path against its careful path: same points, same errors.

``parse_contour`` and ``read_contour`` try a whole-buffer fast path first and
fall back to the careful line-by-line path, which alone explains failures.
These tests hold the pair to one contract: for any input, the result (the
points bit for bit, or the error's code, line and message) is what the careful
path alone gives.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dicontour import ContourError, parse_contour, read_contour
from dicontour import contour as contour_module
from dicontour.phantom import write_phantom

NAME = "f.txt"


def careful(text: str) -> np.ndarray:
    """The careful path alone: line by line, then the polygon checks."""
    return contour_module.check_polygon(contour_module._parse_lines(text, NAME), name=NAME)


def careful_bytes(data: bytes) -> np.ndarray:
    """What read_contour gave before the fast path: decode, then the careful path."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        reason = f"not a text file ({exc.reason} at byte {exc.start})"
        raise ContourError(NAME, reason, line=line) from exc
    return careful(text)


def outcome(parse, source) -> tuple:
    """The points' bytes and shape, or the error's code, line and message."""
    try:
        points = parse(source)
    except ContourError as exc:
        return ("error", exc.code, exc.line, str(exc))
    assert points.dtype == np.float64
    return ("points", points.shape, points.tobytes())


def assert_same(text: str) -> None:
    assert outcome(lambda t: parse_contour(t, name=NAME), text) == outcome(careful, text)
    data = text.encode("utf-8", "surrogatepass")
    fast = contour_module._parse_fast(data)
    if fast is not None:  # what the fast path accepts, the careful one accepts alike
        points = contour_module._parse_lines(text, NAME)
        assert fast.tobytes() == points.tobytes()


# Numbers as contour tools and hand edits write them, with the odd slip.
number = st.one_of(
    st.floats(-1e4, 1e4, allow_nan=False).map(lambda v: f"{v:.2f}"),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"\A[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})\Z"),
    st.from_regex(r"\A[+-]?[0-9]{1,3}\.[0-9]{0,3}[eE][+-]?[0-9]{1,4}\Z"),
)
blank = st.text(alphabet=" \t\v\f", max_size=2)
line_end = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def contour_texts(draw) -> str:
    """A contour file, well-formed or one edit away from it."""
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(blank))
        else:
            x, y = draw(number), draw(number)
            lines.append(draw(blank) + x + draw(blank.filter(bool)) + y + draw(blank))
    text = "".join(line + draw(line_end) for line in lines)
    if draw(st.booleans()) and text:  # one slip: a character replaced, inserted or deleted
        at = draw(st.integers(0, len(text) - 1))
        slip = draw(st.sampled_from(["", "x", "-", ".", " ", "\n", "e", "1", ",", "\x00", "é"]))
        text = text[:at] + slip + text[at + draw(st.integers(0, 1)) :]
    return text


@settings(max_examples=600, deadline=None)
@given(text=contour_texts())
@example(text="1 2\n3 4\n5 6\n")
@example(text="-0 +.5\r\n\r\n  1. 2  \r7 8\r")
@example(text="1 2\n3 4\n5 1e999\n")
@example(text="1 2\n3 4\n5 1234567890123456\n")  # 16 digits: past the exact integer fast path
@example(text="0.1 0.3\n1234567.891 -0.000001\n99999999.9999999 1\n")
@example(text="1 2\n3 4\n95.74890682883607 946.8585017754865\n")  # 16 digits: m / 10**k inexact
def test_contour_texts_give_what_the_careful_path_gives(text):
    assert_same(text)


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=60),
        st.text(alphabet="0123456789+-.eE \t\n\r\v\f\u00a0\x1c", max_size=60),
    )
)
def test_arbitrary_text_gives_what_the_careful_path_gives(text):
    assert_same(text)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=60), contour_texts().map(lambda t: t.encode("utf-8"))))
def test_read_contour_bytes_give_what_the_careful_path_gives(data):
    got = outcome(lambda d: read_contour(io.BytesIO(d), name=NAME), data)
    assert got == outcome(careful_bytes, data)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(st.floats(-999, 999), st.floats(-999, 999)), min_size=3, max_size=50),
    places=st.integers(0, 6),
    newline=line_end,
)
def test_fixed_point_files_take_the_fast_path(rows, places, newline):
    """The files contour tools write ("%.2f" and the like) never need the careful path."""
    text = "".join(f"{x:.{places}f} {y:.{places}f}{newline}" for x, y in rows)
    fast = contour_module._parse_fast(text.encode("ascii"))
    assert fast is not None
    expected = [[float(f"{x:.{places}f}"), float(f"{y:.{places}f}")] for x, y in rows]
    assert fast.tobytes() == np.array(expected, dtype=np.float64).tobytes()


def test_too_many_points_keep_their_line_on_the_fast_path():
    text = "1 2\n" * contour_module.MAX_POINTS + "3 4\n"
    with pytest.raises(ContourError) as info:
        parse_contour(text, name=NAME)
    assert (info.value.code, info.value.line) == ("too-many-points", contour_module.MAX_POINTS + 1)


def test_real_contours_take_the_fast_path_bit_for_bit(real_data):
    paths = sorted(real_data.glob("contourfiles/*/*-contours/*.txt"))
    assert len(paths) == 96 + 46
    for path in paths:
        data = path.read_bytes()
        assert contour_module._parse_fast(data) is not None, path
        assert read_contour(path).tobytes() == careful(data.decode("ascii")).tobytes(), path


def test_phantom_contours_take_the_fast_path_bit_for_bit(tmp_path):
    write_phantom(tmp_path, patients=2, slices=6, shape=(64, 64), faults=True, seed=3)
    paths = sorted(tmp_path.glob("contourfiles/**/*.txt"))
    assert paths
    for path in paths:
        data = path.read_bytes()
        try:
            expected = careful_bytes(data)
        except ContourError as exc:
            with pytest.raises(ContourError) as info:
                read_contour(path, name=NAME)
            assert (info.value.code, info.value.line, str(info.value)) == (
                exc.code,
                exc.line,
                str(exc),
            )
        else:
            assert contour_module._parse_fast(data) is not None, path
            assert read_contour(path).tobytes() == expected.tobytes(), path


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.floats(0, 99999), st.floats(0, 99999)),
        min_size=3,
        max_size=40,
    ),
    places=st.integers(0, 6),
    dot=st.booleans(),
    plus=st.lists(st.booleans(), min_size=80, max_size=80),
    lead=blank,
    newline=line_end,
)
@example(
    rows=[(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)],
    places=0,
    dot=True,
    plus=[True] * 80,
    lead=" ",
    newline="\r",
)
def test_one_layout_files_read_digits_in_place_bit_for_bit(rows, places, dot, plus, lead, newline):
    """Numbers of one layout (fraction digits, dot) are read at fixed places, as float() reads them.

    Whole parts of different widths, "+" signs, leading blanks, every line end:
    the digits of the number to the left never leak into a narrower number.
    """
    signs = iter(plus)

    def field(value: float) -> str:
        text = f"{value:.{places}f}" + ("." if dot and not places else "")
        return ("+" if next(signs) else "") + text

    text = "".join(f"{lead}{field(x)} {field(y)}{newline}" for x, y in rows)
    data = text.encode("ascii")
    fast = contour_module._parse_fast(data)
    expected = [float(number) for number in text.split()]
    assert fast.tobytes() == np.array(expected, dtype=np.float64).reshape(-1, 2).tobytes()
    assert_same(text)


# Pieces of contour files and the bytes that break them: the fast path must
# either give what the careful path gives or step aside for it.
grammar_ish = st.lists(
    st.sampled_from(
        [piece.encode("utf-8") for piece in [*"0123456789.-+eE  \t\v\f\r\n", "\r\n"]]
        + [b"0", b"5", b"9", b"\x00", b"\x1c", b"\xff"]  # \xff is not UTF-8
        + [piece.encode("utf-8") for piece in ["\x85", "é", "٣", "\u00a0"]]
    ),
    max_size=80,
).map(b"".join)


@st.composite
def number_ish(draw) -> bytes:
    """A number of the grammar (up to 20 + 24 digits, an exponent now and then), or a near miss."""
    if draw(st.integers(0, 14)) == 0:
        return draw(st.sampled_from([b"--1", b"1..2", b"1e", b".", b"-", b"1.2.3", b"e5", b"1-2"]))
    whole = draw(st.text(alphabet="0123456789", max_size=20))
    fraction = draw(st.text(alphabet="0123456789", max_size=24))
    dot = "." if not whole or draw(st.booleans()) else ""
    if not (whole or fraction):
        whole = "0"
    sign = draw(st.sampled_from(["", "", "-", "+"]))
    exponent = draw(st.sampled_from([""] * 20 + ["e5", "E-3", "e+22", "e999"]))
    return f"{sign}{whole}{dot}{fraction if dot else ''}{exponent}".encode("ascii")


@st.composite
def lines_ish(draw) -> bytes:
    """Lines of two number-ish fields between blanks, then maybe a piece of grammar_ish."""
    blanks = st.sampled_from([b"", b" ", b"\t", b"  ", b"\v", b"\f"])
    ends = st.sampled_from([b"\n", b"\r\n", b"\r"])
    data = b"".join(
        draw(blanks)
        + draw(number_ish())
        + draw(blanks)
        + b" "
        + draw(number_ish())
        + draw(blanks)
        + draw(ends)
        for _ in range(draw(st.integers(0, 8)))
    )
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(grammar_ish) + data[at + draw(st.integers(0, 2)) :]
    return data


@settings(max_examples=800, deadline=None)
@given(data=st.one_of(grammar_ish, lines_ish()))
@example(data=b"-0.0 -0\n+0 0.\n.5 -.5\n")
@example(data=b"0.000000000000000000000001 1\n2 3\n4 5\n")  # 24 fraction digits
@example(data=b"000000000000000000001.5 1\n2 3\n4 5\n")  # leading zeros are not significant
@example(data=b"123456789012345 1\n2 3\n4 5\n")  # 15 significant digits, exact
@example(data=b"1234567890123456 1\n2 3\n4 5\n")  # 16: Python's float
@example(data=b"1 2\n3 4\n5 6\x0c\n7 8\x0b\r\n")
def test_grammar_ish_bytes_give_what_the_careful_path_gives(data):
    """read_contour and parse_contour on bytes from the grammar's alphabet and its neighbours."""
    expected = outcome(careful_bytes, data)
    assert outcome(lambda d: read_contour(io.BytesIO(d), name=NAME), data) == expected
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert outcome(lambda t: parse_contour(t, name=NAME), text) == expected
