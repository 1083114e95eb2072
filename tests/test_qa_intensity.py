"""dicontour.qa.intensity: overlap statistics by hand, the study and its files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dicontour.cli import main
from dicontour.qa.intensity import (
    histogram_overlap,
    intensity_study,
    oracle_threshold,
    separation_auc,
    write_intensity_report,
)
from dicontour.qa.study import LabelledSlice


def test_separation_auc_by_hand():
    # Pairs (bright, dark): (3,1) 1, (3,3) 0.5, (4,1) 1, (4,3) 1 -> 3.5 / 4.
    assert separation_auc(np.array([3.0, 4.0]), np.array([1.0, 3.0])) == 0.875
    assert separation_auc(np.array([5.0]), np.array([1.0, 2.0])) == 1.0
    assert separation_auc(np.array([1.0]), np.array([5.0])) == 0.0
    assert np.isnan(separation_auc(np.array([]), np.array([1.0])))


def test_histogram_overlap_by_hand():
    assert histogram_overlap(np.array([0.0, 1.0]), np.array([2.0, 3.0]), bins=4) == 0.0
    same = np.array([0.0, 1.0, 2.0, 3.0])
    assert histogram_overlap(same, same, bins=4) == pytest.approx(1.0)
    # Common range 0.5..2.5 in 3 bins: a = (1/2, 1/2, 0), b = (0, 1/2, 1/2): shared 1/2.
    a, b = np.array([0.5, 1.5]), np.array([1.5, 2.5])
    assert histogram_overlap(a, b, bins=3) == pytest.approx(0.5)


def test_oracle_threshold_by_hand():
    image = np.array([[1.0, 5.0, 9.0, 9.0]])
    o_mask = np.ones((1, 4), bool)
    assert oracle_threshold(image, np.array([[0, 0, 1, 1]], bool), o_mask) == (1.0, 7.0)
    # Truth {5, 9} but a 9 outside it: best is > 3 (3 predicted, 2 right): 2*2/(3+2) = 0.8.
    dice, cut = oracle_threshold(image, np.array([[0, 1, 1, 0]], bool), o_mask)
    assert dice == pytest.approx(0.8) and cut == 3.0
    # A truth pixel outside the o-mask can never be predicted.
    dice, _ = oracle_threshold(
        image, np.array([[1, 0, 0, 0]], bool), np.array([[0, 1, 1, 1]], bool)
    )
    assert dice == 0.0


def _ring_slice(pid: str, n: int, blood: float, myo: float) -> LabelledSlice:
    rows, cols = np.mgrid[:32, :32]
    radius = np.hypot(rows - 16, cols - 16)
    i_mask, o_mask = radius <= 6, radius <= 10
    image = np.where(i_mask, blood, np.where(o_mask, myo, 0.0)).astype(np.float32)
    return LabelledSlice(pid, n, image, i_mask, o_mask)


def test_intensity_study_on_separable_and_identical_slices():
    study = intensity_study(
        [
            _ring_slice("A", 1, 300.0, 50.0),
            _ring_slice("A", 2, 200.0, 60.0),
            _ring_slice("B", 1, 80.0, 80.0),
        ]
    )
    rows = {(s.patient_id, s.slice): s for s in study.slices}
    a1 = rows["A", 1]
    assert (a1.blood_mean, a1.myo_mean, a1.blood_sd) == (300.0, 50.0, 0.0)
    assert a1.auc == 1.0 and a1.overlap == 0.0 and a1.oracle_dice == 1.0
    assert 50.0 < a1.oracle_threshold < 300.0
    b1 = rows["B", 1]
    assert b1.auc == 0.5 and b1.overlap == pytest.approx(1.0)
    pooled = {p.patient_id: p for p in study.patients}
    assert pooled["A"].slice is None
    assert pooled["A"].blood_pixels == 2 * a1.blood_pixels
    assert pooled["A"].blood_mean == pytest.approx(250.0)
    assert pooled["A"].auc == 1.0  # 200 and 300 both above 50 and 60


@pytest.mark.slow
def test_write_intensity_report_and_command(tmp_path, capsys, phantom):
    root = phantom(patients=2, slices=4, shape=(64, 64), labelled_every=1, faults=False)
    out = tmp_path / "out"
    assert main(["intensity", "--quiet", "--out", str(out), str(root)]) == 0
    text = capsys.readouterr().out
    assert "PHA00001" in text and "oracle Dice" in text
    for pid in ("PHA00001", "PHA00002"):
        assert (out / "histograms" / f"{pid}.png").read_bytes()[:4] == b"\x89PNG"
    document = json.loads((out / "intensity.json").read_text())
    assert set(document["patients"]) == {"PHA00001", "PHA00002"}
    assert len(document["slices"]) == 4  # slices 1 and 3 of each patient have both contours
    # The phantom's blood (700) and myocardium (250) barely overlap.
    assert all(p["auc"] > 0.95 for p in document["patients"].values())
    assert main(["intensity", "--quiet", "--json", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["well_aligned"] == ["PHA00001", "PHA00002"]
    study, written = write_intensity_report([], tmp_path / "empty")
    assert study.slices == () and all(path.exists() for path in written)
