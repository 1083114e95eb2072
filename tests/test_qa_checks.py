"""dicontour.qa.checks: each consistency check on built cases, in the scan and on pixels."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import REAL_DATA, REAL_DATA_REASON, RTSTRUCT_CODES, copy_dataset, write_dicom
from hypothesis import given, settings
from hypothesis import strategies as st

import dicontour
from dicontour import CODES, scan
from dicontour.cli import main
from dicontour.dicom import DicomHeader
from dicontour.index import SampleRecord
from dicontour.qa.checks import (
    AREA_FACTOR,
    background_mask,
    check_index,
    check_patient,
    measure_slice,
    with_problems,
)
from dicontour.raster import polygon_to_mask

SHAPE = (40, 40)


def _record(n: int, pid: str = "P1", shape=SHAPE, i=True, o=True) -> SampleRecord:
    header = DicomHeader(shape[0], shape[1], (1.5, 1.5), n, None, 1.0, 0.0, "")
    return SampleRecord(
        pid,
        "O" + pid[1:],
        n,
        f"dicoms/{pid}/{n}.dcm",
        f"contourfiles/O{pid[1:]}/i-contours/IM-0001-{n:04d}-icontour-manual.txt" if i else None,
        f"contourfiles/O{pid[1:]}/o-contours/IM-0001-{n:04d}-ocontour-manual.txt" if o else None,
        header,
    )


def _square(x0: float, y0: float, side: float) -> np.ndarray:
    """Corners (x, y) of a square; its mask is side x side pixels (half-open rule)."""
    return np.array([(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side)], float)


def _codes(problems):
    return [p.code for p in problems]


# ------------------------------------------------------------------ geometry (in the scan)


def test_i_outside_o_reports_the_fraction_outside():
    # i: cols 10..19 x rows 10..19 (100 px); o: cols 5..16 x rows 5..24, so cols 17..19
    # of the i-square (3 x 10 = 30 px) are outside: 30%.
    polygons = {1: {"i": _square(10, 10, 10), "o": np.array([(5, 5), (17, 5), (17, 25), (5, 25)])}}
    found = check_patient([_record(1)], polygons)
    assert _codes(found) == ["i-outside-o"]
    assert found[0].message.startswith("30% of the i-contour's mask lies outside")
    assert found[0].path.endswith("IM-0001-0001-icontour-manual.txt")
    assert (found[0].patient_id, found[0].slice) == ("P1", 1)


def test_i_outside_o_tolerates_two_percent():
    # 100-px i-square with 2 px outside (2%) is within the tolerance; 3 px (3%) is not.
    inner = _square(10, 10, 10)
    for outside, flagged in ((2, False), (3, True)):
        # o: rows 11..29 x cols 8..29, plus row 10 from col 10 + outside on: the first
        # `outside` pixels of the i-square's top row (row 10) are left out.
        outer = np.array(
            [(8, 11), (10 + outside, 11), (10 + outside, 10), (30, 10), (30, 30), (8, 30)]
        )
        found = check_patient([_record(1)], {1: {"i": inner, "o": outer}})
        assert ("i-outside-o" in _codes(found)) is flagged, outside


def _patient(count: int, shifted: set[int], pid: str = "P1"):
    records, polygons = [], {}
    for n in range(1, count + 1):
        records.append(_record(n, pid))
        dx = 9 if n in shifted else 0  # o moved right by 9 px: i-columns 12..16 left out
        polygons[n] = {"i": _square(12, 12, 10), "o": _square(8 + dx, 8, 18)}
    return records, polygons


def test_contours_misaligned_is_one_line_per_patient_when_most_slices_disagree():
    records, polygons = _patient(4, shifted={1, 2, 3})
    found = check_patient(records, polygons)
    assert _codes(found).count("i-outside-o") == 3
    lines = [p for p in found if p.code == "contours-misaligned"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.patient_id, line.slice, line.path) == ("P1", None, "contourfiles/O1")
    assert "3 of 4 slices" in line.message
    # i-square centre x 16.5; o-square centre 16.5 + 9 = 25.5 for the shifted ones;
    # the median over the 4 slices (0, 9, 9, 9) is 9 px, 13.5 mm at 1.5 mm/px.
    assert "median 9.0 px (13.5 mm) apart" in line.message


def test_one_bad_slice_is_not_a_misaligned_patient():
    records, polygons = _patient(4, shifted={2})
    assert _codes(check_patient(records, polygons)) == ["i-outside-o"]


def _areas_patient(sides: list[float], kind: str = "i"):
    records, polygons = [], {}
    for n, side in enumerate(sides, start=1):
        records.append(_record(n, shape=(120, 120), o=False, i=True))
        polygons[n] = {kind: _square(2, 2, side)}
    return records, polygons


def test_implausible_area_flags_the_outlier_only():
    # Areas 100..400 px (sides 10..20) over six slices, then one of 60 x 60 = 3600 px:
    # over 3 x 400.  And one of 3 x 3 = 9 px: under 100 / 3.
    records, polygons = _areas_patient([10, 12, 14, 16, 18, 20, 60, 3])
    found = [p for p in check_patient(records, polygons) if p.code == "implausible-area"]
    assert {(p.slice, p.path.split("/")[-2]) for p in found} == {
        (7, "i-contours"),
        (8, "i-contours"),
    }
    messages = {p.slice: p.message for p in found}
    assert "area 3600 px is over 3x the largest (400 px)" in messages[7]
    assert "area 9 px is under 1/3 of the smallest (100 px)" in messages[8]


def test_implausible_area_keeps_the_patients_natural_range():
    # Base to apex: 10x the area across slices, but no slice beyond 3x its neighbours' range.
    sides = [8, 10, 13, 16, 20, 25]  # 64 .. 625 px
    records, polygons = _areas_patient(sides)
    assert _codes(check_patient(records, polygons)) == []
    assert AREA_FACTOR == 3.0


def test_implausible_area_needs_enough_other_contours():
    records, polygons = _areas_patient([10, 10, 10, 10, 60])  # 4 others: not judged
    assert _codes(check_patient(records, polygons)) == []
    records, polygons = _areas_patient([10, 10, 10, 10, 10, 60])  # 5 others: judged
    assert _codes(check_patient(records, polygons)) == ["implausible-area"]


def test_shape_mismatch_still_reported():
    records = [_record(1), _record(2), _record(3, shape=(30, 30))]
    polygons = {n: {"i": _square(2, 2, 5), "o": _square(1, 1, 8)} for n in (1, 2, 3)}
    found = check_patient(records, polygons)
    assert _codes(found) == ["shape-mismatch"]
    assert found[0].path == "dicoms/P1/3.dcm"


def _phantom(phantom: Callable[..., Path], tmp_path: Path, **kwargs) -> Path:
    """A private copy of the session's phantom, which the test may modify."""
    options = dict(patients=2, slices=8, shape=(64, 64), labelled_every=1, faults=False, seed=3)
    options.update(kwargs)
    return copy_dataset(phantom(**options), tmp_path / "data")


