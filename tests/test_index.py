"""dicontour.index: records, loading samples, (image, mask) pairs, the JSON form."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from dicontour import ContourError, DicomError, Sample, SampleRecord, scan

# Masks of the fault tree's contours, written out by hand (half-open rule:
# low edges in, high edges out).
I_MASK = np.zeros((32, 32), bool)
I_MASK[8:20, 8:20] = True
O_MASK = np.zeros((32, 32), bool)
O_MASK[4:26, 4:26] = True
O_ELSEWHERE_MASK = np.zeros((32, 32), bool)
O_ELSEWHERE_MASK[22:28, 22:28] = True


@pytest.fixture(scope="module")
def index(fault_tree):
    return scan(fault_tree.root)


def _position(index, patient_id: str, slice_: int) -> int:
    return next(k for k, r in enumerate(index) if (r.patient_id, r.slice) == (patient_id, slice_))


@pytest.mark.slow
def test_len_getitem_iter(index, fault_tree):
    assert len(index) == len(fault_tree.samples)
    assert list(index) == [index[k] for k in range(len(index))]
    assert all(isinstance(r, SampleRecord) for r in index)


def test_load_reads_image_and_masks(index, fault_tree):
    for k, record in enumerate(index):
        sample = index.load(k)
        assert isinstance(sample, Sample)
        assert (sample.patient_id, sample.slice) == (record.patient_id, record.slice)
        assert sample.image.dtype == np.float32
        expected = pydicom.dcmread(fault_tree.root / record.dicom).pixel_array
        np.testing.assert_array_equal(sample.image, expected.astype(np.float32))
        for mask, path in ((sample.i_mask, record.i_contour), (sample.o_mask, record.o_contour)):
            if path is None:
                assert mask is None
            else:
                assert mask.dtype == bool and mask.shape == record.shape
    both = index.load(_position(index, "P1", 1))
    np.testing.assert_array_equal(both.i_mask, I_MASK)
    np.testing.assert_array_equal(both.o_mask, O_MASK)
    assert both.i_mask.sum() == 144 and both.o_mask.sum() == 484
    elsewhere = index.load(_position(index, "P1", 7))
    np.testing.assert_array_equal(elsewhere.o_mask, O_ELSEWHERE_MASK)
    small = index.load(_position(index, "P5", 3))
    assert small.image.shape == small.i_mask.shape == (24, 24)
    np.testing.assert_array_equal(small.i_mask, I_MASK[:24, :24])


def test_sample_mask_by_target(index):
    sample = index.load(_position(index, "P1", 2))  # o-contour only
    np.testing.assert_array_equal(sample.mask("o"), O_MASK)
    with pytest.raises(ValueError, match="no i-contour"):
        sample.mask("i")


def test_select_and_has(index, fault_tree):
    wanted = {
        "i": {key for key, (i, _) in fault_tree.samples.items() if i},
        "o": {key for key, (_, o) in fault_tree.samples.items() if o},
        "both": {key for key, (i, o) in fault_tree.samples.items() if i and o},
    }
    for target, keys in wanted.items():
        assert {(index[k].patient_id, index[k].slice) for k in index.select(target)} == keys
    with pytest.raises(ValueError, match="target"):
        index[0].has("x")


@pytest.mark.parametrize("target", ["i", "o"])
def test_pairs_yield_only_samples_with_that_contour(index, fault_tree, target):
    pairs = list(index.pairs(target=target))
    column = 0 if target == "i" else 1
    assert len(pairs) == sum(flags[column] for flags in fault_tree.samples.values())
    for image, mask in pairs:
        assert image.dtype == np.float32 and mask.dtype == bool
        assert image.shape == mask.shape
        assert mask.any()
    if target == "i":  # every i-contour in the tree is I_SQUARE
        assert all(mask.sum() == 144 for _, mask in pairs)


def test_errors_lists_the_error_problems(index):
    assert index.errors() == [p for p in index.problems if p.severity == "error"]
    assert len(index.errors()) > 0


def test_repr_counts(index):
    text = repr(index)
    assert f"samples={len(index)}" in text
    assert f"problems={len(index.problems)}" in text
    assert f"errors={len(index.errors())}" in text


def test_to_dict_is_json_with_relative_paths(index, fault_tree):
    document = json.loads(json.dumps(index.to_dict()))
    assert set(document) >= {"samples", "problems", "summary"}
    assert len(document["samples"]) == len(index)
    first = document["samples"][0]
    assert set(first) >= {"patient_id", "original_id", "slice", "dicom", "i_contour", "o_contour"}
    for sample in document["samples"]:
        for key in ("dicom", "i_contour", "o_contour"):
            assert sample[key] is None or (fault_tree.root / sample[key]).is_file()
    assert {(p["code"], p["path"]) for p in document["problems"]} == fault_tree.problems
    assert all({"code", "severity", "path", "message"} <= set(p) for p in document["problems"])


@pytest.mark.slow
def test_load_reports_files_changed_since_the_scan(tmp_path, fault_tree):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(fault_tree.root, root, symlinks=True)
    index = scan(root)
    k = _position(index, "P1", 1)
    (root / index[k].i_contour).write_text("garbage\n")
    with pytest.raises(ContourError, match="line 1"):
        index.load(k)
    (root / index[k].dicom).write_text("not a DICOM any more")
    with pytest.raises(DicomError, match="not a DICOM"):
        index.load(k)


def test_load_out_of_range_names_the_position_and_the_size(index):
    with pytest.raises(
        IndexError, match=rf"sample {len(index)} out of range.*{len(index)} samples"
    ):
        index.load(len(index))
    assert index.load(-1).slice == index[-1].slice


ZIGZAG = "".join(f"{k % 30} {31 * (k % 2)}\n" for k in range(36_000))  # 1.1e6 crossings


@pytest.mark.parametrize(
    ("kind", "content", "code"),
    [
        ("i", "8 8\n8 20\n40 20\n", "out-of-bounds"),  # x = 40 on a 32-wide image
        ("i", "8 -9\n8 20\n20 20\n", "out-of-bounds"),
        ("i", ZIGZAG, "too-many-crossings"),
        ("i", "8 8\n8 2_0\n20 20\n", "unparseable-contour"),
        ("i", "8 8\n8 \u0662\u0660\n20 20\n", "unparseable-contour"),
        ("i", "8 8\n8 1e999\n20 20\n", "non-finite-coordinate"),
        ("o", "4 4\n26 26\n4 4\n", "too-few-points"),
        ("dicom", {"RescaleSlope": "1e39"}, "invalid-rescale"),
        ("dicom", {"PhotometricInterpretation": "PALETTE COLOR"}, "unreadable-dicom"),
    ],
)
def test_loading_enforces_every_rule_the_scan_enforces(tmp_path, kind, content, code):
    # A file rewritten after the scan: the scan of the rewritten tree refuses it
    # with `code`, and loading the old index refuses it with the same code,
    # through Index.load and the loader's IndexSource alike; never clipped or served.
    from helpers import I_SQUARE, O_SQUARE, contour_name, write_dicom

    from dicontour.loader import IndexSource

    root = tmp_path / "data"
    (root / "dicoms/P1").mkdir(parents=True)
    (root / "link.csv").write_text("patient_id,original_id\nP1,O1\n")
    write_dicom(root / "dicoms/P1/1.dcm", np.arange(32 * 32, dtype=np.int16).reshape(32, 32))
    for kind_, square in (("i", I_SQUARE), ("o", O_SQUARE)):
        path = root / "contourfiles/O1" / contour_name(kind_, 1)
        path.parent.mkdir(parents=True)
        path.write_text(square)
    index = scan(root)
    assert not index.problems
    k = 0
    record = index[k]
    if kind == "dicom":
        path = record.dicom
        pixels = pydicom.dcmread(root / path).pixel_array
        write_dicom(root / path, pixels, InstanceNumber=1, **content)
    else:
        path = record.i_contour if kind == "i" else record.o_contour
        (root / path).write_text(content)
    rescanned = scan(root)
    assert (code, path) in {(p.code, p.path) for p in rescanned.problems}
    error = DicomError if kind == "dicom" else ContourError
    with pytest.raises(error) as info:
        index.load(k)
    assert info.value.code == code
    assert info.value.path.endswith(path)  # Index.load names a local file by its full path
    with pytest.raises(error) as info:
        IndexSource(index).read(k, "both")
    assert (info.value.code, info.value.path) == (code, path)
    image, masks = np.zeros((32, 32), np.float32), np.zeros((2, 32, 32), bool)
    with pytest.raises(error) as info:  # the loader's path: straight into its slot
        IndexSource(index).read_into(k, "both", image, masks)
    assert (info.value.code, info.value.path) == (code, path)


def test_read_into_writes_what_read_returns(real_data):
    # The loader's slot path against the returning path, over stale slot
    # contents: every pixel and mask value is written, none kept from before.
    from dicontour.loader import IndexSource

    index = scan(real_data)
    source = IndexSource(index)
    both = index.select("both")
    for target, keys in (
        ("i", index.select("i")[::9]),
        ("o", index.select("o")[::5]),
        ("both", both[::5]),
    ):
        for k in keys:
            image, mask = source.read(k, target)
            slot_image = np.full(image.shape, np.nan, np.float32)
            slot_mask = np.ones(mask.shape, bool)
            source.read_into(k, target, slot_image, slot_mask)
            assert slot_image.tobytes() == image.tobytes()
            np.testing.assert_array_equal(slot_mask, mask)
            np.testing.assert_array_equal(
                slot_mask, index.load(k).mask(target)
            )  # Index.load agrees
    image, mask = source.read(both[0], "both")
    with pytest.raises(ValueError, match="does not fit"):
        source.read_into(both[0], "both", image, mask[0])
    with pytest.raises(ValueError, match="does not fit"):
        source.read_into(both[0], "i", image.astype(np.float64), mask[0])
