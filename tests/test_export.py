"""Exports (nnU-Net, MONAI, DICOM-SEG, RTSTRUCT) checked by independent readers.

nibabel reads the NIfTI files, MONAI the datalist, highdicom and pydicom the
SEG objects, dciodvfy validates the DICOM objects, and the RTSTRUCT export is
scanned back.  Expected values come from the scan's own masks and from the
DICOM geometry formula written out here, never from the exporter.
"""

from __future__ import annotations

import copy
import datetime
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dicontour
from dicontour import export as export_module
from dicontour.cli import main
from dicontour.dicom import DicomHeader, patient_to_pixel, pixel_to_patient
from dicontour.errors import DicontourError
from dicontour.export import LABELS, ExportError, export, label_map
from dicontour.phantom import write_phantom
from dicontour.rtstruct import RtstructContours, parse_roi_map, read_rtstruct, valid_value

nibabel = pytest.importorskip("nibabel", reason="nibabel not installed (pip install '.[export]')")
highdicom = pytest.importorskip("highdicom", reason="highdicom not installed")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantom") / "ph"
    write_phantom(root, patients=2, slices=8, shape=(40, 48), faults=False, seed=1)
    return root


@pytest.fixture(scope="module")
def real_index(real_data):
    return dicontour.scan(real_data)


def expected_labels(sample) -> np.ndarray:
    """The label map as docs/export.md states it, written out independently."""
    i, o = sample.i_mask, sample.o_mask
    if i is not None and o is not None:
        return np.where(i, 2, np.where(o, 1, 0))
    if i is not None:
        return np.where(i, 2, 3)
    return np.where(o, 3, 0)


def lps_position(header: DicomHeader, row: float, column: float) -> np.ndarray:
    """PS3.3 C.7.6.2.1.1: IPP + column * colspacing * X + row * rowspacing * Y."""
    ipp = np.array(header.image_position)
    iop = np.array(header.image_orientation)
    return (
        ipp + column * header.pixel_spacing[1] * iop[:3] + row * header.pixel_spacing[0] * iop[3:]
    )


# ------------------------------------------------------------------ small pieces


def test_label_map_by_hand():
    i = np.array([[0, 0, 1, 0, 0]], bool)
    o = np.array([[0, 1, 1, 1, 0]], bool)
    assert label_map(i, o).tolist() == [[0, 1, 2, 1, 0]]
    assert label_map(i, None).tolist() == [[3, 3, 2, 3, 3]]  # outside i: unknown
    assert label_map(None, o).tolist() == [[0, 3, 3, 3, 0]]  # inside o: unknown
    leak = np.array([[1, 0, 0, 0, 0]], bool)  # i outside o: blood pool wins
    assert label_map(leak, o).tolist() == [[2, 1, 1, 1, 0]]
    with pytest.raises(ValueError, match="needs an i- or an o-mask"):
        label_map(None, None)
    assert max(LABELS.values()) == LABELS["ignore"]  # nnU-Net: ignore is the highest


@given(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1), st.sampled_from(["both", "i", "o"]))
def test_label_map_never_calls_unknown_background(i_bits, o_bits, which):
    i = np.array([(i_bits >> k) & 1 for k in range(16)], bool).reshape(4, 4)
    o = np.array([(o_bits >> k) & 1 for k in range(16)], bool).reshape(4, 4)
    labels = label_map(i if which != "o" else None, o if which != "i" else None)
    if which != "o":
        assert (labels[i] == 2).all()
    if which == "i":
        assert (labels[~i] == 3).all()  # never 0: it may be myocardium
    if which == "o":
        assert (labels[o] == 3).all() and (labels[~o] == 0).all()
    if which == "both":
        assert (labels[o & ~i] == 1).all() and (labels[~o & ~i] == 0).all()


orientations = st.sampled_from(
    [
        (1, 0, 0, 0, 1, 0),
        (0, 1, 0, 0, 0, -1),
        (-0.104592, 0.346381, -0.932245, -0.733192, -0.660188, -0.163037),  # real data
    ]
)