def test_scan_of_a_patient_with_shifted_o_contours(phantom, tmp_path):
    root = _phantom(phantom, tmp_path)
    # Move every o-contour of PHA00002 down by 15 rows; PHA00001 stays clean.
    folder = root / "contourfiles/PH-2/o-contours"
    for path in sorted(folder.iterdir()):
        points = np.loadtxt(path)
        np.savetxt(path, points + np.array([0.0, 15.0]), fmt="%.1f")
    index = scan(root)
    per_patient = index.summary["per_patient"]
    assert per_patient["PHA00001"]["problems"] == {}
    o_slices = per_patient["PHA00002"]["o_contours"]
    assert per_patient["PHA00002"]["problems"] == {
        "i-outside-o": o_slices,
        "contours-misaligned": 1,
    }
    line = next(p for p in index.problems if p.code == "contours-misaligned")
    assert line.patient_id == "PHA00002" and f"{o_slices} of {o_slices} slices" in line.message


def test_clean_phantom_has_no_consistency_findings(phantom, tmp_path):
    index = scan(_phantom(phantom, tmp_path))
    assert index.problems == ()
    assert check_index(index) == []


# ------------------------------------------------------------------ pixel checks


def test_background_mask_separates_air_from_dark_tissue():
    rng = np.random.default_rng(0)
    image = np.abs(rng.normal(0, 3, (40, 40)))  # air: noise near zero
    image[8:32, 8:32] = rng.normal(50, 10, (24, 24))  # dark myocardium-like tissue
    image[14:26, 14:26] = rng.normal(300, 30, (12, 12))  # bright blood
    mask = background_mask(image)
    assert not mask[8:32, 8:32].any()
    assert mask[:6, :].mean() > 0.95


