"""dicontour.scan: pairing, every problem code, nothing lost but what a bad file holds."""

from __future__ import annotations

import os
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import numpy as np
import pytest
from helpers import I_SQUARE, O_SQUARE, RTSTRUCT_CODES, SHAPE, contour_name, write_dicom

import dicontour
from dicontour import CODES, LayoutError, scan
from dicontour.phantom import write_phantom
from dicontour.scan import OUT_OF_BOUNDS_MARGIN, Patient, _PatientScanner, scan_patient


@pytest.fixture(scope="module")
def fault_index(fault_tree):
    return scan(fault_tree.root)


def _found(index) -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in index.problems]


# ------------------------------------------------------------------- fault tree


@pytest.mark.slow
def test_every_problem_code_is_triggered(fault_tree, fault_index):
    codes = {p.code for p in fault_index.problems}
    # Codes that need many slices per patient or the pixels (dicontour check) are
    # triggered on built cases in tests/test_qa_checks.py instead.
    expected = set(CODES) - {
        "contours-misaligned",
        "implausible-area",
        "contour-on-background",
        "duplicate-contour",
        "transform-failed",  # a loader's augmentation: tests/test_loader_augment.py
        # Needs a file over MAX_FILE_BYTES (256 MiB): tests/test_dicom.py lowers the limit.
        "file-too-large",
    }
    # RT Structure Set codes need an RTSTRUCT dataset: tests/test_export.py triggers them.
    expected -= set(RTSTRUCT_CODES)
    # Special files, unlistable folders and files vanishing mid-scan cannot live in a
    # shared tree (copies would block or fail): tests/test_files.py triggers them.
    expected -= {"not-a-regular-file", "unreadable-folder", "missing-contour"}
    # A root seen by the client but not where a patient is scanned: a worker without the
    # mount (tests/test_cluster.py), or scan_patient on another root (below).
    expected -= {"root-unreachable"}
    if not any(code == "broken-link" for code, _ in fault_tree.problems):
        expected -= {"broken-link", "link-outside-root"}  # no symlinks on this system
    assert codes == expected


def test_exactly_the_expected_problems(fault_tree, fault_index):
    found = _found(fault_index)
    assert len(found) == len(set(found)), "a finding is reported twice"
    assert set(found) == fault_tree.problems


def test_severities_follow_the_codes(fault_index):
    for p in fault_index.problems:
        assert p.severity == CODES[p.code][0]
        assert p.message.strip()
    # Errors are the data losses; warnings and infos lose nothing.
    assert {p.code for p in fault_index.errors()} == {
        code for code in {p.code for p in fault_index.problems} if CODES[code][0] == "error"
    }


def test_problem_paths_are_relative_with_forward_slashes(fault_tree, fault_index):
    for p in fault_index.problems:
        assert "\\" not in p.path and not p.path.startswith("/") and ".." not in p.path
        absent = p.code in ("missing-patient-folder", "missing-contour-folder")
        assert (
            (fault_tree.root / p.path).exists()
            or absent
            or os.path.islink(fault_tree.root / p.path)
        ), p


def test_problem_messages_say_what_and_where(fault_index):
    by_path = {p.path: p for p in fault_index.problems}
    assert "line 3" in by_path[f"contourfiles/O1/{contour_name('i', 2)}"].message
    assert "truncated" in by_path["dicoms/P1/9.dcm"].message
    assert "i-contour not used" in by_path["dicoms/P1/9.dcm"].message
    assert "60000x60000" in by_path["dicoms/P1/11.dcm"].message
    assert "99" in by_path["dicoms/P1/12.dcm"].message
    assert "24x24" in by_path["dicoms/P5/3.dcm"].message
    mismatch = by_path["dicoms/P1/12.dcm"]
    assert (mismatch.patient_id, mismatch.slice) == ("P1", 12)


def test_exactly_the_good_samples_are_kept(fault_tree, fault_index):
    found = {
        (r.patient_id, r.slice): (r.i_contour is not None, r.o_contour is not None)
        for r in fault_index
    }
    assert found == fault_tree.samples
    assert len(fault_index) == len(fault_tree.samples)


def test_broken_i_contour_keeps_the_o_contour_sample(fault_index):
    record = next(r for r in fault_index if (r.patient_id, r.slice) == ("P1", 2))
    assert record.i_contour is None
    assert record.o_contour == f"contourfiles/O1/{contour_name('o', 2)}"
    assert record.dicom == "dicoms/P1/2.dcm"
    assert record.original_id == "O1"