@given(
    orientations,
    st.tuples(*[st.floats(-300, 300)] * 3),
    st.tuples(st.floats(0.3, 3), st.floats(0.3, 3)),
    st.lists(st.tuples(st.floats(-5, 300), st.floats(-5, 300)), min_size=1, max_size=20),
)
def test_pixel_patient_round_trip(orientation, position, spacing, points):
    header = DicomHeader(
        256, 256, spacing, 1, None, 1.0, 0.0, "",
        image_position=position, image_orientation=orientation,
    )  # fmt: skip
    xy = np.array(points)
    mm = pixel_to_patient(xy, header)
    for (x, y), p in zip(xy, mm, strict=True):
        np.testing.assert_allclose(p, lps_position(header, y, x), atol=1e-9)
    back, distance = patient_to_pixel(mm, header)
    np.testing.assert_allclose(back, xy, atol=1e-6)
    np.testing.assert_allclose(distance, 0, atol=1e-6)


def test_header_without_geometry_cannot_place_points():
    header = DicomHeader(4, 4, (1.0, 1.0), 1, None, 1.0, 0.0, "")
    with pytest.raises(dicontour.DicomError, match="no patient geometry"):
        pixel_to_patient(np.zeros((1, 2)), header)


def test_roi_map_parsing(tmp_path):
    assert parse_roi_map(["i=LV_Endo,Endocardium", "o=LV-Epi"]) == {
        "lv endo": "i", "endocardium": "i", "lv epi": "o",
    }  # fmt: skip
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"i": ["Blood"], "o": "Wall"}))
    assert parse_roi_map(str(path)) == {"blood": "i", "wall": "o"}
    assert parse_roi_map(None)["lv endocardium"] == "i"
    with pytest.raises(ValueError, match="kind must be 'i' or 'o'"):
        parse_roi_map(["x=foo"])
    with pytest.raises(ValueError, match="both i and o"):
        parse_roi_map(["i=a", "o=A"])
    with pytest.raises(ValueError, match="expected KIND=NAME"):
        parse_roi_map(["LV"])


# ------------------------------------------------------------------ nnU-Net and MONAI


def check_nifti_export(index, out: Path, records) -> None:
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "myocardium": 1, "blood_pool": 2, "ignore": 3}
    assert dataset["numTraining"] == len(records) and dataset["file_ending"] == ".nii.gz"
    assert dataset["channel_names"] == {"0": "MRI"}
    for k, record in enumerate(records):
        sample = index.load(index.samples.index(record))
        image = nibabel.load(out / f"imagesTr/{record.case_id}_0000.nii.gz")
        label = nibabel.load(out / f"labelsTr/{record.case_id}.nii.gz")
        assert image.shape == label.shape == (*record.shape, 1)
        np.testing.assert_array_equal(image.get_fdata(dtype=np.float32)[..., 0], sample.image)
        np.testing.assert_array_equal(np.asarray(label.dataobj)[..., 0], expected_labels(sample))
        np.testing.assert_array_equal(image.affine, label.affine)
        if k % 7 == 0:  # geometry: voxel (r, c, 0) lands on the DICOM's patient position
            for r, c in [(0, 0), (record.shape[0] - 1, 3), (17, record.shape[1] - 2)]:
                ras = image.affine @ [r, c, 0, 1]
                lps = lps_position(record.header, r, c)
                np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-4)


def test_nnunet_phantom(phantom, tmp_path):
    index = dicontour.scan(phantom)
    out = tmp_path / "Dataset001_Phantom"
    report = export(index, out, "nnunet", folds=2)
    assert report.cases == len(index) and not report.kept
    check_nifti_export(index, out, list(index))
    splits = dicontour.read_splits(out / "splits_final.json")
    assert len(splits) == 2
    assert sorted(splits[0]["val"] + splits[1]["val"]) == sorted(r.case_id for r in index)
    for fold in splits:  # by patient
        assert not {c.rpartition("_")[0] for c in fold["val"]} & {
            c.rpartition("_")[0] for c in fold["train"]
        }


@pytest.mark.slow
def test_nnunet_real(real_index, tmp_path):
    out = tmp_path / "Dataset501_Sunnybrook"
    export(real_index, out, "nnunet")
    assert len(list((out / "imagesTr").iterdir())) == 96
    check_nifti_export(real_index, out, list(real_index))


