"""dicontour._table.RecordTable: an index's records column-wise, rebuilt equal in every field."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dicontour
from dicontour._table import RecordTable
from dicontour.dicom import DicomHeader, RawPixels
from dicontour.index import SampleRecord
from dicontour.phantom import write_phantom


def same(a: SampleRecord, b: SampleRecord) -> bool:
    """Equal in every field, the header included, with the same types."""
    fields = ["patient_id", "original_id", "slice", "dicom", "i_contour", "o_contour"]
    return (
        all(type(getattr(a, f)) is type(getattr(b, f)) for f in fields)
        and a == b
        and a.header == b.header
        and repr(a.header) == repr(b.header)
    )


text = st.text(st.characters(codec="utf-8") | st.sampled_from(["/", "\udcff"]), max_size=12)
path = st.one_of(st.none(), text)
floats = st.floats(allow_nan=False) | st.just(-0.0)
raws = st.one_of(
    st.none(),
    st.builds(
        RawPixels,
        offset=st.integers(0, 2**40),
        dtype=st.sampled_from(["<u2", "<i2", "u1"]),
        size=st.integers(0, 2**40),
        mtime_ns=st.integers(-(2**63), 2**63 - 1),
    ),
)
headers = st.builds(
    DicomHeader,
    rows=st.integers(0, 2**16),
    columns=st.integers(0, 2**16),
    pixel_spacing=st.none() | st.tuples(floats, floats),
    instance_number=st.none() | st.integers(-(2**70), 2**70),  # beyond int64: kept as is
    sop_instance_uid=st.none() | text,
    slope=floats,
    intercept=floats,
    transfer_syntax=st.sampled_from(["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", ""]),
    raw=raws,
    modality_lut=st.booleans(),
    image_position=st.none() | st.tuples(floats, floats, floats),
    image_orientation=st.none()
    | st.sampled_from([(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (1.0, -0.0, 0.0, 0.0, 1.0, 0.0)])
    | st.tuples(*[floats] * 6),
    slice_thickness=st.none() | floats,
    frame_of_reference_uid=st.none() | st.sampled_from(["1.2.3", "1.2.4"]),
    series_instance_uid=st.none() | text,
    study_instance_uid=st.none() | st.sampled_from(["9.8", ""]),
)
records = st.builds(
    SampleRecord,
    patient_id=st.sampled_from(["P1", "P2", "", "é"]),
    original_id=st.sampled_from(["O1", "O2"]),
    slice=st.integers(-(2**64), 2**64),
    dicom=text,
    i_contour=path,
    o_contour=path,
    header=headers,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(records, max_size=30))
def test_any_records_come_back_equal_in_every_field(given_records):
    table = RecordTable(iter(given_records))
    assert len(table) == len(given_records)
    for got, expected in zip(table, given_records, strict=True):
        assert same(got, expected), (got, expected)
    assert table.patient_ids() == [r.patient_id for r in given_records]
    has = [[r.i_contour is not None, r.o_contour is not None] for r in given_records]
    assert table.has_contours().tolist() == has


def test_chunks_and_negative_positions(monkeypatch):
    monkeypatch.setattr("dicontour._table._CHUNK", 3)  # several chunks from 10 records
    header = DicomHeader(4, 5, (1.0, 1.0), 7, "1.2.3", 1.0, 0.0, "1.2.840.10008.1.2.1")
    given = [
        SampleRecord(f"P{k % 2}", "O", k, f"dicoms/P/{k}.dcm", f"c/i/{k}.txt", None, header)
        for k in range(10)
    ]
    table = RecordTable(given)
    assert [r.dicom for r in table] == [r.dicom for r in given]
    assert same(table[-1], given[-1]) and table[2:4] == tuple(given[2:4])
    with pytest.raises(IndexError, match="out of range"):
        table[10]


def test_real_index_round_trips_within_250_bytes_a_record(real_data):
    index = dicontour.scan(real_data)
    assert isinstance(index.samples, RecordTable)
    rebuilt = RecordTable(list(index.samples))
    for got, expected in zip(rebuilt, index.samples, strict=True):
        assert same(got, expected)
    assert rebuilt.nbytes / len(rebuilt) <= 250
    # What the loaders and summaries use, read from the columns, agrees with the records.
    assert index.select("i") == [k for k, r in enumerate(index.samples) if r.has("i")]
    assert index.summary["i_contours"] == 96 and index.summary["o_contours"] == 46
    again = pickle.loads(pickle.dumps(index))
    assert all(same(a, b) for a, b in zip(again.samples, index.samples, strict=True))


def test_phantom_index_held_in_columns(tmp_path):
    write_phantom(tmp_path, patients=3, slices=20, shape=(32, 32), labelled_every=1, faults=False)
    index = dicontour.scan(tmp_path)
    table = index.samples
    assert isinstance(table, RecordTable) and len(table) == 60
    assert table.nbytes / len(table) <= 250
    first = table[0]
    assert first.dicom == f"dicoms/{first.patient_id}/{first.slice}.dcm"
    assert np.array_equal(
        table.has_contours(), [[r.i_contour is not None, r.o_contour is not None] for r in table]
    )


uids = st.from_regex(r"\A[0-9]{0,3}(\.[0-9]{0,25}){0,6}\Z") | text


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 8), uids, uids, st.sampled_from("/-_")),
        min_size=1,
        max_size=20,
    )
)
def test_uids_and_numbered_paths_round_trip(rows):
    """UIDs (digit tails packed two a byte, leading zeros and empty parts included) and
    paths that spell the slice number zero-padded (kept as one template per patient)."""
    header = DicomHeader(4, 5, (1.0, 1.0), 7, "1.2.3", 1.0, 0.0, "1.2.840.10008.1.2.1")
    given = [
        SampleRecord(
            "P",
            "O",
            number,
            f"dicoms/P{number % 3}/{number:0{width}d}.dcm",
            f"c{sep}i{sep}IM-0001-{number:0{width}d}{sep}{number}.txt",
            None,
            replace(header, sop_instance_uid=sop, frame_of_reference_uid=frame),
        )
        for number, width, sop, frame, sep in rows
    ]
    table = RecordTable(given)
    for got, expected in zip(table, given, strict=True):
        assert same(got, expected), (got, expected)
    assert not table._odd  # all held in the columns


def test_repeated_paths_and_uids_cost_few_bytes_a_record():
    header = DicomHeader(256, 256, (1.25, 1.25), 1, None, 1.0, 0.0, "1.2.840.10008.1.2.1")
    given = [
        SampleRecord(
            f"SCD{k // 200:07d}",
            f"SC-{k // 200}",
            k % 200,
            f"dicoms/SCD{k // 200:07d}/{k % 200}.dcm",
            f"contourfiles/SC-{k // 200}/i-contours/IM-0001-{k % 200:04d}-icontour-manual.txt",
            None,
            replace(header, sop_instance_uid=f"1.2.840.99.{10**20 + k}"),
        )
        for k in range(2000)
    ]
    table = RecordTable(given)
    assert [r.i_contour for r in table] == [r.i_contour for r in given]
    assert table[1999].header.sop_instance_uid == f"1.2.840.99.{10**20 + 1999}"
    # 21 digits packed in 11 bytes, the rest one or two bytes a column.
    assert table.nbytes / len(table) < 40


@settings(max_examples=60, deadline=None)
@given(st.lists(records, min_size=1, max_size=20), st.data())
def test_columns_read_without_rebuilding_agree_with_the_records(given_records, data):
    """What the loader's meta reads from the columns (odd records included)."""
    table = RecordTable(given_records)
    indices = np.array(
        data.draw(st.lists(st.integers(0, len(given_records) - 1), max_size=10)), dtype=np.int64
    )
    chosen = [given_records[k] for k in indices.tolist()]
    assert table.shapes().tolist() == [[r.header.rows, r.header.columns] for r in given_records]
    assert table.patient_ids(indices) == [r.patient_id for r in chosen]
    fits = [r for r in chosen if -(2**63) <= r.slice < 2**63]
    if len(fits) == len(chosen):
        assert table.slices(indices).tolist() == [r.slice for r in chosen]
    spacing = table.spacings(indices)
    for row, r in zip(spacing.tolist(), chosen, strict=True):
        expected = r.header.pixel_spacing
        if expected is None:
            assert np.isnan(row).all()
        else:
            assert row == [float(v) for v in expected] or np.isnan(expected).any()


@given(st.lists(records, min_size=1, max_size=20))
def test_for_reading_keeps_every_field_a_read_needs(given_records):
    """The loader's light record (no UIDs, position, orientation) reads the same files
    the same way as the full record: paths, shape, spacing, rescale and pixel layout."""
    table = RecordTable(given_records)
    for k, full in enumerate(given_records):
        light = table.for_reading(k)
        assert (light.dicom, light.i_contour, light.o_contour) == (
            full.dicom,
            full.i_contour,
            full.o_contour,
        )
        assert (light.patient_id, light.slice) == (full.patient_id, full.slice)
        for field in ("rows", "columns", "pixel_spacing", "transfer_syntax", "raw"):
            assert getattr(light.header, field) == getattr(full.header, field), field
        for field in ("slope", "intercept"):  # bit for bit (-0.0 and NaN included)
            assert (
                np.float64(getattr(light.header, field)).tobytes()
                == np.float64(getattr(full.header, field)).tobytes()
            ), field
        assert light.header.modality_lut == full.header.modality_lut
    with pytest.raises(IndexError):
        table.for_reading(len(given_records))
