"""dicontour.qa.metrics and .threshold: Dice, IoU and Otsu on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dicontour import dice, iou
from dicontour.qa.threshold import class_means, otsu_threshold


def _mask(shape, *boxes):
    mask = np.zeros(shape, bool)
    for r0, r1, c0, c1 in boxes:
        mask[r0:r1, c0:c1] = True
    return mask


def test_dice_and_iou_of_overlapping_squares():
    # A: rows 0-3 x cols 0-3 (16 px); B: rows 2-5 x cols 2-5 (16 px); shared 2 x 2 = 4 px.
    a = _mask((8, 8), (0, 4, 0, 4))
    b = _mask((8, 8), (2, 6, 2, 6))
    assert dice(a, b) == pytest.approx(2 * 4 / (16 + 16))  # 0.25
    assert iou(a, b) == pytest.approx(4 / (16 + 16 - 4))  # 1/7


def test_dice_and_iou_edge_cases():
    empty = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(full, empty) == 0.0 and iou(empty, full) == 0.0
    assert dice(full, full) == 1.0 and iou(full, full) == 1.0
    # Integer masks count non-zero as inside.
    assert dice(np.array([[0, 2]]), np.array([[1, 1]])) == pytest.approx(2 * 1 / 3)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"predicted=\(2, 2\), truth=\(3, 3\)"):
        dice(np.zeros((2, 2), bool), np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="differ in shape"):
        iou(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


@settings(max_examples=60, deadline=None)
@given(
    arrays(bool, (6, 7)),
    arrays(bool, (6, 7)),
)
def test_dice_iou_properties(a, b):
    d, j = dice(a, b), iou(a, b)
    assert 0.0 <= j <= d <= 1.0
    assert d == pytest.approx(dice(b, a)) and j == pytest.approx(iou(b, a))
    assert j == pytest.approx(d / (2 - d))
    assert (d == 1.0) == bool((a == b).all())


def test_otsu_threshold_splits_two_clusters_in_the_gap():
    values = [0, 0, 1, 1, 9, 10, 10]
    t = otsu_threshold(values)
    assert 1 < t < 9  # every cut in the gap gives the same split; the middle is taken
    assert t == pytest.approx(5.0, abs=0.1)
    assert class_means(values, t) == (0.5, pytest.approx(29 / 3))


def test_otsu_threshold_degenerate_and_invalid():
    assert otsu_threshold([4, 4, 4]) == 4.0
    with pytest.raises(ValueError, match="empty"):
        otsu_threshold([])
    with pytest.raises(ValueError, match="bins must be at least 2"):
        otsu_threshold([1, 2], bins=1)


@settings(max_examples=40, deadline=None)
@given(
    st.floats(-1000, 1000),
    st.floats(1, 1000),
    st.integers(5, 50),
    st.integers(5, 50),
)
def test_otsu_separates_two_well_separated_groups(low, gap, n_low, n_high):
    rng = np.random.default_rng(0)
    dark = low + rng.uniform(0, 1, n_low) * gap * 0.1
    bright = low + gap + rng.uniform(0, 1, n_high) * gap * 0.1
    t = otsu_threshold(np.concatenate([dark, bright]))
    assert dark.max() <= t < bright.min()