@pytest.mark.slow
def test_nnunet_exclude_drops_flagged_contours(real_index, tmp_path):
    out = tmp_path / "clean"
    export(real_index, out, "nnunet", exclude=["contours-misaligned"])
    record = next(r for r in real_index if r.patient_id == "SCD0000501" and r.o_contour)
    labels = np.asarray(nibabel.load(out / f"labelsTr/{record.case_id}.nii.gz").dataobj)
    assert 1 not in labels  # no myocardium: its o-contour was left out
    assert {2, 3} <= set(np.unique(labels))


@pytest.mark.slow
def test_nnunet_integrity_check(real_index, tmp_path):
    verify = pytest.importorskip(
        "nnunetv2.experiment_planning.verify_dataset_integrity",
        reason="nnunetv2 not installed (benchmarks/nnunet_check.py runs it from its own venv)",
    )
    out = tmp_path / "Dataset501_Sunnybrook"
    export(real_index, out, "nnunet")
    verify.verify_dataset_integrity(str(out), num_processes=1)  # raises on a bad dataset


def test_monai_datalist_loads(phantom, tmp_path):
    monai = pytest.importorskip("monai", reason="monai not installed")
    from monai.data import load_decathlon_datalist
    from monai.transforms import LoadImaged

    index = dicontour.scan(phantom)
    out = tmp_path / "monai"
    export(index, out, "monai", folds=2)
    items = load_decathlon_datalist(str(out / "datalist.json"), True, "training", str(out))
    assert len(items) == len(index)
    assert {item["fold"] for item in items} == {0, 1}
    loader = LoadImaged(keys=["image", "label"], image_only=True)
    for item, record in zip(items, index, strict=True):
        loaded = loader(item)
        sample = index.load(index.samples.index(record))
        np.testing.assert_array_equal(np.asarray(loaded["image"])[..., 0], sample.image)
        np.testing.assert_array_equal(np.asarray(loaded["label"])[..., 0], expected_labels(sample))
    assert monai.__version__


# ------------------------------------------------------------------ DICOM-SEG


def seg_masks_by_pydicom(path: Path) -> dict[tuple[str, int], np.ndarray]:
    """(source SOP Instance UID, segment number) -> mask, read frame by frame with pydicom."""
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    found = {}
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        source = group.DerivationImageSequence[0].SourceImageSequence[0]
        identification = group.get("SegmentIdentificationSequence") or (
            ds.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence
        )
        segment = identification[0].ReferencedSegmentNumber
        found[(str(source.ReferencedSOPInstanceUID), int(segment))] = frame.astype(bool)
    return found


def check_seg_export(index, out: Path) -> int:
    by_uid = {r.header.sop_instance_uid: r for r in index}
    seen = set()
    files = sorted(out.rglob("*_seg.dcm"))
    for path in files:
        seg = highdicom.seg.segread(path)
        assert seg.SegmentationType == "BINARY"
        labels = {d.SegmentNumber: d.SegmentLabel for d in seg.SegmentSequence}
        frames = seg_masks_by_pydicom(path)
        for uid in {u for (u, _) in frames} | set(seg.get_source_image_uids()[0:0]):
            record = by_uid[uid]  # references the source SOP Instance UID, unchanged
            sample = index.load(index.samples.index(record))
            seen.add(uid)
            numbers = sorted(labels)
            pixels = seg.get_pixels_by_source_instance(
                [uid], segment_numbers=numbers, assert_missing_frames_are_empty=True
            )[0]
            by_number = {n: pixels[..., j].astype(bool) for j, n in enumerate(numbers)}
            if sample.i_mask is not None:
                np.testing.assert_array_equal(by_number[1], sample.i_mask)
                np.testing.assert_array_equal(frames.get((uid, 1)), sample.i_mask)
            if sample.o_mask is not None:
                np.testing.assert_array_equal(by_number[3], sample.o_mask)
                np.testing.assert_array_equal(frames.get((uid, 3)), sample.o_mask)
            if sample.i_mask is not None and sample.o_mask is not None:
                np.testing.assert_array_equal(by_number[2], sample.o_mask & ~sample.i_mask)
            assert (1 in labels) == (sample.i_mask is not None)  # unknown: no segment
            assert (3 in labels) == (sample.o_mask is not None)
    assert seen == set(by_uid)
    return len(files)