def test_sample_paths_are_relative_and_exist(fault_tree, fault_index):
    for record in fault_index:
        for path in (record.dicom, record.i_contour, record.o_contour):
            if path is not None:
                assert not path.startswith("/") and "\\" not in path
                assert (fault_tree.root / path).is_file()
        assert record.shape == ((24, 24) if record.dicom == "dicoms/P5/3.dcm" else SHAPE)


def test_summary_counts(fault_tree, fault_index):
    summary = fault_index.summary
    samples = fault_tree.samples.values()
    assert summary["patients"] == fault_tree.patients
    assert summary["dicoms"] == fault_tree.dicoms
    assert summary["unlabelled_slices"] == fault_tree.unlabelled
    assert summary["labelled_slices"] == len(fault_tree.samples)
    assert summary["i_contours"] == sum(i for i, _ in samples)
    assert summary["o_contours"] == sum(o for _, o in samples)
    assert summary["both_contours"] == sum(i and o for i, o in samples)
    codes = [code for code, _ in fault_tree.problems]
    assert summary["problems"] == {code: codes.count(code) for code in sorted(set(codes))}
    assert sum(summary["severity"].values()) == len(fault_tree.problems)
    p1 = summary["per_patient"]["P1"]
    unlabelled = 2 + (fault_tree.unlabelled - 4)  # 17 and 18; 16 too when its link exists
    assert (p1["dicoms"], p1["labelled_slices"], p1["unlabelled_slices"]) == (20, 5, unlabelled)
    assert (p1["i_contours"], p1["o_contours"]) == (3, 4)
    assert set(summary["per_patient"]) == {"P1", "P2", "P5"}


def test_problems_sorted_by_path(fault_index):
    keys = [(p.path, p.code) for p in fault_index.problems]
    assert keys == sorted(keys)


@pytest.mark.slow
def test_scan_is_deterministic_and_mapper_agnostic(fault_tree, fault_index):
    with ThreadPoolExecutor(2) as pool:
        threaded = scan(fault_tree.root, mapper=pool.map)
    assert _found(threaded) == _found(fault_index)
    assert list(threaded.samples) == list(fault_index.samples)
    assert threaded.summary == fault_index.summary


def test_patient_scanner_pickles(fault_tree):
    worker = pickle.loads(
        pickle.dumps(_PatientScanner(dicontour.storage.location(fault_tree.root)))
    )
    result = worker(Patient("P5", "O5"))
    assert [r.slice for r in result.records] == [1, 2, 3]
    assert result == scan_patient(fault_tree.root, Patient("P5", "O5"))


@pytest.mark.slow
def test_progress_bar_does_not_change_the_result(fault_tree, fault_index, capsys):
    assert _found(scan(fault_tree.root, progress=True)) == _found(fault_index)
    assert capsys.readouterr().out == ""  # the bar goes to stderr


@pytest.mark.slow
def test_same_result_through_fsspec(fault_tree, fault_index):
    """A non-local root (fsspec memory filesystem) is read through file objects."""
    fs = fsspec.filesystem("memory")
    target = "/dicontour-scan-test"
    try:
        for path in sorted(fault_tree.root.rglob("*")):
            relative = path.relative_to(fault_tree.root).as_posix()
            if path.is_symlink() or not path.is_file():
                continue
            fs.pipe(f"{target}/{relative}", path.read_bytes())
        remote = scan(f"memory://{target}")
        links = ("broken-link", "link-outside-root")  # the copy leaves links out
        local = [(c, p) for c, p in _found(fault_index) if c not in links]
        assert _found(remote) == local
        assert [r.to_dict() for r in remote] == [r.to_dict() for r in fault_index]
        k = next(k for k, r in enumerate(remote) if r.i_contour and r.o_contour)
        a, b = remote.load(k), fault_index.load(k)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.i_mask, b.i_mask)
    finally:
        if fs.exists(target):
            fs.rm(target, recursive=True)


# ------------------------------------------------------------- targeted checks


