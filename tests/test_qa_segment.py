"""dicontour.qa.segment and .study: methods on built images, the hull, leave-one-patient-out."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import REAL_DATA, REAL_DATA_REASON
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

import dicontour
from dicontour.cli import main
from dicontour.qa.segment import (
    DEFAULT_METHOD,
    METHODS,
    MethodSpec,
    convex_hull_mask,
    largest_component,
    segment_blood_pool,
)
from dicontour.qa.study import (
    LabelledSlice,
    evaluate,
    leave_one_patient_out,
    load_labelled,
    well_aligned_patients,
)


def _disk(shape, centre, radius):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def _heart(seed: int = 0, shape=(64, 64)):
    """Bright pool (r=12) with two dark papillary muscles at its edge, in a dark ring (r=18)."""
    rng = np.random.default_rng(seed)
    centre = (32, 32)
    o_mask = _disk(shape, centre, 18)
    i_mask = _disk(shape, centre, 12)
    image = np.full(shape, 20.0)
    image[o_mask] = 60.0
    image[i_mask] = 250.0
    for muscle in ((32, 22), (41, 37)):  # inside the pool, touching its border
        image[_disk(shape, muscle, 3) & i_mask] = 70.0
    image += rng.normal(0, 8, shape)
    return image.astype(np.float32), i_mask, o_mask


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_stays_inside_o_and_finds_the_pool(method):
    image, i_mask, o_mask = _heart()
    predicted = segment_blood_pool(image, o_mask, method=method)
    assert predicted.dtype == bool and predicted.shape == image.shape
    assert not (predicted & ~o_mask).any()
    assert dicontour.dice(predicted, i_mask) > 0.8


def test_the_hull_takes_in_papillary_muscles_that_otsu_leaves_out():
    image, i_mask, o_mask = _heart()
    otsu = segment_blood_pool(image, o_mask, method="otsu")
    hull = segment_blood_pool(image, o_mask, method="hull")
    muscles = i_mask & (image < 150)
    assert muscles.sum() > 30
    assert otsu[muscles].mean() < 0.2  # at the border: not enclosed, so not filled
    assert hull[muscles].mean() > 0.9
    assert dicontour.dice(hull, i_mask) > 0.95 > dicontour.dice(otsu, i_mask)


def test_methods_handle_empty_and_uniform_o_masks():
    image = np.zeros((8, 8), np.float32)
    for name in METHODS:
        assert not segment_blood_pool(image, np.zeros((8, 8), bool), method=name).any()
        # A uniform region has no bright class: nothing or everything, never outside o.
        o_mask = np.zeros((8, 8), bool)
        o_mask[2:6, 2:6] = True
        assert not (segment_blood_pool(image, o_mask, method=name) & ~o_mask).any()


def test_method_errors_name_the_problem():
    image, _, o_mask = _heart()
    with pytest.raises(ValueError, match=r"unknown method 'nope'; known methods: \['gmm'"):
        segment_blood_pool(image, o_mask, method="nope")
    with pytest.raises(TypeError, match=r"method 'hull' has no parameter \['radius'\]"):
        segment_blood_pool(image, o_mask, method="hull", radius=3)
    with pytest.raises(ValueError, match=r"o_mask shape \(4, 4\) differs from image shape"):
        segment_blood_pool(image, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="posterior must be in"):
        segment_blood_pool(image, o_mask, method="gmm", posterior=1.5)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_cropping_to_the_o_mask_changes_nothing(method):
    image, _, o_mask = _heart(seed=1)
    spec = METHODS[method]
    direct = spec.function(image.astype(np.float64), o_mask, **spec.defaults)
    assert np.array_equal(spec(image, o_mask), direct)


def test_default_method_is_the_hull():
    assert DEFAULT_METHOD == "hull"
    image, _, o_mask = _heart()
    assert np.array_equal(segment_blood_pool(image, o_mask), METHODS["hull"](image, o_mask))


def test_convex_hull_mask_by_hand():
    mask = np.zeros((6, 6), bool)
    mask[1, 1] = mask[1, 4] = mask[4, 1] = True  # a right triangle's corners
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 1, 0],
            [0, 1, 1, 1, 0, 0],
            [0, 1, 1, 0, 0, 0],
            [0, 1, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        bool,
    )
    assert np.array_equal(convex_hull_mask(mask), expected)
    assert not convex_hull_mask(np.zeros((3, 3), bool)).any()
    single = np.zeros((3, 3), bool)
    single[1, 1] = True
    assert np.array_equal(convex_hull_mask(single), single)


@settings(max_examples=60, deadline=None)
@given(arrays(bool, (9, 11)))
def test_convex_hull_contains_the_mask_within_its_bounding_box(mask):
    hull = convex_hull_mask(mask)
    assert not (mask & ~hull).any()
    if mask.any():
        rows, cols = np.nonzero(mask)
        box = np.zeros_like(mask)
        box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        assert not (hull & ~box).any()
    # Convex: every row and every column of the hull is one unbroken run.
    for line in (*hull, *hull.T):
        runs = np.flatnonzero(np.diff(np.r_[0, line.astype(int), 0]))
        assert len(runs) in (0, 2)


def test_largest_component_by_hand():
    mask = np.array([[1, 1, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]], bool)  # sizes 2 and 3
    assert np.array_equal(largest_component(mask), np.array([[0, 0, 0, 1]] * 3, bool))
    assert not largest_component(np.zeros((2, 2), bool)).any()


# ------------------------------------------------------------------ study


def _slice(pid: str, n: int, value: float) -> LabelledSlice:
    """A 4x4 slice whose i-mask equals its o-mask; the image encodes ``value``."""
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    return LabelledSlice(pid, n, np.full((4, 4), value, np.float32), mask, mask.copy())


def _oracle(image, o_mask, *, k=0):
    """Perfect when k equals the value the image encodes, empty otherwise."""
    return o_mask.copy() if k == int(image[0, 0]) else np.zeros_like(o_mask)


def test_leave_one_patient_out_by_hand(monkeypatch):
    spec = MethodSpec("oracle", _oracle, {"k": 0}, {"k": (0, 1)})
    monkeypatch.setitem(METHODS, "oracle", spec)
    # A (2 slices) and B want k=0; C wants k=1.
    slices = [_slice("A", 1, 0), _slice("A", 2, 0), _slice("B", 1, 0), _slice("C", 1, 1)]
    result = leave_one_patient_out(slices, "oracle")
    rows = {p.patient_id: p for p in result.patients}
    # On everyone, k=0 scores (1 + 1 + 0) / 3 against k=1's 1/3: in-sample k=0.
    assert result.params == {"k": 0} and result.grid_size == 2
    assert [rows[p].in_sample_dice for p in "ABC"] == [1.0, 1.0, 0.0]
    # Held out C: A and B choose k=0, which fails C.  Held out A: B (k=0) and C (k=1)
    # tie at 0.5; the first grid point wins, k=0, which suits A.
    assert rows["C"].held_out_params == {"k": 0} and rows["C"].held_out_dice == 0.0
    assert rows["A"].held_out_params == {"k": 0} and rows["A"].held_out_dice == 1.0
    assert rows["B"].held_out_params == {"k": 0} and rows["B"].slices == 1
    assert result.mean("held_out_dice") == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least 2 patients"):
        leave_one_patient_out(slices[:2], "oracle")


def test_evaluate_document_and_patient_means(monkeypatch):
    monkeypatch.setitem(METHODS, "oracle", MethodSpec("oracle", _oracle, {"k": 0}, {}))
    slices = [_slice("A", 1, 0), _slice("A", 2, 1), _slice("B", 7, 0)]
    document = evaluate(slices, "oracle").to_dict()
    assert set(document) == {"method", "patients", "slices"}
    assert document["method"] == "oracle"
    # A: slice 1 perfect, slice 2 empty vs 4 px: Dice (1 + 0) / 2, IoU the same.
    assert document["patients"] == {
        "A": {"dice": 0.5, "iou": 0.5, "slices": 2},
        "B": {"dice": 1.0, "iou": 1.0, "slices": 1},
    }
    assert document["slices"][1] == {"patient_id": "A", "slice": 2, "dice": 0.0, "iou": 0.0}
    json.dumps(document)  # JSON-ready


@pytest.fixture(scope="module")
def phantom_root(phantom):
    return phantom(patients=3, slices=6, shape=(64, 64), labelled_every=1, faults=False)


def test_segment_command_json(phantom_root, capsys):
    assert main(["segment", "--quiet", "--json", "--method", "otsu", str(phantom_root)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"method", "patients", "slices"}
    assert document["method"] == "otsu"
    assert set(document["patients"]) == {"PHA00001", "PHA00002", "PHA00003"}
    for stats in document["patients"].values():
        assert set(stats) == {"dice", "iou", "slices"} and stats["slices"] == 3
        assert 0.5 < stats["iou"] < stats["dice"] <= 1.0
    assert len(document["slices"]) == 9
    for row in document["slices"]:
        assert set(row) == {"patient_id", "slice", "dice", "iou"}
    # The per-patient means are the means of the slice rows.
    mine = [r["dice"] for r in document["slices"] if r["patient_id"] == "PHA00002"]
    assert document["patients"]["PHA00002"]["dice"] == pytest.approx(np.mean(mine))


@pytest.mark.slow
def test_segment_command_out_and_study(phantom_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", "--quiet", "--out", str(out), str(phantom_root)]) == 0
    text = capsys.readouterr().out
    assert "method hull" in text and "mean (well-aligned)" in text
    for name in ("slices.csv", "summary.csv", "summary.txt", "evaluation.json"):
        assert (out / name).stat().st_size > 0
    for name in ("best.png", "worst.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (out / "slices.csv").read_text().splitlines()
    assert lines[0].startswith("patient_id,slice,dice,iou") and len(lines) == 10
    study_args = ["segment", "--quiet", "--study", "--method", "hull", "--out", str(out)]
    assert main([*study_args, str(phantom_root)]) == 0
    text = capsys.readouterr().out
    assert "leave-one-patient-out" in text and "dice held-out" in text
    study = json.loads((out / "study.json").read_text())
    assert study["well_aligned"] == ["PHA00001", "PHA00002", "PHA00003"]
    assert set(study["methods"][0]["patients"]) == set(study["well_aligned"])


# ------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def real_slices():
    if not REAL_DATA.exists():
        pytest.skip(REAL_DATA_REASON)
    index = dicontour.scan(REAL_DATA)
    aligned = well_aligned_patients(index)
    return aligned, load_labelled(index, aligned)


@pytest.mark.slow
def test_real_data_default_method_reaches_090_on_every_well_aligned_patient(real_slices):
    aligned, slices = real_slices
    assert aligned == ["SCD0000101", "SCD0000201", "SCD0000301", "SCD0000401"]
    hull = evaluate(slices).patients()
    otsu = evaluate(slices, "otsu").patients()
    for pid in aligned:
        assert hull[pid]["dice"] >= 0.90, pid
        assert hull[pid]["dice"] > otsu[pid]["dice"], pid
    # The baseline figure: Otsu + largest component + holes, 0.84-0.88.
    assert all(0.83 <= otsu[pid]["dice"] <= 0.89 for pid in aligned)


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_real_data_hull_holds_up_held_out(real_slices):
    _, slices = real_slices
    result = leave_one_patient_out(slices, "hull")
    assert result.params == METHODS["hull"].defaults  # the defaults are the in-sample choice
    for row in result.patients:
        assert row.held_out_dice >= 0.90, row
        assert row.held_out_dice <= row.in_sample_dice + 1e-12