def test_seg_phantom(phantom, tmp_path):
    index = dicontour.scan(phantom)
    out = tmp_path / "seg"
    export(index, out, "dicom-seg")
    files = check_seg_export(index, out)
    # One SEG per patient series and contour set (phantom: one frame of reference each),
    # and a new one for each image at a plane position already taken (cine phases).
    groups = {(r.patient_id, r.i_contour is None, r.o_contour is None) for r in index}
    assert files >= len(groups)


@pytest.mark.slow
def test_seg_real(real_index, tmp_path):
    out = tmp_path / "seg"
    export(real_index, out, "dicom-seg")
    assert check_seg_export(real_index, out) == 96  # every image has its own frame of reference
    ds = pydicom.dcmread(next(out.rglob("*.dcm")))
    assert (
        ds.get("StudyDate", "") == "" and ds.get("PatientBirthDate", "") == ""
    )  # invalid: left empty
    source = pydicom.dcmread(real_index.location.path(real_index[0].dicom), stop_before_pixels=True)
    assert any(
        str(source.StudyInstanceUID) == str(pydicom.dcmread(p).StudyInstanceUID)
        for p in out.rglob("*.dcm")
    )


# ------------------------------------------------------------------ RTSTRUCT


def masks_of(index) -> dict[tuple[str, int], tuple]:
    found = {}
    for k, record in enumerate(index):
        sample = index.load(k)
        found[(record.patient_id, record.slice)] = (sample.i_mask, sample.o_mask)
    return found


def assert_same_masks(a, b) -> tuple[int, int]:
    assert a.keys() == b.keys()
    counts = [0, 0]
    for key in a:
        for j in (0, 1):
            if a[key][j] is None:
                assert b[key][j] is None, key
            else:
                np.testing.assert_array_equal(a[key][j], b[key][j], err_msg=str(key))
                counts[j] += 1
    return counts[0], counts[1]


def test_rtstruct_round_trip_phantom(phantom, tmp_path):
    index = dicontour.scan(phantom)
    out = tmp_path / "rt"
    export(index, out, "rtstruct")
    back = dicontour.scan(out, contours=RtstructContours())
    assert not back.errors()
    assert_same_masks(masks_of(index), masks_of(back))


def test_rtstruct_export_reads_the_images_through_the_root(phantom, tmp_path):
    # The images beside the contours are read through the root's Location: a
    # remote root works like a local one, and the copies are byte-identical.
    from dicontour.storage import location

    memory = location("memory://export-rtstruct-root")
    memory.fs.put(str(phantom), memory.base, recursive=True)
    try:
        out = tmp_path / "rt"
        report = export(dicontour.scan(memory.url), out, "rtstruct")
        back = dicontour.scan(out, contours=RtstructContours())
        assert not back.errors() and len(back) == report.cases
        for record in back.samples:
            assert (out / record.dicom).read_bytes() == (phantom / record.dicom).read_bytes()
    finally:
        memory.fs.rm(memory.base, recursive=True)


@pytest.mark.slow
def test_rtstruct_round_trip_real(real_index, tmp_path):
    out = tmp_path / "rt"
    export(real_index, out, "rtstruct")
    back = dicontour.scan(out, contours=RtstructContours())
    assert assert_same_masks(masks_of(real_index), masks_of(back)) == (96, 46)
    assert sorted(p.code for p in back.problems) == sorted(p.code for p in real_index.problems)


@pytest.fixture
def rt_dataset(phantom, tmp_path) -> Path:
    out = tmp_path / "rt"
    export(dicontour.scan(phantom), out, "rtstruct")
    return out


def _files(root: Path, pid: str) -> list[Path]:
    oid = {"PHA00001": "PH-1", "PHA00002": "PH-2"}[pid]
    return sorted((root / "contourfiles" / oid).glob("*.dcm"))


def _rescan(root: Path, **kw):
    index = dicontour.scan(root, contours=RtstructContours(**kw))
    other = index.summary["per_patient"]["PHA00002"]
    assert other["i_contours"] > 0 and not other["problems"]  # the rest is still scanned
    return index