def _tree(root: Path, contours: dict[str, str], *, shape=SHAPE, slices=(1,)) -> Path:
    """One patient P/O; ``contours`` maps 'i1', 'o1', ... to file contents."""
    (root / "dicoms/P").mkdir(parents=True)
    (root / "link.csv").write_text("patient_id,original_id\nP,O\n")
    for n in slices:
        write_dicom(root / f"dicoms/P/{n}.dcm", np.zeros(shape, np.int16), InstanceNumber=n)
    for key, text in contours.items():
        path = root / "contourfiles/O" / contour_name(key[0], int(key[1:]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _codes(index) -> list[str]:
    return [p.code for p in index.problems]


@pytest.mark.parametrize(
    ("corner", "outside"),
    [
        ((-0.5 - OUT_OF_BOUNDS_MARGIN, 5), False),
        ((-0.5 - OUT_OF_BOUNDS_MARGIN - 0.01, 5), True),
        ((5, -0.5 - OUT_OF_BOUNDS_MARGIN), False),
        ((5, -0.5 - OUT_OF_BOUNDS_MARGIN - 0.01), True),
        ((SHAPE[1] - 0.5 + OUT_OF_BOUNDS_MARGIN, 5), False),
        ((SHAPE[1] - 0.5 + OUT_OF_BOUNDS_MARGIN + 0.01, 5), True),
        ((5, SHAPE[0] - 0.5 + OUT_OF_BOUNDS_MARGIN), False),
        ((5, SHAPE[0] - 0.5 + OUT_OF_BOUNDS_MARGIN + 0.01), True),
    ],
)
def test_out_of_bounds_margin(tmp_path, corner, outside):
    # Pixel centres run 0..31, the image's edge is at -0.5 and 31.5; a contour may
    # reach one pixel past that edge.
    text = f"10 10\n{corner[0]} {corner[1]}\n20 20\n"
    index = scan(_tree(tmp_path, {"i1": text}))
    assert _codes(index) == (["out-of-bounds"] if outside else [])
    assert len(index) == (0 if outside else 1)


@pytest.mark.parametrize(
    ("inner", "warn"),
    [
        ("8 8\n8 20\n20 20\n20 8\n", False),  # 144 pixels, all inside O_SQUARE
        ("3 8\n3 20\n20 20\n20 8\n", True),  # columns 3..19: 12 of 204 pixels (6%) outside
        ("4 8\n4 20\n20 20\n20 8\n", False),  # columns 4..19: on O_SQUARE's edge, inside
    ],
)
def test_i_outside_o_tolerance(tmp_path, inner, warn):
    index = scan(_tree(tmp_path, {"i1": inner, "o1": O_SQUARE}))
    assert _codes(index) == (["i-outside-o"] if warn else [])
    assert len(index) == 1 and index[0].i_contour and index[0].o_contour


def test_o_contour_without_i_contour(tmp_path):
    index = scan(_tree(tmp_path, {"o1": O_SQUARE}))
    assert _codes(index) == []
    assert (index[0].i_contour, index[0].o_contour) == (None, index[0].o_contour)
    assert index.summary["o_contours"] == 1 and index.summary["i_contours"] == 0


def test_two_files_for_one_slice_are_reported(tmp_path):
    root = _tree(tmp_path, {"i1": I_SQUARE}, slices=(1, 2))
    shutil.copy(root / "dicoms/P/2.dcm", root / "dicoms/P/02.dcm")
    (root / "contourfiles/O/i-contours/IM-0002-0001-icontour-manual.txt").write_text(O_SQUARE)
    index = scan(root)
    assert sorted(_found(index)) == [
        ("stray-file", "contourfiles/O/i-contours/IM-0002-0001-icontour-manual.txt"),
        ("stray-file", "dicoms/P/2.dcm"),  # sorted names: 02.dcm comes first and is kept
    ]
    assert index[0].i_contour == f"contourfiles/O/{contour_name('i', 1)}"


def test_files_beside_the_patient_folders_are_stray(tmp_path):
    root = _tree(tmp_path, {"i1": I_SQUARE})
    (root / "dicoms/1.dcm").write_bytes(b"not where slices belong")
    (root / "contourfiles/list.txt").write_text("O\n")
    (root / "dicoms/.hidden").write_text("")
    index = scan(root)
    assert sorted(_found(index)) == [
        ("stray-file", "contourfiles/list.txt"),
        ("stray-file", "dicoms/1.dcm"),
    ]
    assert len(index) == 1


def test_hidden_top_level_entries_are_ignored(tmp_path):
    root = _tree(tmp_path, {"i1": I_SQUARE})
    (root / ".DS_Store").write_bytes(b"\0")
    (root / ".git").mkdir()
    assert _codes(scan(root)) == []


@pytest.mark.slow
def test_fuzzed_files_never_make_the_scan_raise(tmp_path):
    """Random damage to one file loses at most that file's slice."""
    root = _tree(
        tmp_path / "data",
        {"i1": I_SQUARE, "i2": I_SQUARE, "o2": O_SQUARE, "i3": I_SQUARE},
        slices=(1, 2, 3),
    )
    victims = ["dicoms/P/1.dcm", f"contourfiles/O/{contour_name('i', 1)}"]
    originals = {v: (root / v).read_bytes() for v in victims}
    rng = np.random.default_rng(7)
    for trial in range(40):
        victim = victims[trial % 2]
        data = bytearray(originals[victim])
        how = trial % 4
        if how == 0:
            data = data[: rng.integers(0, len(data))]
        elif how == 1:
            for k in rng.integers(0, len(data), 8):
                data[k] = int(rng.integers(0, 256))
        elif how == 2:
            data = bytearray(rng.integers(0, 256, rng.integers(0, 600)).astype(np.uint8))
        else:
            data += bytes(rng.integers(0, 256, 50).astype(np.uint8))
        (root / victim).write_bytes(bytes(data))
        index = scan(root)  # must not raise
        assert all(p.code in CODES for p in index.problems)
        kept = {(r.slice, r.i_contour is not None, r.o_contour is not None) for r in index}
        assert {(2, True, True), (3, True, False)} <= kept, (trial, _found(index))
        for record in index:
            sample = index.load(record_index(index, record))
            assert sample.image.shape == record.shape
        (root / victim).write_bytes(originals[victim])


def record_index(index, record) -> int:
    return list(index.samples).index(record)


# --------------------------------------------------------------- unusable roots


def test_missing_root(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        scan(tmp_path / "nowhere")


def test_root_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LayoutError, match="not a folder"):
        scan(tmp_path / "file")


def test_no_link_csv(tmp_path):
    (tmp_path / "dicoms").mkdir()
    with pytest.raises(LayoutError, match=r"no link\.csv"):
        scan(tmp_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "first line must be 'patient_id,original_id'"),
        ("id,folder\nP,O\n", "first line must be 'patient_id,original_id'"),
        ("\n\n", "first line must be 'patient_id,original_id'"),
        ("P,O\npatient_id,original_id\n", "first line must be 'patient_id,original_id'"),
        (b"\xff\xfe,original_id\nP,O\n", "first line must be 'patient_id,original_id'"),
    ],
    ids=["empty", "bad-header", "blank-lines-only", "header-not-first", "header-not-utf8"],
)
def test_malformed_link_csv(tmp_path, text, match):
    if isinstance(text, bytes):
        (tmp_path / "link.csv").write_bytes(text)
    else:
        (tmp_path / "link.csv").write_text(text)
    with pytest.raises(LayoutError, match=match) as info:
        scan(tmp_path)
    assert "link.csv" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, dicontour.DicontourError)