def test_contour_on_background_and_duplicate_contour(phantom, tmp_path):
    root = _phantom(phantom, tmp_path)
    # Slice 3's i-contour of PHA00001 moved to the image's top-left corner (air).
    corner = root / "contourfiles/PH-1/i-contours/IM-0001-0003-icontour-manual.txt"
    corner.write_text("1 1\n9 1\n9 9\n1 9\n")
    # Slice 5's o-contour of PHA00001 copied over PHA00002's slice 5 o-contour.
    source = root / "contourfiles/PH-1/o-contours/IM-0001-0005-ocontour-manual.txt"
    copy = root / "contourfiles/PH-2/o-contours/IM-0001-0005-ocontour-manual.txt"
    shutil.copyfile(source, copy)
    index = scan(root)
    found = check_index(index)
    background = [p for p in found if p.code == "contour-on-background"]
    assert [(p.patient_id, p.slice, p.path) for p in background] == [
        ("PHA00001", 3, "contourfiles/PH-1/i-contours/IM-0001-0003-icontour-manual.txt")
    ]
    assert background[0].message.startswith("100% of the i-contour's mask")
    duplicates = sorted((p.patient_id, p.slice) for p in found if p.code == "duplicate-contour")
    assert duplicates == [("PHA00001", 5), ("PHA00002", 5)]
    merged = with_problems(index, found)
    assert merged.summary["problems"]["duplicate-contour"] == 2
    assert merged.summary["per_patient"]["PHA00001"]["problems"]["contour-on-background"] == 1
    assert len(merged.problems) == len(index.problems) + len(found)


def test_check_command_reports_pixel_problems(phantom, tmp_path, capsys):
    root = _phantom(phantom, tmp_path)
    (root / "contourfiles/PH-1/i-contours/IM-0001-0002-icontour-manual.txt").write_text(
        "1 1\n9 1\n9 9\n1 9\n"
    )
    assert main(["check", "--quiet", str(root)]) == 0
    out = capsys.readouterr().out
    assert "contour-on-background" in out and "IM-0001-0002-icontour" in out
    assert main(["check", "--quiet", "--json", str(root)]) == 0
    assert '"contour-on-background"' in capsys.readouterr().out


def test_check_index_reports_a_file_changed_since_the_scan(phantom, tmp_path):
    root = _phantom(phantom, tmp_path)
    index = scan(root)
    (root / "dicoms/PHA00001/1.dcm").write_bytes(b"gone")
    found = check_index(index)
    assert [(p.code, p.path) for p in found] == [("unreadable-dicom", "dicoms/PHA00001/1.dcm")]


@pytest.mark.slow
def test_every_code_is_exercised(phantom, fault_tree, tmp_path, monkeypatch):
    """With test_scan's fault tree, the built cases here trigger every code in CODES."""
    found = {p.code for p in scan(fault_tree.root).problems}
    with monkeypatch.context() as patch:  # files over 256 MiB, without writing one
        patch.setattr(dicontour.dicom, "MAX_FILE_BYTES", 1000)
        found |= {p.code for p in scan(fault_tree.root).problems}
    records, polygons = _patient(4, shifted={1, 2, 3})
    found |= set(_codes(check_patient(records, polygons)))
    records, polygons = _areas_patient([10, 12, 14, 16, 18, 20, 60])
    found |= set(_codes(check_patient(records, polygons)))
    root = _phantom(phantom, tmp_path)
    (root / "contourfiles/PH-1/i-contours/IM-0001-0003-icontour-manual.txt").write_text(
        "1 1\n9 1\n9 9\n1 9\n"
    )
    shutil.copyfile(
        root / "contourfiles/PH-1/o-contours/IM-0001-0005-ocontour-manual.txt",
        root / "contourfiles/PH-2/o-contours/IM-0001-0005-ocontour-manual.txt",
    )
    found |= {p.code for p in check_index(scan(root))}
    # Triggered in tests/test_files.py (special files, unlistable folders, races).
    found |= {"not-a-regular-file", "unreadable-folder", "missing-contour"}
    if not any(code == "broken-link" for code, _ in fault_tree.problems):
        found |= {"broken-link", "link-outside-root"}  # no symlinks on this system
    found.add("transform-failed")  # the loader's: tests/test_loader_augment.py
    found.add("root-unreachable")  # a worker without the mount: tests/test_scan.py, test_cluster.py
    # An RTSTRUCT scan's: tests/test_export.py (test_bad_rtstruct_is_one_problem and
    # test_second_contour_on_a_slice_is_an_extra_contour).
    found |= set(RTSTRUCT_CODES)
    assert found == set(CODES)