def _first_contour(ds):
    return ds.ROIContourSequence[0].ContourSequence[0]


@pytest.mark.parametrize(
    "damage, code",
    [
        ("garbage", "malformed-rtstruct"),
        ("wrong-class", "malformed-rtstruct"),
        ("unknown-image", "referenced-image-missing"),
        ("nan", "non-finite-coordinate"),
        ("off-plane", "off-plane"),
        ("unmapped", "unmapped-roi"),
        ("no-reference", "contour-on-no-image"),
        ("too-few", "too-few-points"),
    ],
)
def test_bad_rtstruct_is_one_problem(rt_dataset, damage, code):
    path = _files(rt_dataset, "PHA00001")[0]
    if damage == "garbage":
        path.write_bytes(b"not dicom at all")
    else:
        ds = pydicom.dcmread(path)
        item = _first_contour(ds)
        data = np.array(item.ContourData, dtype=float).reshape(-1, 3)
        if damage == "wrong-class":
            ds.SOPClassUID = pydicom.uid.MRImageStorage
        elif damage == "unknown-image":
            item.ContourImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4"
        elif damage == "nan":
            data[1, 0] = np.nan
        elif damage == "off-plane":
            data[:, 2] += 5  # the phantom's planes are axial
        elif damage == "unmapped":
            ds.StructureSetROISequence[0].ROIName = "RV"
        elif damage == "no-reference":
            del item.ContourImageSequence  # cine phases share the plane: ambiguous
        elif damage == "too-few":
            data = data[:2]
        if damage in ("nan", "off-plane", "too-few"):
            item.ContourData = [f"{v:.6f}" if np.isfinite(v) else "nan" for v in data.ravel()]
            item.NumberOfContourPoints = len(data)
        ds.save_as(path)
    index = _rescan(rt_dataset)
    found = [p for p in index.problems if p.code == code]
    assert found and found[0].patient_id == "PHA00001", index.problems
    assert found[0].path.startswith(path.relative_to(rt_dataset).as_posix())
    left = index.summary["per_patient"]["PHA00001"]["labelled_slices"]
    if code == "malformed-rtstruct":  # the patient's one structure set is lost, nothing else
        assert left == 0
    else:  # one contour is lost: the patient's other contours are used
        assert left > 0


def test_roi_map_option_maps_names(rt_dataset):
    for path in _files(rt_dataset, "PHA00001") + _files(rt_dataset, "PHA00002"):
        ds = pydicom.dcmread(path)
        for roi in ds.StructureSetROISequence:
            roi.ROIName = {"LV endocardium": "Cavity", "LV epicardium": "Wall"}[roi.ROIName]
        ds.save_as(path)
    unmapped = dicontour.scan(rt_dataset, contours=RtstructContours())
    assert len(unmapped) == 0 and "unmapped-roi" in unmapped.summary["problems"]
    mapped = _rescan(rt_dataset, roi_map=parse_roi_map(["i=cavity", "o=wall"]))
    assert mapped.summary["i_contours"] > 0 and mapped.summary["o_contours"] > 0