def test_link_csv_tolerates_bom_crlf_blank_rows_and_spaces(tmp_path):
    root = _tree(tmp_path, {"i1": I_SQUARE})
    (root / "link.csv").write_bytes(
        "\ufeffpatient_id , original_id\r\n\r\n P , O \r\n,\r\n".encode()
    )
    index = scan(root)
    assert _codes(index) == [] and len(index) == 1


def test_link_csv_with_old_mac_line_ends(tmp_path):
    root = _tree(tmp_path, {"i1": I_SQUARE})
    (root / "link.csv").write_bytes(b"patient_id,original_id\rP,O\r")
    index = scan(root)
    assert _codes(index) == [] and len(index) == 1


def test_empty_dataset(tmp_path):
    (tmp_path / "link.csv").write_text("patient_id,original_id\n")
    index = scan(tmp_path)
    assert len(index) == 0 and index.problems == ()
    assert index.summary["patients"] == 0 and index.summary["dicoms"] == 0


# -------------------------------------------------------------------- phantom


def test_phantom_faults_are_found(tmp_path):
    phantom = pytest.importorskip("dicontour.phantom", reason="dicontour.phantom not written yet")
    info = phantom.write_phantom(tmp_path / "ph", patients=2, slices=8, shape=(48, 48), seed=3)
    index = scan(info.root)
    found = set(_found(index))
    assert set(info.faults) <= found
    assert index.summary["i_contours"] == info.i_contours
    assert index.summary["o_contours"] == info.o_contours
    assert index.summary["dicoms"] == info.dicoms
    # Everything found beyond the listed faults is a by-product the docs name.
    assert {code for code, _ in found - set(info.faults)} <= {"missing-contour-folder"}


