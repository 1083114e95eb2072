"""Tests of the synthetic dataset writer, checked with independent readers."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.path import Path as MplPath
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from dicontour.phantom import PhantomInfo, phantom_slice, write_phantom

SHAPE = (64, 80)
LINE = re.compile(r"^-?\d+\.\d{2} -?\d+\.\d{2}$")
NAME = re.compile(r"^IM-0001-(\d{4})-([io])contour-manual\.txt$")


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _points(path: Path) -> np.ndarray:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return np.array([[float(x), float(y)] for x, y in rows])


def _link(root: Path) -> list[tuple[str, str]]:
    with open(root / "link.csv", newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["patient_id", "original_id"]
        return [(row[0], row[1]) for row in reader]


def _decodes(path: Path) -> bool:
    try:
        pydicom.dcmread(path).pixel_array  # noqa: B018
    except Exception:
        return False
    return True


def _pixel_mask(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    centres = np.column_stack([cols.ravel(), rows.ravel()])  # (x, y) = (col, row)
    return MplPath(polygon).contains_points(centres).reshape(shape)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhantomInfo]:
    root = tmp_path_factory.mktemp("clean") / "data"
    info = write_phantom(root, patients=3, slices=12, shape=SHAPE, faults=False, seed=7)
    return root, info


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhantomInfo]:
    root = tmp_path_factory.mktemp("faulty") / "data"
    info = write_phantom(root, patients=3, slices=12, shape=SHAPE, faults=True, seed=7)
    return root, info


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    kwargs = {"patients": 2, "slices": 6, "shape": SHAPE, "seed": 3}
    write_phantom(tmp_path / "a", **kwargs)
    write_phantom(tmp_path / "b", **kwargs)
    first, second = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert len(first) > 12
    assert first == second


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    write_phantom(tmp_path / "a", patients=1, slices=4, shape=SHAPE, faults=False, seed=1)
    write_phantom(tmp_path / "b", patients=1, slices=4, shape=SHAPE, faults=False, seed=2)
    for n in range(1, 5):
        a = pydicom.dcmread(tmp_path / "a" / "dicoms" / "PHA00001" / f"{n}.dcm")
        b = pydicom.dcmread(tmp_path / "b" / "dicoms" / "PHA00001" / f"{n}.dcm")
        assert not np.array_equal(a.pixel_array, b.pixel_array)
        assert a.SOPInstanceUID != b.SOPInstanceUID


def test_layout_and_link_csv(clean: tuple[Path, PhantomInfo]) -> None:
    root, info = clean
    assert _link(root) == [("PHA00001", "PH-1"), ("PHA00002", "PH-2"), ("PHA00003", "PH-3")]
    assert info.patients == ("PHA00001", "PHA00002", "PHA00003")
    assert sorted(p.name for p in (root / "dicoms").iterdir()) == list(info.patients)
    assert sorted(p.name for p in (root / "contourfiles").iterdir()) == ["PH-1", "PH-2", "PH-3"]
    for pid in info.patients:
        names = {p.name for p in (root / "dicoms" / pid).iterdir()}
        assert names == {f"{n}.dcm" for n in range(1, 13)}
    assert info.faults == ()
    assert info.root == str(root)


def test_dicoms_are_valid_files(clean: tuple[Path, PhantomInfo]) -> None:
    root, _ = clean
    uids = set()
    rescaled = []
    for path in sorted((root / "dicoms").rglob("*.dcm")):
        raw = path.read_bytes()
        assert raw[:128] == b"\x00" * 128 and raw[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPClassUID == MRImageStorage
        assert ds.SOPClassUID == MRImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert (ds.Rows, ds.Columns) == SHAPE
        assert ds.InstanceNumber == int(path.stem)
        assert ds.PatientID == path.parent.name
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 16, 15)
        assert (ds.PixelRepresentation, ds.SamplesPerPixel) == (1, 1)
        assert len(ds.PixelSpacing) == 2 and float(ds.PixelSpacing[0]) > 0
        pixels = ds.pixel_array
        assert pixels.dtype == np.int16 and pixels.shape == SHAPE
        uids.add(ds.SOPInstanceUID)
        if "RescaleSlope" in ds:
            rescaled.append(ds.PatientID)
            assert float(ds.RescaleSlope) == 2.0
            assert float(ds.RescaleIntercept) == -100.0
        # pydicom writes the same bytes back: lengths and group length are consistent.
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        assert buffer.getvalue() == raw
    assert len(uids) == 36
    assert set(rescaled) == {"PHA00002"} and len(rescaled) == 12


def test_contour_files_parse(clean: tuple[Path, PhantomInfo]) -> None:
    root, _ = clean
    files = sorted((root / "contourfiles").rglob("*.txt"))
    assert files
    for path in files:
        match = NAME.match(path.name)
        assert match and path.parent.name == f"{match.group(2)}-contours"
        lines = path.read_text().splitlines()
        assert all(LINE.match(line) for line in lines), path
        points = _points(path)
        assert len(np.unique(points, axis=0)) >= 3
        assert np.all(points * 2 == np.round(points * 2))  # multiples of 0.5
        assert points[:, 0].min() >= 0 and points[:, 0].max() <= SHAPE[1] - 1
        assert points[:, 1].min() >= 0 and points[:, 1].max() <= SHAPE[0] - 1


def test_labelling_pattern(clean: tuple[Path, PhantomInfo]) -> None:
    root, _ = clean
    folder = root / "contourfiles" / "PH-1"
    i_slices = sorted(int(NAME.match(p.name).group(1)) for p in (folder / "i-contours").iterdir())
    o_slices = sorted(int(NAME.match(p.name).group(1)) for p in (folder / "o-contours").iterdir())
    assert i_slices == [2, 4, 6, 8, 10, 12]
    assert o_slices == [2, 6, 10]


def test_i_contour_inside_o_contour(clean: tuple[Path, PhantomInfo]) -> None:
    root, _ = clean
    pairs = 0
    for o_path in (root / "contourfiles").rglob("o-contours/*.txt"):
        i_path = o_path.parent.parent / "i-contours" / o_path.name.replace("ocontour", "icontour")
        assert i_path.exists()
        inner, outer = _points(i_path), _points(o_path)
        assert MplPath(outer).contains_points(inner).all()
        pairs += 1
    assert pairs == 9


def test_blood_pool_brighter_than_myocardium(clean: tuple[Path, PhantomInfo]) -> None:
    root, _ = clean
    for o_path in sorted((root / "contourfiles" / "PH-1" / "o-contours").iterdir()):
        n = int(NAME.match(o_path.name).group(1))
        i_path = o_path.parent.parent / "i-contours" / o_path.name.replace("ocontour", "icontour")
        pixels = pydicom.dcmread(root / "dicoms" / "PHA00001" / f"{n}.dcm").pixel_array
        inner = _pixel_mask(_points(i_path), SHAPE)
        ring = _pixel_mask(_points(o_path), SHAPE) & ~inner
        outside = ~_pixel_mask(_points(o_path), SHAPE)
        assert inner.sum() > 20 and ring.sum() > 20
        blood, muscle = pixels[inner].mean(), pixels[ring].mean()
        assert blood > 1.8 * muscle and blood - muscle > 250
        assert pixels[outside].mean() < muscle


def test_clean_dataset_counts_match_disk(clean: tuple[Path, PhantomInfo]) -> None:
    root, info = clean
    dicoms = list((root / "dicoms").rglob("*"))
    assert all(p.suffix == ".dcm" for p in dicoms if p.is_file())
    assert info.dicoms == sum(p.is_file() for p in dicoms) == 36
    assert all(_decodes(p) for p in dicoms if p.is_file())
    assert info.i_contours == len(list((root / "contourfiles").rglob("i-contours/*.txt"))) == 18
    assert info.o_contours == len(list((root / "contourfiles").rglob("o-contours/*.txt"))) == 9


def _independent_counts(root: Path) -> tuple[int, int]:
    """Contours a correct scan keeps: linked, slice decodes, file parses with >= 3 points."""
    kept = {"i": 0, "o": 0}
    for pid, oid in _link(root):
        if not (root / "dicoms" / pid).is_dir() or not (root / "contourfiles" / oid).is_dir():
            continue
        for path in (root / "contourfiles" / oid).rglob("*.txt"):
            match = NAME.match(path.name)
            assert match
            dcm = root / "dicoms" / pid / f"{int(match.group(1))}.dcm"
            try:
                points = _points(path)
            except ValueError:
                continue
            if len(points) >= 3 and dcm.exists() and _decodes(dcm):
                kept[match.group(2)] += 1
    return kept["i"], kept["o"]


def test_faulty_dataset_counts_match_independent_scan(faulty: tuple[Path, PhantomInfo]) -> None:
    root, info = faulty
    assert info.dicoms == len(list((root / "dicoms").rglob("*.dcm"))) == 36
    assert (info.i_contours, info.o_contours) == _independent_counts(root)
    # 18 i-contours written for real slices, minus the truncated slice and the garbled file.
    assert (info.i_contours, info.o_contours) == (16, 8)


def test_fault_list(faulty: tuple[Path, PhantomInfo]) -> None:
    root, info = faulty
    codes = [code for code, _ in info.faults]
    assert sorted(codes) == sorted(
        [
            "unreadable-dicom",
            "unparseable-contour",
            "missing-dicom",
            "not-in-link-csv",
            "missing-patient-folder",
            "stray-file",
            "empty-contour",
        ]
    )
    paths = dict(info.faults)
    assert all("\\" not in p and not p.startswith("/") for p in paths.values())
    for code, rel in info.faults:
        if code != "missing-patient-folder":
            assert (root / rel).exists(), (code, rel)
    assert ("PHA00099", "PH-98") in _link(root)
    assert not (root / "dicoms" / "PHA00099").exists()
    assert paths["missing-patient-folder"] == "dicoms/PHA00099"
    assert paths["not-in-link-csv"] == "contourfiles/PH-99"
    assert "PH-99" not in {oid for _, oid in _link(root)}
    assert len(list((root / paths["not-in-link-csv"]).rglob("*.txt"))) == 1
    assert paths["stray-file"] == "dicoms/PHA00001/notes.txt"


def test_truncated_dicom_fails_to_decode(faulty: tuple[Path, PhantomInfo]) -> None:
    root, info = faulty
    path = root / dict(info.faults)["unreadable-dicom"]
    sibling = path.with_name("1.dcm")
    assert path.stat().st_size < sibling.stat().st_size - SHAPE[0] * SHAPE[1] // 2
    with pytest.raises(Exception):  # noqa: B017 - any failure to decode will do
        pydicom.dcmread(path).pixel_array  # noqa: B018
    broken = [p for p in (root / "dicoms").rglob("*.dcm") if not _decodes(p)]
    assert broken == [path]
    # The truncated slice is labelled.
    n = int(path.stem)
    oid = dict(_link(root))[path.parent.name]
    assert (
        root / "contourfiles" / oid / "i-contours" / f"IM-0001-{n:04d}-icontour-manual.txt"
    ).exists()


def test_contour_faults(faulty: tuple[Path, PhantomInfo]) -> None:
    root, info = faulty
    paths = dict(info.faults)
    garbled = root / paths["unparseable-contour"]
    assert "12.5 abc" in garbled.read_text().splitlines()
    with pytest.raises(ValueError):
        _points(garbled)
    o_partner = garbled.parent.parent / "o-contours" / garbled.name.replace("icontour", "ocontour")
    assert len(_points(o_partner)) >= 3
    empty = root / paths["empty-contour"]
    assert "o-contours" in paths["empty-contour"] and empty.read_text().strip() == ""
    i_partner = empty.parent.parent / "i-contours" / empty.name.replace("ocontour", "icontour")
    assert len(_points(i_partner)) >= 3
    missing = root / paths["missing-dicom"]
    assert len(_points(missing)) >= 3
    n = int(NAME.match(missing.name).group(1))
    assert n > 12
    assert not (root / "dicoms" / "PHA00001" / f"{n}.dcm").exists()


def test_refuses_non_empty_root(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(ValueError):
        write_phantom(tmp_path, patients=1, slices=6, shape=SHAPE)
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    info = write_phantom(empty, patients=1, slices=6, shape=SHAPE)
    assert info.dicoms == 6


def test_faults_need_three_labelled_slices(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_phantom(tmp_path / "a", patients=1, slices=4, shape=SHAPE, faults=True)
    info = write_phantom(tmp_path / "b", patients=1, slices=4, shape=SHAPE, faults=False)
    assert info.i_contours == 2


@pytest.mark.slow
def test_many_patients_keep_fault_ids_apart(tmp_path: Path) -> None:
    info = write_phantom(tmp_path / "d", patients=99, slices=6, shape=(32, 32), seed=1)
    link = _link(tmp_path / "d")
    assert len({pid for pid, _ in link}) == len(link) == 100
    assert len({oid for _, oid in link}) == 100
    orphan = dict(info.faults)["not-in-link-csv"].split("/")[1]
    assert orphan not in {oid for _, oid in link}
    assert not (tmp_path / "d" / dict(info.faults)["missing-patient-folder"]).exists()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    phase=st.floats(0, 1),
    level=st.floats(0, 1),
    height=st.integers(32, 160),
    width=st.integers(32, 160),
)
def test_phantom_slice_properties(
    seed: int, phase: float, level: float, height: int, width: int
) -> None:
    image, inner, outer = phantom_slice(
        (height, width), rng=np.random.default_rng(seed), phase=phase, level=level
    )
    assert image.dtype == np.int16 and image.shape == (height, width)
    assert inner.shape[1] == outer.shape[1] == 2
    assert 20 <= len(inner) <= 120 and 20 <= len(outer) <= 120
    assert MplPath(outer).contains_points(inner).all()
    for poly in (inner, outer):
        assert poly[:, 0].min() >= 0 and poly[:, 0].max() <= width - 1
        assert poly[:, 1].min() >= 0 and poly[:, 1].max() <= height - 1
    again = phantom_slice(
        (height, width), rng=np.random.default_rng(seed), phase=phase, level=level
    )
    assert np.array_equal(again[0], image) and np.array_equal(again[1], inner)


def test_phantom_slice_pool_size_follows_phase() -> None:
    def area(polygon: np.ndarray) -> float:
        x, y = polygon[:, 0], polygon[:, 1]
        return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))

    diastole = [
        area(phantom_slice((128, 128), rng=np.random.default_rng(s), phase=0.0)[1])
        for s in range(5)
    ]
    systole = [
        area(phantom_slice((128, 128), rng=np.random.default_rng(s), phase=0.5)[1])
        for s in range(5)
    ]
    assert min(diastole) > 1.5 * max(systole)


def test_phantom_slice_rejects_tiny_shape() -> None:
    with pytest.raises(ValueError):
        phantom_slice((16, 64), rng=np.random.default_rng(0), phase=0.0)