def test_cli_export_and_rtstruct_scan(phantom, tmp_path, capsys):
    out = tmp_path / "rt"
    assert main(["export", str(phantom), str(out), "--format", "rtstruct", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "rtstruct"
    assert main(["scan", str(out), "--contours", "rtstruct", "--roi-map", "i=LV endocardium",
                 "o=LV epicardium", "--json"]) == 0  # fmt: skip
    scanned = json.loads(capsys.readouterr().out)
    assert scanned["summary"]["i_contours"] == dicontour.scan(phantom).summary["i_contours"]
    assert main(["scan", str(phantom), "--roi-map", "i=x"]) == 2  # text contours take no map
    assert "--roi-map applies to --contours rtstruct only" in capsys.readouterr().err
    assert main(["export", str(phantom), str(out), "--format", "rtstruct"]) == 1  # refused
    assert capsys.readouterr().err == (
        f"dicontour: error: {out}: already holds this export; pass resume=True (--resume) to "
        "complete it, or choose an empty or new folder\n"
    )


# ------------------------------------------------------------------ rerun and atomicity


def test_rerun_refused_or_resumed(phantom, tmp_path, monkeypatch):
    index = dicontour.scan(phantom)
    out = tmp_path / "nn"
    calls = {"n": 0}
    real = export_module.nifti_slice

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, "nifti_slice", failing)
    with pytest.raises(OSError, match="No space"):
        export(index, out, "nnunet", folds=2)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len([w for w in written if w.endswith(".nii.gz")]) == 4  # whole files only
    assert not [w for w in written if w.endswith(".tmp")]
    monkeypatch.setattr(export_module, "nifti_slice", real)
    with pytest.raises(ExportError, match="already holds this export") as caught:
        export(index, out, "nnunet", folds=2)
    assert str(caught.value).startswith(f"{out}: already holds this export; pass resume=True")
    with pytest.raises(ExportError, match="other settings"):
        export(index, out, "nnunet", folds=2, exclude=["i-outside-o"], resume=True)
    with pytest.raises(ExportError, match="other settings"):
        export(index, out, "monai", folds=2, resume=True)
    report = export(index, out, "nnunet", folds=2, resume=True)
    assert len(report.kept) == 4 and len(report.written) == 2 * len(index) + 2 - 4
    check_nifti_export(index, out, list(index))
    (out / "imagesTr" / "stranger.nii.gz").write_bytes(b"x")
    with pytest.raises(ExportError, match="does not write; not mixing"):
        export(index, out, "nnunet", folds=2, resume=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a dicontour export"):
        export(index, foreign, "nnunet", folds=2)
    assert (foreign / "notes.txt").read_text() == "mine"
    assert issubclass(ExportError, DicontourError)


def test_unknown_format_is_a_value_error(phantom, tmp_path):
    with pytest.raises(ValueError, match="unknown export format"):
        export(dicontour.scan(phantom), tmp_path / "x", "nrrd")


# ------------------------------------------------------------------ dciodvfy

#: dciodvfy findings that come from the source images' UIDs, which a derived
#: object must reference unchanged (docs/export.md lists them).
INHERITED = ("Leading zeroes in embedded numeric component(s)",)


def dciodvfy_errors(path: Path, source_uids: set[str]) -> list[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    errors = []
    for line in (result.stdout + result.stderr).splitlines():
        if not line.startswith("Error"):
            continue
        if any(reason in line for reason in INHERITED) and any(u in line for u in source_uids):
            continue
        if "contains invalid data values for Value Representations" in line:
            continue  # the summary of the inherited UID findings above
        errors.append(line)
    return errors


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy not installed (apt-get install dicom3tools)"
)
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["dicom-seg", "rtstruct"])
def test_dciodvfy_accepts_written_objects(real_index, phantom, tmp_path, fmt):
    source_uids = set()
    for record in real_index:
        ds = pydicom.dcmread(real_index.location.path(record.dicom), stop_before_pixels=True)
        source_uids |= {str(e.value) for e in ds.iterall() if e.VR == "UI" and e.value}
    for root, index in [("real", real_index), ("phantom", dicontour.scan(phantom))]:
        out = tmp_path / root
        export(index, out, fmt)
        pattern = "*_seg.dcm" if fmt == "dicom-seg" else "*_rtstruct.dcm"
        files = sorted(out.rglob(pattern))
        assert files
        for path in files if root == "phantom" else files[::10]:
            assert dciodvfy_errors(path, source_uids) == [], path


# ------------------------------------------------------------------ RTSTRUCT reader, the kind


@pytest.fixture(scope="module")
def rtstruct_bytes(phantom, tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("rtbytes") / "rt"
    export(dicontour.scan(phantom), out, "rtstruct")
    return next((out / "contourfiles").rglob("*.dcm")).read_bytes()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_damaged_rtstruct_only_raises_contour_error(rtstruct_bytes, data):
    raw = bytearray(rtstruct_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        contours = read_rtstruct(io.BytesIO(bytes(raw)), name="x.dcm")
    except dicontour.ContourError as exc:
        assert exc.code == "malformed-rtstruct" and "x.dcm" in str(exc)
    else:
        for contour in contours:
            assert contour.points.ndim == 2 and contour.points.shape[1] == 3


def test_rtstruct_index_feeds_the_loader(rt_dataset, phantom):
    index = dicontour.scan(rt_dataset, contours=RtstructContours())
    text = dicontour.scan(phantom)
    expected = {(r.patient_id, r.slice): text.load(k).i_mask for k, r in enumerate(text)}
    with dicontour.BatchLoader(index, batch_size=2, target="i", workers=0, seed=0) as loader:
        batch = next(iter(loader))
        for j in range(len(batch.meta.case_id)):
            pid, _, number = batch.meta.case_id[j].rpartition("_")
            np.testing.assert_array_equal(batch[1][j], expected[(pid, int(number))])


@given(st.text(max_size=10), st.sampled_from(["DA", "TM"]))
def test_valid_value_keeps_only_valid_dates_and_times(text, vr):
    ds = pydicom.Dataset()
    keyword = "StudyDate" if vr == "DA" else "StudyTime"
    setattr(ds, keyword, text)
    value = valid_value(ds, keyword)
    if value is not None:
        if vr == "DA":
            assert datetime.datetime.strptime(value, "%Y%m%d")
        else:
            assert re.fullmatch(r"([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?", value)
    for bad in ("20120000", "00000000", "2012", "20121301"):
        ds.StudyDate = bad
        assert valid_value(ds, "StudyDate") is None


def test_contour_without_reference_is_placed_by_its_plane(rt_dataset):
    path = _files(rt_dataset, "PHA00001")[0]
    ds = pydicom.dcmread(path)
    item = _first_contour(ds)
    uid = str(item.ContourImageSequence[0].ReferencedSOPInstanceUID)
    del item.ContourImageSequence
    data = np.array(item.ContourData, dtype=float).reshape(-1, 3)
    data[:, 2] += 50.0  # move the contour and its image to a plane of their own
    item.ContourData = [f"{v:.6f}" for v in data.ravel()]
    ds.save_as(path)
    for image in sorted((rt_dataset / "dicoms" / "PHA00001").glob("*.dcm")):
        source = pydicom.dcmread(image)
        if str(source.SOPInstanceUID) == uid:
            source.ImagePositionPatient = [
                float(v) + d for v, d in zip(source.ImagePositionPatient, (0, 0, 50), strict=True)
            ]
            image.unlink()  # the export copied it; write a new file all the same
            source.save_as(image)
            number = int(image.stem)
    index = _rescan(rt_dataset)
    # The slice's o-contour still references the moved image, and is now off its plane.
    assert [(p.code, p.slice) for p in index.errors()] == [("off-plane", number)]
    record = next(r for r in index if r.patient_id == "PHA00001" and r.slice == number)
    assert record.i_contour is not None


def test_second_contour_on_a_slice_is_an_extra_contour(rt_dataset, phantom):
    path = _files(rt_dataset, "PHA00001")[0]
    ds = pydicom.dcmread(path)
    contours = ds.ROIContourSequence[0].ContourSequence
    contours.append(copy.deepcopy(contours[0]))
    ds.save_as(path)
    index = _rescan(rt_dataset)
    extra = [p for p in index.problems if p.code == "extra-contour"]
    assert len(extra) == 1 and extra[0].severity == "warning"
    assert not index.errors()  # the first contour is used
    text = dicontour.scan(phantom)
    assert index.summary["i_contours"] == text.summary["i_contours"]


def test_rtstruct_limits_are_checked_before_parsing(rt_dataset, monkeypatch):
    from dicontour import rtstruct

    path = _files(rt_dataset, "PHA00001")[0]
    monkeypatch.setattr(rtstruct, "MAX_RTSTRUCT_BYTES", path.stat().st_size - 1)
    with pytest.raises(dicontour.ContourError, match="larger than") as caught:
        read_rtstruct(path)
    assert caught.value.code == "malformed-rtstruct"
    index = dicontour.scan(rt_dataset, contours=RtstructContours())
    assert "malformed-rtstruct" in index.summary["problems"]
    monkeypatch.setattr(rtstruct, "MAX_RTSTRUCT_BYTES", 2**30)
    monkeypatch.setattr(rtstruct, "MAX_POINTS", 3)
    with pytest.raises(dicontour.ContourError, match="over 3 points"):
        read_rtstruct(path)