def test_clean_phantom_has_no_problems(tmp_path):
    phantom = pytest.importorskip("dicontour.phantom", reason="dicontour.phantom not written yet")
    info = phantom.write_phantom(
        tmp_path / "ph", patients=2, slices=6, shape=(40, 40), faults=False
    )
    index = scan(info.root)
    assert index.problems == ()
    assert len(index.select("i")) == info.i_contours
    assert len(index.select("o")) == info.o_contours


def test_folders_of_a_duplicate_row_are_not_called_unnamed(tmp_path):
    root = _tree(tmp_path, {"i1": I_SQUARE})
    (root / "link.csv").write_text("patient_id,original_id\nP,O\nQ,O\n")
    (root / "dicoms/Q").mkdir()
    write_dicom(root / "dicoms/Q/1.dcm", np.zeros(SHAPE, np.int16))
    index = scan(root)
    assert _found(index) == [("duplicate-link", "link.csv")]
    assert "Q,O" in index.problems[0].message
    assert [r.patient_id for r in index] == ["P"]


# ------------------------------------------------------- codes and locations


def test_codes_are_stable_kebab_case_with_a_fixed_severity():
    from dicontour.problems import problem

    for code, (severity, meaning) in CODES.items():
        assert code == code.lower() and " " not in code and "_" not in code
        assert severity in ("error", "warning", "info") and meaning
        assert problem(code, "x", "y").severity == severity
    with pytest.raises(ValueError, match="unknown problem code"):
        problem("no-such-code", "x", "y")


def test_location_of_paths_and_urls(tmp_path):
    from dicontour.storage import Location, location

    local = location(tmp_path)
    assert local.is_local and local.url == str(tmp_path)
    assert local.path("dicoms/P/1.dcm") == f"{tmp_path}/dicoms/P/1.dcm"
    assert location(local) is local
    relative = location(".")
    assert os.path.isabs(relative.url)
    secret = Location("s3://user:password@bucket/data")
    assert secret.redacted() == "s3://bucket/data"
    assert Location("s3://bucket/a@b").redacted() == "s3://bucket/a@b"
    copy = pickle.loads(pickle.dumps(local))
    assert copy == local and copy.is_local
    (tmp_path / "f.txt").write_bytes(b"abc")
    with copy.open("f.txt") as handle:
        assert handle.read() == b"abc"


def test_a_patient_scanned_where_the_root_cannot_be_seen_is_a_problem(tmp_path):
    """What a cluster worker without the client's disk finds: not an empty patient."""
    write_phantom(tmp_path / "data", patients=1, slices=4, shape=(32, 32), faults=False)
    patient = Patient("PHA00001", "PH-1")
    assert scan_patient(tmp_path / "data", patient).dicoms == 4
    unseen = scan_patient(tmp_path / "elsewhere", patient)
    assert (unseen.dicoms, unseen.records) == (0, [])
    [found] = unseen.problems
    assert (found.code, found.severity, found.path) == (
        "root-unreachable",
        "error",
        "dicoms/PHA00001",
    )
    assert "elsewhere" in found.message and "same mount" in found.message


def test_a_patient_folder_gone_during_the_scan_is_a_problem_but_an_empty_one_is_not(tmp_path):
    write_phantom(tmp_path, patients=2, slices=4, shape=(32, 32), faults=False)
    shutil.rmtree(tmp_path / "dicoms/PHA00001")
    [gone] = scan_patient(tmp_path, Patient("PHA00001", "PH-1")).problems
    assert (gone.code, gone.path) == ("missing-patient-folder", "dicoms/PHA00001")
    for dicom in (tmp_path / "dicoms/PHA00002").iterdir():
        dicom.unlink()
    empty = scan_patient(tmp_path, Patient("PHA00002", "PH-2"))
    assert empty.dicoms == 0 and {p.code for p in empty.problems} <= {"missing-dicom"}
