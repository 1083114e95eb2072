"""dicontour.raster: exact masks under the pixel-centre, half-open convention.

The reference below is written independently of the library: pure Python loops
over pixels and edges, the even-odd rule, and the half-open rule for centres on
an edge (an edge counts for scan line y=r when min(y0, y1) <= r < max(y0, y1); a
centre exactly on a crossing belongs to the side of larger x).
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from helpers import reference_mask
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from dicontour import polygon_to_mask
from dicontour.contour import MAX_POINTS
from dicontour.raster import MAX_CROSSINGS, count_crossings


def shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def perimeter(points: np.ndarray) -> float:
    return float(np.hypot(*(np.roll(points, -1, axis=0) - points).T).sum())


# ------------------------------------------------------------------- small cases


def test_square_default_and_challenge():
    square = [(0, 0), (0, 7), (7, 7), (7, 0)]
    assert polygon_to_mask(square, (10, 10)).sum() == 49
    assert polygon_to_mask(square, (10, 10), convention="challenge").sum() == 36


def test_square_pixels_by_hand():
    mask = polygon_to_mask(np.array([(1, 2), (4, 2), (4, 5), (1, 5)], float), (7, 6))
    expected = np.zeros((7, 6), bool)
    expected[2:5, 1:4] = True  # rows 2..4, columns 1..3: the low edges in, the high edges out
    assert mask.dtype == bool and mask.shape == (7, 6)
    np.testing.assert_array_equal(mask, expected)


def test_x_is_column_and_y_is_row():
    # A 1-pixel-wide, 3-tall box around column 4, rows 0..2.
    mask = polygon_to_mask([(3.5, -0.5), (4.5, -0.5), (4.5, 2.5), (3.5, 2.5)], (5, 8))
    assert set(zip(*np.nonzero(mask), strict=True)) == {(0, 4), (1, 4), (2, 4)}


def test_triangle_with_centres_exactly_on_the_slanted_edge():
    # The edge (0,0)-(58,14) passes exactly through the centre (x=29, y=7); by the
    # half-open rule it belongs to the polygon on its right, not to this one.
    left = [(0, 0), (58, 14), (0, 14)]
    right = [(0, 0), (58, 0), (58, 14)]
    a, b = polygon_to_mask(left, (16, 64)), polygon_to_mask(right, (16, 64))
    assert not a[7, 29] and b[7, 29]
    np.testing.assert_array_equal(a, reference_mask(left, (16, 64)))
    np.testing.assert_array_equal(b, reference_mask(right, (16, 64)))


def test_outside_inside_and_whole_image():
    assert not polygon_to_mask([(20, 20), (30, 20), (25, 30)], (10, 10)).any()
    assert polygon_to_mask([(-5, -5), (50, -5), (50, 50), (-5, 50)], (10, 12)).all()
    assert not polygon_to_mask([(0, 0), (5, 5)], (10, 10)).any()  # not a polygon
    assert polygon_to_mask([(0, 0), (5, 0), (5, 5)], (0, 0)).shape == (0, 0)


def test_self_intersecting_polygon_uses_even_odd():
    # Two overlapping squares drawn as one path: the overlap is outside.
    path = [(0, 0), (6, 0), (6, 6), (3, 6), (3, 3), (9, 3), (9, 9), (0, 9)]
    mask = polygon_to_mask(path, (10, 10))
    np.testing.assert_array_equal(mask, reference_mask(path, (10, 10)))
    assert not mask[4, 4] and mask[1, 1] and mask[7, 7]


@pytest.mark.parametrize(
    ("points", "shape", "match"),
    [
        (np.zeros((3, 3)), (4, 4), r"shape \(N, 2\)"),
        (np.zeros(6), (4, 4), r"shape \(N, 2\)"),
        ([[0, 0], [1, math.nan], [2, 2]], (4, 4), "NaN"),
        ([[0, 0], [1, math.inf], [2, 2]], (4, 4), "infinity"),
        ([[0, 0], [1e200, 1], [2, 2]], (4, 4), "beyond"),
        (np.zeros((MAX_POINTS + 1, 2)), (4, 4), "MAX_POINTS"),
        ([[0, 0], [1, 0], [1, 1]], (4,), r"\(H, W\)"),
        ([[0, 0], [1, 0], [1, 1]], (4, 4, 4), r"\(H, W\)"),
        ([[0, 0], [1, 0], [1, 1]], (-1, 4), r"\(H, W\)"),
        ([[0, 0], [1, 0], [1, 1]], (4.5, 4), "integers"),
        ([[0, 0], [1, 0], [1, 1]], None, r"\(H, W\)"),
        ([[0, 0], [1, 0], [1, 1]], (100_000, 100_000), r"\(H, W\)"),
    ],
)
def test_bad_arguments(points, shape, match):
    with pytest.raises(ValueError, match=match):
        polygon_to_mask(points, shape)


def test_unknown_convention():
    with pytest.raises(ValueError, match="convention"):
        polygon_to_mask([(0, 0), (3, 0), (3, 3)], (4, 4), convention="pil")


def test_challenge_convention_is_the_pil_helper():
    points = [(2.5, 1.0), (13.2, 4.7), (11.0, 12.5), (3.3, 9.9)]
    canvas = Image.new("L", (16, 14), 0)
    ImageDraw.Draw(canvas).polygon(points, outline=0, fill=1)
    np.testing.assert_array_equal(
        polygon_to_mask(points, (14, 16), convention="challenge"), np.array(canvas) > 0
    )


# --------------------------------------------------------------------- strategies


@st.composite
def polygon_and_shape(draw, exact: bool | None, side: int = 14, vertices: int = 9):
    """A random polygon, possibly self-intersecting and partly outside the image.

    ``exact``: integer and half-integer vertices, so many centres lie exactly on
    edges and vertices; False: arbitrary floats; None: either, drawn.  Images up
    to ``side`` pixels a side, 3 to ``vertices`` vertices.
    """
    height, width = draw(st.integers(1, side)), draw(st.integers(1, side))
    n = draw(st.integers(3, vertices))
    if draw(st.booleans()) if exact is None else exact:
        xs = st.integers(-8, 2 * width + 8).map(lambda k: k / 2)
        ys = st.integers(-8, 2 * height + 8).map(lambda k: k / 2)
    else:
        xs = st.floats(-4, width + 4, allow_nan=False)
        ys = st.floats(-4, height + 4, allow_nan=False)
    points = draw(st.lists(st.tuples(xs, ys), min_size=n, max_size=n))
    return np.array(points, dtype=np.float64), (height, width)


@st.composite
def edge_through_a_centre(draw):
    """A polygon with an edge passing exactly through a pixel centre, at any slope.

    The edge runs from centre - t0 * (p, q) to centre + t1 * (p, q) with
    half-integer p, q: its end points are half-integers, its slope any ratio.
    """
    height, width = draw(st.integers(4, 30)), draw(st.integers(4, 30))
    c, r = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
    p = draw(st.integers(-40, 40).map(lambda k: k / 2))
    q = draw(st.integers(1, 40).map(lambda k: k / 2))
    t0, t1 = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    start, end = (c - t0 * p, r - t0 * q), (c + t1 * p, r + t1 * q)
    coordinate = st.integers(-8, 2 * max(height, width) + 8).map(lambda k: k / 2)
    rest = draw(st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=3))
    return np.array([start, end, *rest], dtype=np.float64), (height, width)


@settings(max_examples=400, deadline=None)
@given(
    case=st.one_of(
        polygon_and_shape(exact=True), polygon_and_shape(exact=False), edge_through_a_centre()
    )
)
@pytest.mark.slow
def test_agrees_with_brute_force_reference(case):
    points, shape = case
    np.testing.assert_array_equal(polygon_to_mask(points, shape), reference_mask(points, shape))


@settings(max_examples=100, deadline=None)
@given(case=polygon_and_shape(exact=True), shift=st.integers(0, 8), dx=st.integers(-3, 3))
@pytest.mark.slow
def test_vertex_order_and_integer_shifts_do_not_matter(case, shift, dx):
    points, shape = case
    mask = polygon_to_mask(points, shape)
    np.testing.assert_array_equal(polygon_to_mask(points[::-1], shape), mask)
    np.testing.assert_array_equal(polygon_to_mask(np.roll(points, shift, axis=0), shape), mask)
    # Moving the polygon dx columns right moves the mask (on a wide enough canvas).
    height, width = shape
    wide = polygon_to_mask(points + np.array([8, 0]), (height, width + 24))
    moved = polygon_to_mask(points + np.array([8 + dx, 0]), (height, width + 24))
    np.testing.assert_array_equal(np.roll(wide, dx, axis=1), moved)


# --------------------------------------------------------------------- tiling

half = st.integers(-2, 2).map(lambda k: k / 2)


@st.composite
def jittered_grid(draw):
    """Cells of a jittered lattice (quads, some split into triangles) and its outline."""
    m, n, step = draw(st.integers(1, 4)), draw(st.integers(1, 4)), 5
    x0, y0 = draw(st.integers(-6, 6)), draw(st.integers(-6, 6))
    grid = {
        (i, j): (x0 + i * step + draw(half), y0 + j * step + draw(half))
        for i in range(m + 1)
        for j in range(n + 1)
    }
    cells = []
    for i in range(m):
        for j in range(n):
            a, b, c, d = grid[i, j], grid[i + 1, j], grid[i + 1, j + 1], grid[i, j + 1]
            split = draw(st.sampled_from(["quad", "ac", "bd"]))
            if split == "quad":
                cells.append([a, b, c, d])
            elif split == "ac":
                cells += [[a, b, c], [a, c, d]]
            else:
                cells += [[a, b, d], [b, c, d]]
    outline = (
        [grid[i, 0] for i in range(m + 1)]
        + [grid[m, j] for j in range(1, n + 1)]
        + [grid[i, n] for i in range(m - 1, -1, -1)]
        + [grid[0, j] for j in range(n - 1, 0, -1)]
    )
    return [np.array(c, float) for c in cells], np.array(outline, float)


@settings(max_examples=150, deadline=None)
@given(case=jittered_grid(), shape=st.tuples(st.integers(1, 24), st.integers(1, 24)))
@pytest.mark.slow
def test_cells_sharing_edges_tile_exactly(case, shape):
    cells, outline = case
    count = sum(polygon_to_mask(cell, shape).astype(int) for cell in cells)
    assert count.max() <= 1, "two cells claim the same pixel"
    np.testing.assert_array_equal(count == 1, polygon_to_mask(outline, shape))


@st.composite
def rectangle_and_cut(draw):
    """A rectangle and a y-monotone polyline from its top side to its bottom side."""
    x0, y0 = draw(st.integers(-3, 8)), draw(st.integers(-3, 8))
    x1, y1 = x0 + draw(st.integers(1, 14)), y0 + draw(st.integers(1, 14))
    exact = draw(st.booleans())
    if exact:
        ys = st.integers(2 * y0 + 1, 2 * y1 - 1).map(lambda k: k / 2)
        xs = st.integers(2 * x0, 2 * x1).map(lambda k: k / 2)
    else:
        ys = st.floats(y0, y1, exclude_min=True, exclude_max=True)
        xs = st.floats(x0, x1)
    inner_y = sorted(set(draw(st.lists(ys, max_size=6))))
    cut = [(draw(xs), float(y)) for y in [y0, *inner_y, y1]]
    return (x0, y0, x1, y1), cut


@settings(max_examples=200, deadline=None)
@given(case=rectangle_and_cut(), shape=st.tuples(st.integers(1, 20), st.integers(1, 20)))
@pytest.mark.slow
def test_rectangle_cut_in_two_tiles_exactly(case, shape):
    (x0, y0, x1, y1), cut = case
    left = [(x0, y0), *cut, (x0, y1)]
    right = [(x1, y0), (x1, y1), *cut[::-1]]
    a, b = polygon_to_mask(left, shape), polygon_to_mask(right, shape)
    whole = polygon_to_mask([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], shape)
    assert not (a & b).any()
    np.testing.assert_array_equal(a | b, whole)
    # And the whole rectangle by hand: rows y0..y1-1, columns x0..x1-1, clipped.
    expected = np.zeros(shape, bool)
    expected[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    np.testing.assert_array_equal(whole, expected)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(4, 24),
    seed=st.integers(0, 2**32 - 1),
    chord=st.tuples(st.integers(0, 100), st.integers(0, 100)),
)
@pytest.mark.slow
def test_convex_polygon_split_by_a_chord_tiles_exactly(n, seed, chord):
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    assume(np.diff(angles).min() > 1e-3)
    radius = rng.uniform(3, 15)
    centre = rng.uniform(5, 25, 2)
    polygon = centre + radius * np.c_[np.cos(angles), np.sin(angles)]
    i, j = sorted((chord[0] % n, chord[1] % n))
    assume(j - i >= 2 and not (i == 0 and j == n - 1))
    first = polygon[i : j + 1]
    second = np.vstack([polygon[j:], polygon[: i + 1]])
    shape = (30, 30)
    a, b = polygon_to_mask(first, shape), polygon_to_mask(second, shape)
    assert not (a & b).any()
    np.testing.assert_array_equal(a | b, polygon_to_mask(polygon, shape))


# ------------------------------------------------------------------ area bound


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(3, 60),
    seed=st.integers(0, 2**32 - 1),
    exact=st.booleans(),
)
@pytest.mark.slow
def test_area_within_half_the_perimeter(n, seed, exact):
    """|mask area - polygon area| <= perimeter / 2 + 1 for simple (star-shaped) polygons."""
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    assume(np.diff(angles).min() > 1e-6)
    radii = rng.uniform(0.3, 1.0, n) * rng.uniform(1, 20)
    centre = rng.uniform(21, 27, 2)
    polygon = centre + radii[:, None] * np.c_[np.cos(angles), np.sin(angles)]
    if exact:
        # Half-integer vertices put many centres exactly on edges.
        polygon = np.round(polygon * 2) / 2
    # Simple: the vertices still turn once around the centre, always forwards.
    offset = polygon - centre
    assume((np.hypot(*offset.T) > 0).all())
    turns = np.diff(np.arctan2(offset[:, 1], offset[:, 0]), append=0.0)
    turns[-1] = np.arctan2(offset[0, 1], offset[0, 0]) - np.arctan2(offset[-1, 1], offset[-1, 0])
    turns = np.mod(turns, 2 * np.pi)
    assume(((turns > 1e-9) & (turns < np.pi - 1e-9)).all())
    assume(abs(turns.sum() - 2 * np.pi) < 1e-6)
    mask = polygon_to_mask(polygon, (48, 48))
    assert abs(int(mask.sum()) - shoelace(polygon)) <= perimeter(polygon) / 2 + 1


def test_huge_coordinates_do_not_overflow():
    # offset * dx stays finite below MAX_COORDINATE: row r is crossed at x = 1.5 r.
    points = [(0, 0), (1.5e149, 1e149), (0, 1e149)]
    mask = polygon_to_mask(points, (6, 10))
    assert [int(row.sum()) for row in mask] == [0, 2, 3, 5, 6, 8]
    np.testing.assert_array_equal(mask, reference_mask(points, (6, 10)))


# ------------------------------------------------------------------- bounded work and memory


def zigzag(n: int, height: int, width: int) -> np.ndarray:
    """n vertices alternating between the top and bottom rows, sweeping across x."""
    k = np.arange(n)
    x = (k * 7) % width + 0.25  # many distinct crossings per row, not a sliver
    y = np.where(k % 2, height - 1, 0).astype(float)
    return np.stack([x, y], axis=1)


@settings(max_examples=100, deadline=None)
@given(case=st.one_of(polygon_and_shape(exact=True), polygon_and_shape(exact=False)))
@pytest.mark.slow
def test_count_crossings_is_rows_spanned_within_the_image(case):
    points, (height, width) = case
    expected = 0
    for k in range(len(points)):
        y0, y1 = points[k, 1], points[(k + 1) % len(points), 1]
        expected += sum(min(y0, y1) <= r < max(y0, y1) for r in range(height))
    assert count_crossings(points, (height, width)) == expected


def test_count_crossings_by_hand():
    # A 3 x 3 square: its two vertical edges cross rows 0, 1 and 2 each.
    assert count_crossings([(0, 0), (0, 3), (3, 3), (3, 0)], (5, 5)) == 6
    # Rows outside the image are not counted.
    assert count_crossings([(0, -10), (0, 30), (3, 30), (3, -10)], (5, 5)) == 10
    assert count_crossings([(0, 0), (1, 1)], (5, 5)) == 0


def test_zigzag_over_the_limit_refused_before_allocating():
    # The audit's case: 100,000 vertices (a 1.2 MB file) zig-zagging across a 256^2
    # image, 25.5 million (edge, row) crossings; it once peaked at 1.4 GB.
    points = zigzag(MAX_POINTS, 256, 256)
    assert count_crossings(points, (256, 256)) > MAX_CROSSINGS
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"MAX_CROSSINGS={MAX_CROSSINGS}"):
            polygon_to_mask(points, (256, 256))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB allocated before refusing"


def test_zigzag_at_the_limit_runs_in_bounded_memory():
    # Just under MAX_CROSSINGS on a 2048^2 image (a 4 MiB mask): the work arrays
    # hold one small integer per crossing (~4 MB), not a float array per step (~100 MB).
    shape = (2048, 2048)
    points = zigzag(MAX_CROSSINGS // 2047, *shape)
    assert MAX_CROSSINGS - 2047 < count_crossings(points, shape) <= MAX_CROSSINGS
    tracemalloc.start()
    try:
        mask = polygon_to_mask(points, shape)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    # Spot-check rows against the brute-force rule on the same polygon.
    for row in (0, 700, 2046):
        crossings = []
        for k in range(len(points)):
            (x0, y0), (x1, y1) = points[k], points[(k + 1) % len(points)]
            if min(y0, y1) <= row < max(y0, y1):
                crossings.append(x0 + (row - y0) * (x1 - x0) / (y1 - y0))
        crossings = np.sort(np.ceil(crossings))
        expected = (np.searchsorted(crossings, np.arange(shape[1]), side="right") % 2) == 1
        np.testing.assert_array_equal(mask[row], expected)
    assert not mask[2047].any()  # the last row holds only vertices, no crossing


# ------------------------------------------------------------- the compiled kernel


@settings(max_examples=300, deadline=None)
# Up to 80 vertices on 40 x 40: repeated vertices, shared and collinear edges,
# self-intersections, rows crossed 20+ times, parts outside the image.
@given(case=polygon_and_shape(exact=None, side=40, vertices=80), strided=st.booleans())
@pytest.mark.slow
def test_kernel_agrees_with_the_brute_force_on_busy_polygons(case, strided):
    points, shape = case
    if strided:  # non-contiguous points and out (every other column of a wider array)
        canvas = np.ones((shape[0], 2 * shape[1]), dtype=bool)
        mask = polygon_to_mask(np.asfortranarray(points), shape, out=canvas[:, ::2])
        assert canvas[:, 1::2].all()  # the other columns untouched
    else:
        mask = polygon_to_mask(points, shape)
    np.testing.assert_array_equal(mask, reference_mask(points, shape))


def test_many_crossings_per_row_are_sorted():
    # A zig-zag crossing each of rows 0..10 60 times (past the kernel's insertion
    # sort), its x shuffled so that the crossings come unsorted.
    points = zigzag(60, 12, 40)
    points[:, 0] = np.random.default_rng(0).permutation(points[:, 0])
    assert count_crossings(points, (12, 40)) == 60 * 11
    np.testing.assert_array_equal(
        polygon_to_mask(points, (12, 40)), reference_mask(points, (12, 40))
    )


def test_strided_out_is_filled():
    canvas = np.zeros((5, 10), dtype=bool)
    polygon_to_mask([(0, 0), (0, 3), (3, 3), (3, 0)], (5, 5), out=canvas[:, ::2])
    expected = np.zeros((5, 10), dtype=bool)
    expected[:3, 0:6:2] = True
    np.testing.assert_array_equal(canvas, expected)