def test_write_dicom_fixture_slices_are_checked_without_pixels_in_the_scan(tmp_path):
    # The scan's checks use polygons only: a DICOM whose pixels are garbage after the
    # header still scans (header-only) and gets the geometry checks.
    root = tmp_path / "data"
    (root / "dicoms/P1").mkdir(parents=True)
    (root / "contourfiles/O1/i-contours").mkdir(parents=True)
    (root / "contourfiles/O1/o-contours").mkdir(parents=True)
    (root / "link.csv").write_text("patient_id,original_id\nP1,O1\n")
    for n in (1, 2):
        write_dicom(root / f"dicoms/P1/{n}.dcm", np.zeros(SHAPE, np.int16), InstanceNumber=n)
        (root / f"contourfiles/O1/i-contours/IM-0001-{n:04d}-icontour-manual.txt").write_text(
            "10 10\n20 10\n20 20\n10 20\n"
        )
        (root / f"contourfiles/O1/o-contours/IM-0001-{n:04d}-ocontour-manual.txt").write_text(
            "19 8\n30 8\n30 22\n19 22\n"
        )
    index = scan(root)
    assert sorted(_codes(index.problems)) == ["contours-misaligned", "i-outside-o", "i-outside-o"]
    # 9 of the 10 i-columns (10..18) lie left of the o-contour's first column (19).
    assert all(p.message.startswith("90%") for p in index.problems if p.code == "i-outside-o")


# ------------------------------------------------------------------ real data


@pytest.mark.skipif(not REAL_DATA.exists(), reason=REAL_DATA_REASON)
def test_real_data_warnings_per_patient():
    index = dicontour.scan(REAL_DATA)
    counts = {pid: stats["problems"] for pid, stats in index.summary["per_patient"].items()}
    misaligned = [pid for pid, codes in counts.items() if "contours-misaligned" in codes]
    assert misaligned == ["SCD0000501"]  # found by the rule, not named in the code
    assert counts["SCD0000501"] == {"i-outside-o": 9, "contours-misaligned": 1}
    o_slices = index.summary["per_patient"]["SCD0000501"]["o_contours"]
    assert counts["SCD0000501"]["i-outside-o"] == o_slices  # every o-slice flagged
    for pid in ("SCD0000101", "SCD0000201", "SCD0000301", "SCD0000401"):
        assert counts[pid] == {}, pid


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-3, 23), st.floats(-3, 19)), min_size=3, max_size=8),
    st.lists(st.tuples(st.floats(-3, 23), st.floats(-3, 19)), min_size=3, max_size=8),
)
def test_measure_slice_matches_full_image_masks(inner, outer):
    # measure_slice rasterises a shifted box only; it must agree with the full image.
    record = _record(1, shape=(16, 20))
    points = {"i": np.array(inner), "o": np.array(outer)}
    found = measure_slice(record, points)
    masks = {kind: polygon_to_mask(p, (16, 20)) for kind, p in points.items()}
    for kind, mask in masks.items():
        assert found.areas[kind] == int(mask.sum())
        if mask.any():
            rows, cols = np.nonzero(mask)
            assert found.centres[kind] == pytest.approx((rows.mean(), cols.mean()))
    expected = (masks["i"] & ~masks["o"]).sum() / masks["i"].sum() if masks["i"].any() else 0.0
    assert found.i_outside == pytest.approx(expected)
