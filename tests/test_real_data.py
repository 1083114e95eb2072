"""The real Sunnybrook subset at ../shared/data/final_data (skipped where absent).

Expected values come from the data's README and from computations that do not
use dicontour's own code: pydicom for pixels, matplotlib's point-in-polygon
test and a brute-force loop for masks.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from helpers import reference_mask
from matplotlib.path import Path as PolygonPath

import dicontour
from dicontour import CODES, polygon_to_mask, read_contour

pytestmark = [
    pytest.mark.timeout(120),
    # The scanner wrote UIDs with leading-zero components; pydicom warns on each.
    pytest.mark.filterwarnings("ignore:Invalid value for VR UI"),
]


@pytest.fixture(scope="module")
def index(real_data):
    return dicontour.scan(real_data)


@pytest.fixture(scope="module")
def contours(index, real_data):
    """Every (record, kind, points) of the scan."""
    found = []
    for record in index:
        for kind, path in (("i", record.i_contour), ("o", record.o_contour)):
            if path is not None:
                found.append((record, kind, read_contour(real_data / path)))
    return found


def test_counts_from_the_readme(index):
    summary = index.summary
    assert summary["patients"] == 5
    assert summary["dicoms"] == 1140
    assert summary["i_contours"] == 96
    assert summary["o_contours"] == 46
    assert summary["both_contours"] == 46  # every o-contour slice also has an i-contour
    assert summary["unlabelled_slices"] == 1044
    assert summary["labelled_slices"] == len(index) == 96


def test_no_problem_of_severity_error(index):
    assert index.errors() == []
    assert all(CODES[p.code][0] != "error" for p in index.problems)


@pytest.mark.slow
def test_images_are_256_float32_equal_to_pydicom(index, real_data):
    for k, record in enumerate(index):
        sample = index.load(k)
        assert sample.image.shape == (256, 256)
        assert sample.image.dtype == np.float32
        stored = pydicom.dcmread(real_data / record.dicom).pixel_array
        np.testing.assert_array_equal(sample.image, stored.astype(np.float32))


def _distance_to_boundary(points: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Distance from each (x, y) in ``pixels`` to the closed polygon's edges."""
    a = points[None, :, :]
    b = np.roll(points, -1, axis=0)[None, :, :]
    p = pixels[:, None, :]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300), 0, 1)
    nearest = a + t[..., None] * ab
    return np.hypot(*(nearest - p).transpose(2, 0, 1)).min(axis=1)


def matplotlib_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixel centres inside the polygon by matplotlib's test (only its bounding box is tried)."""
    x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 1, shape[::-1])
    rows, cols = np.mgrid[y0:y1, x0:x1]
    centres = np.c_[cols.ravel(), rows.ravel()].astype(np.float64)
    inside = PolygonPath(np.vstack([points, points[:1]]), closed=True).contains_points(centres)
    mask = np.zeros(shape, dtype=bool)
    mask[rows.ravel(), cols.ravel()] = inside
    return mask


@pytest.mark.slow
def test_masks_agree_with_matplotlib_except_exactly_on_edges(contours):
    """matplotlib decides centres off the boundary the same way; on it, it has no fixed rule."""
    on_edges = 0
    for record, kind, points in contours:
        mask = polygon_to_mask(points, (256, 256))
        differ = np.argwhere(mask != matplotlib_mask(points, (256, 256)))
        if len(differ):
            distance = _distance_to_boundary(points, differ[:, ::-1].astype(np.float64))
            assert distance.max() <= 1e-9, (record.dicom, kind)
            on_edges += len(differ)
        assert mask.sum() > 0
    assert on_edges > 0  # the real vertices sit on half-integers: the rule is exercised


def test_a_few_masks_equal_the_brute_force_reference(contours):
    """Exact, half-open rule included, on the contour's bounding box (brute force is slow)."""
    for record, kind, points in contours[:: max(1, len(contours) // 3)][:3]:
        low = np.floor(points.min(axis=0)).astype(int) - 2
        high = np.ceil(points.max(axis=0)).astype(int) + 3
        window = (int(high[1] - low[1]), int(high[0] - low[0]))
        expected = reference_mask(points - low, window)
        mask = polygon_to_mask(points, (256, 256))
        np.testing.assert_array_equal(
            mask[low[1] : high[1], low[0] : high[0]], expected, err_msg=f"{record.dicom} {kind}"
        )
        assert mask.sum() == expected.sum()  # nothing outside the window


def test_challenge_convention_shrinks_the_lv_by_about_5_percent(contours):
    ours = challenge = 0
    for _, kind, points in contours:
        if kind == "i":
            ours += int(polygon_to_mask(points, (256, 256)).sum())
            challenge += int(polygon_to_mask(points, (256, 256), convention="challenge").sum())
    shrink = 1 - challenge / ours
    assert 0.03 <= shrink <= 0.08, shrink


def test_i_outside_o_warnings_match_an_independent_check(index, real_data):
    expected = set()
    for record in index:
        if record.i_contour and record.o_contour:
            inner, outer = (
                matplotlib_mask(read_contour(real_data / path), (256, 256))
                for path in (record.i_contour, record.o_contour)
            )
            # The real fractions are either below 0.3% or above 19%: no borderline case.
            if (inner & ~outer).sum() > 0.02 * inner.sum():
                expected.add(record.i_contour)
    warned = {p.path for p in index.problems if p.code == "i-outside-o"}
    assert warned == expected
    # The patient whose o-contours do not line up also gets one contours-misaligned line.
    assert {p.code for p in index.problems} <= {"i-outside-o", "contours-misaligned"}
