"""dicontour.dicom: float32 images with the rescale, metadata, compressed syntaxes, errors."""

from __future__ import annotations

import io
import os
import tracemalloc
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from helpers import REAL_DATA, insert_before_pixels, tiny_elements, write_dicom
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ImplicitVRLittleEndian

import dicontour
from dicontour import DicomError, read_dicom, read_dicom_header
from dicontour.dicom import MAX_HEADER_BYTES, MAX_PIXELS, _rescale_into, read_dicom_pixels

PIXELS = np.array([[0, 1, 2, 3], [-4, 5, 600, -7000], [8, 9, 10, 32767]], dtype=np.int16)


def pydicom_data(name: str) -> Path:
    """A file of the ``pydicom-data`` package (installed with the test extra)."""
    path = Path(str(files("data_store") / "data" / name))
    assert path.is_file(), f"pydicom-data file {name} missing; pip install pydicom-data"
    return path


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({}, PIXELS.astype(np.float64)),
        # The widely copied helper ignored a slope without an intercept.
        ({"RescaleSlope": 2}, PIXELS * 2.0),
        ({"RescaleSlope": 0.5, "RescaleIntercept": -1024}, PIXELS * 0.5 - 1024),
        ({"RescaleIntercept": 100}, PIXELS + 100.0),
    ],
    ids=["none", "lone-slope", "slope-and-intercept", "lone-intercept"],
)
def test_read_dicom_applies_rescale(tmp_path, make_dicom, attrs, expected):
    path = make_dicom(tmp_path / "a.dcm", PIXELS, **attrs)
    image = read_dicom(path).image
    assert image.dtype == np.float32
    assert image.shape == (3, 4)
    np.testing.assert_array_equal(image, expected.astype(np.float32))


def test_read_dicom_metadata(tmp_path, make_dicom):
    path = make_dicom(
        tmp_path / "a.dcm",
        PIXELS,
        InstanceNumber=17,
        SOPInstanceUID="1.2.3.4.5",
        PixelSpacing=[1.25, 0.625],
        RescaleSlope=3,
    )
    for header in (read_dicom(path).header, read_dicom_header(path)):
        assert (header.rows, header.columns) == (3, 4)
        assert header.shape == (3, 4)
        assert header.pixel_spacing == (1.25, 0.625)
        assert header.instance_number == 17
        assert header.sop_instance_uid == "1.2.3.4.5"
        assert (header.slope, header.intercept) == (3.0, 0.0)


def test_missing_optional_metadata_is_none(tmp_path, make_dicom):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    ds = pydicom.dcmread(path)
    del ds.PixelSpacing, ds.InstanceNumber
    ds.save_as(path)
    header = read_dicom_header(path)
    assert header.pixel_spacing is None
    assert header.instance_number is None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32])
def test_pixel_types_match_pydicom(tmp_path, make_dicom, dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    pixels = rng.integers(max(info.min, -30000), min(info.max, 30000), (5, 7)).astype(dtype)
    path = make_dicom(tmp_path / "a.dcm", pixels)
    image = read_dicom(path).image
    np.testing.assert_array_equal(image, pydicom.dcmread(path).pixel_array.astype(np.float32))
    np.testing.assert_array_equal(image, pixels.astype(np.float32))


def test_implicit_vr_and_file_object(tmp_path, make_dicom):
    path = make_dicom(tmp_path / "a.dcm", PIXELS, syntax=ImplicitVRLittleEndian)
    with open(path, "rb") as handle:
        image = read_dicom(handle).image
        assert not handle.closed  # a function closes only what it opened
    np.testing.assert_array_equal(image, PIXELS.astype(np.float32))
    header = read_dicom_header(io.BytesIO(path.read_bytes()), name="in-memory.dcm")
    assert header.shape == (3, 4)
    assert header.raw is None  # no path to re-open: no fast path


# ------------------------------------------------------------------- compressed files


@pytest.mark.parametrize(
    ("compressed", "uncompressed"),
    [("MR2_J2KR.dcm", "MR2_UNCR.dcm"), ("RG1_J2KR.dcm", "RG1_UNCR.dcm")],
)
@pytest.mark.slow
def test_lossless_jpeg2000_equals_its_uncompressed_twin(compressed, uncompressed):
    a = read_dicom(pydicom_data(compressed))
    b = read_dicom(pydicom_data(uncompressed))
    assert a.header.transfer_syntax == pydicom.uid.JPEG2000Lossless
    assert a.image.dtype == np.float32
    assert a.image.shape == b.image.shape == (a.header.rows, a.header.columns)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.std() > 0  # a real picture, not a blank decode


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "MR2_J2KI.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
@pytest.mark.slow
def test_other_compressed_syntaxes_decode_like_pydicom(name):
    path = pydicom_data(name)
    ds = pydicom.dcmread(path)
    slope = float(ds.get("RescaleSlope", 1))
    intercept = float(ds.get("RescaleIntercept", 0))
    expected = ds.pixel_array.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    decoded = read_dicom(path)
    assert decoded.header.transfer_syntax == ds.file_meta.TransferSyntaxUID
    assert decoded.header.raw is None
    np.testing.assert_array_equal(decoded.image, expected)


def test_rescale_of_a_real_file_applied():
    # MR2_UNCR has RescaleSlope 3.774114 and RescaleIntercept 6.1e-05.
    decoded = read_dicom(pydicom_data("MR2_UNCR.dcm"))
    stored = pydicom.dcmread(pydicom_data("MR2_UNCR.dcm")).pixel_array
    assert decoded.header.slope == pytest.approx(3.774114)
    np.testing.assert_allclose(decoded.image, stored * 3.774114 + 6.1e-05, rtol=1e-6)


# ------------------------------------------------------------------- fast raw path


def test_fast_path_equals_pydicom(tmp_path, make_dicom, monkeypatch):
    rng = np.random.default_rng(2)
    pixels = rng.integers(-3000, 3000, (64, 48)).astype(np.int16)
    path = make_dicom(tmp_path / "a.dcm", pixels, RescaleSlope=2, RescaleIntercept=-100)
    header = read_dicom_header(path)
    assert header.raw is not None
    assert header.raw.size == path.stat().st_size
    expected = read_dicom(path).image
    # Prove the pixels come from the recorded offset, not from a second parse.
    monkeypatch.setattr(dicontour.dicom, "read_dicom", _must_not_parse)
    fast = read_dicom_pixels(path, header)
    assert fast.dtype == np.float32
    np.testing.assert_array_equal(fast, expected)
    np.testing.assert_array_equal(fast, pixels * np.float32(2) - np.float32(100))


def _must_not_parse(*args, **kwargs):
    raise AssertionError("the fast path parsed the file again")


@pytest.mark.parametrize(
    ("dtype", "shape", "syntax"),
    [
        (np.uint16, (256, 256), pydicom.uid.ExplicitVRLittleEndian),
        (np.int16, (7, 5), ImplicitVRLittleEndian),
        (np.uint8, (3, 3), pydicom.uid.ExplicitVRLittleEndian),  # odd length: padded
        (np.int32, (4, 6), pydicom.uid.ExplicitVRLittleEndian),
    ],
)
def test_fast_path_layouts(tmp_path, make_dicom, dtype, shape, syntax):
    count = shape[0] * shape[1]
    pixels = (np.arange(count) * 37 % 251 - (100 if np.dtype(dtype).kind == "i" else 0)).astype(
        dtype
    )
    path = make_dicom(tmp_path / "a.dcm", pixels.reshape(shape), syntax=syntax)
    header = read_dicom_header(path)
    assert header.raw is not None and header.raw.dtype == np.dtype(dtype).newbyteorder("<").str
    np.testing.assert_array_equal(
        read_dicom_pixels(path, header), pydicom.dcmread(path).pixel_array.astype(np.float32)
    )


def test_fast_path_falls_back_when_the_file_changed_same_size(tmp_path, make_dicom):
    path = make_dicom(tmp_path / "a.dcm", PIXELS, SOPInstanceUID="1.2.3")
    header = read_dicom_header(path)
    changed = PIXELS[::-1].copy()
    make_dicom(path, changed, SOPInstanceUID="1.2.3")
    assert path.stat().st_size == header.raw.size
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, header.raw.mtime_ns + 1_000_000_000))
    np.testing.assert_array_equal(read_dicom_pixels(path, header), changed.astype(np.float32))


def test_fast_path_falls_back_when_the_size_changed(tmp_path, make_dicom):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    header = read_dicom_header(path)
    changed = PIXELS + 1
    make_dicom(path, changed, PatientName="Someone^Else")
    stat = path.stat()
    assert stat.st_size != header.raw.size
    os.utime(path, ns=(stat.st_atime_ns, header.raw.mtime_ns))  # same mtime, other size
    np.testing.assert_array_equal(read_dicom_pixels(path, header), changed.astype(np.float32))


def test_fast_path_reports_a_changed_shape(tmp_path, make_dicom):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    header = read_dicom_header(path)
    make_dicom(path, np.zeros((5, 5), np.int16))
    with pytest.raises(DicomError, match="shape changed"):
        read_dicom_pixels(path, header)


def test_fast_path_reports_a_vanished_file(tmp_path, make_dicom):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    header = read_dicom_header(path)
    path.unlink()
    with pytest.raises(DicomError) as info:
        read_dicom_pixels(path, header)
    assert info.value.code == "missing-dicom"


def test_no_fast_path_where_pydicom_would_mask_bits():
    # MR2_UNCR stores 12 bits in 16: only pydicom knows what to do with the rest.
    header = read_dicom_header(pydicom_data("MR2_UNCR.dcm"))
    assert header.raw is None
    np.testing.assert_array_equal(
        read_dicom_pixels(pydicom_data("MR2_UNCR.dcm"), header),
        read_dicom(pydicom_data("MR2_UNCR.dcm")).image,
    )


class _CountingReader(io.BytesIO):
    """A file object that counts the bytes read from it."""

    bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_header_read_does_not_read_the_pixels(tmp_path, make_dicom):
    pixels = np.zeros((512, 512), np.int16)  # 512 KiB of pixel data
    path = make_dicom(tmp_path / "big.dcm", pixels)
    handle = _CountingReader(path.read_bytes())
    header = read_dicom_header(handle, name="big.dcm")
    assert header.shape == (512, 512)
    assert handle.bytes_read < 16 * 1024


# ----------------------------------------------------------------------------- errors


def _error(function, path, **kwargs) -> DicomError:
    with pytest.raises(DicomError) as info:
        function(path, **kwargs)
    error = info.value
    assert str(path) in str(error), "the message names the file"
    assert error.path == str(path)
    assert isinstance(error, ValueError) and isinstance(error, dicontour.DicontourError)
    return error


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
def test_not_dicom(tmp_path, function):
    path = tmp_path / "notes.dcm"
    path.write_text("patient notes, not an image\n")
    error = _error(function, path)
    assert error.code == "unreadable-dicom"
    assert "not a DICOM file" in error.reason


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
def test_empty_file(tmp_path, function):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    assert _error(function, path).code == "unreadable-dicom"


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
@pytest.mark.parametrize("missing", [1, 2, 23, 24])
def test_truncated_in_the_pixel_data(tmp_path, make_dicom, function, missing):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)  # 24 bytes of pixel data at the end
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - missing])
    error = _error(function, path)
    assert error.code == "unreadable-dicom"
    assert "truncated" in error.reason or "less than expected" in error.reason


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
def test_no_pixel_data(tmp_path, make_dicom, function):
    path = make_dicom(tmp_path / "a.dcm", PIXELS, pixel_data=False)
    error = _error(function, path)
    assert error.code == "no-pixel-data"
    assert "no pixel data" in error.reason


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
def test_dimensions_over_the_limit_rejected_before_decoding(
    tmp_path, make_dicom, function, monkeypatch
):
    # The header claims 60000 x 60000 (3.6e9 pixels, 7 GB of int16); the file holds 24 bytes.
    path = make_dicom(tmp_path / "a.dcm", PIXELS, Rows=60000, Columns=60000)
    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(_must_not_parse))
    error = _error(function, path)
    assert error.code == "image-too-large"
    assert "60000x60000" in error.reason and str(MAX_PIXELS) in error.reason


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
def test_max_pixels_is_the_limit(tmp_path, make_dicom, function):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)  # 12 pixels
    assert function(path, max_pixels=12) is not None
    assert _error(function, path, max_pixels=11).code == "image-too-large"


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
def test_missing_file(tmp_path, function):
    error = _error(function, tmp_path / "nowhere.dcm")
    assert error.code == "missing-dicom"
    assert "does not exist" in error.reason


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"RescaleSlope": "abc"}, "RescaleSlope"),
        ({"NumberOfFrames": 2}, "multi-frame"),
        ({"SamplesPerPixel": 3}, "grey-scale"),
        ({"Rows": 0}, "no pixels"),
    ],
    ids=["bad-slope", "multi-frame", "colour", "zero-rows"],
)
def test_unusable_headers(tmp_path, make_dicom, function, attrs, reason):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    ds = pydicom.dcmread(path)
    for keyword, value in attrs.items():
        if keyword == "RescaleSlope":
            ds.add_new(0x00281053, "DS", None)
            ds[0x00281053]._value = value  # bypass pydicom's own validation
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
    error = _error(function, path)
    assert error.code == "unreadable-dicom"
    assert reason in error.reason


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
@pytest.mark.parametrize(
    ("tag", "vr"),
    [(b"\x28\x00\x00\x01", b"US"), (b"\x20\x00\x13\x00", b"IS"), (b"\x28\x00\x30\x00", b"DS")],
    ids=["BitsAllocated", "InstanceNumber", "PixelSpacing"],
)
def test_damaged_element_encoding(tmp_path, make_dicom, function, tag, vr):
    # pydicom parses elements lazily: an unknown VR only raises when the element is used.
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    data = path.read_bytes()
    assert data.count(tag + vr) == 1
    path.write_bytes(data.replace(tag + vr, tag + b"\x55\x82"))
    error = _error(function, path)
    assert error.code == "unreadable-dicom"


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"BitsAllocated": 12}, "BitsAllocated=12"),
        ({"BitsStored": 17}, "BitsStored=17"),
        ({"PixelRepresentation": 2}, "PixelRepresentation=2"),
    ],
)
def test_invalid_pixel_format_caught_by_the_header_read(
    tmp_path, make_dicom, function, attrs, reason
):
    path = make_dicom(tmp_path / "a.dcm", PIXELS, **attrs)
    error = _error(function, path)
    assert error.code == "unreadable-dicom"
    assert reason in error.reason


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
def test_unknown_transfer_syntax_caught_by_the_header_read(tmp_path, make_dicom, function):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"  # parsed as explicit VR, decodable by no one
    ds.save_as(path)
    error = _error(function, path)
    assert error.code == "unreadable-dicom"
    assert "1.2.3.4.5.6" in error.reason


def test_undecodable_compressed_data(tmp_path):
    data = bytearray(pydicom_data("MR2_J2KR.dcm").read_bytes())
    # Zero the JPEG 2000 image header (SIZ segment, after the SOC marker FF4F).
    start = data.find(b"\xff\x4f\xff\x51")
    assert start > 0
    data[start + 4 : start + 40] = bytes(36)
    path = tmp_path / "broken.dcm"
    path.write_bytes(bytes(data))
    error = _error(read_dicom, path)
    assert error.code == "unreadable-dicom"
    assert "decode" in error.reason


def test_public_names():
    assert dicontour.read_dicom is read_dicom
    assert dicontour.DicomError is DicomError


def test_truncated_compressed_file(tmp_path):
    data = pydicom_data("MR2_J2KR.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 2])
    for function in (read_dicom, read_dicom_header):
        with pytest.warns(UserWarning, match="End of file"):
            error = _error(function, path)
        # pydicom drops an encapsulated element the file ends inside of, so the
        # file looks like one without pixel data; the reason says it may be cut.
        assert error.code in ("unreadable-dicom", "no-pixel-data")
        assert "file ends" in error.reason or "truncated" in error.reason


def test_an_oversized_image_is_refused_before_its_pixels_are_read(tmp_path, make_dicom):
    import tracemalloc

    pixels = np.zeros((1024, 1024), dtype=np.uint16)  # 2 MiB of pixel data on disk
    path = make_dicom(tmp_path / "big.dcm", pixels)
    tracemalloc.start()
    try:
        error = _error(read_dicom, path, max_pixels=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == "image-too-large"
    assert peak < pixels.nbytes / 4, f"{peak} bytes allocated before refusing"


# ----------------------------------------------------------------------------- limits


def _traced(function, *args, **kwargs):
    """Call ``function``; return (its result or the exception it raised, peak bytes traced)."""
    tracemalloc.start()
    try:
        try:
            outcome = function(*args, **kwargs)
        except Exception as exc:  # returned for the caller to check
            outcome = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, peak


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
@pytest.mark.parametrize("as_file", [False, True])
def test_file_over_max_file_bytes_refused_before_parsing(
    tmp_path, make_dicom, monkeypatch, function, as_file
):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    size = path.stat().st_size
    monkeypatch.setattr(dicontour.dicom, "MAX_FILE_BYTES", size - 1)
    monkeypatch.setattr(pydicom, "dcmread", _must_not_parse)
    source = io.BytesIO(path.read_bytes()) if as_file else path
    with pytest.raises(DicomError) as info:
        function(source, name=str(path))
    assert info.value.code == "file-too-large"
    assert (
        f"{size} bytes" in info.value.reason and f"MAX_FILE_BYTES={size - 1}" in info.value.reason
    )
    monkeypatch.setattr(dicontour.dicom, "MAX_FILE_BYTES", size)
    monkeypatch.undo()
    assert function(path) is not None  # at the limit: read


@pytest.mark.slow
def test_millions_of_tiny_elements_refused_in_bounded_memory(tmp_path, make_dicom):
    # The audit's case: 40 MB of 5 million empty elements once took 1.6 GB to parse.
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    path.write_bytes(insert_before_pixels(path.read_bytes(), tiny_elements(5_000_000)))
    assert path.stat().st_size > 40_000_000
    error, peak = _traced(read_dicom_header, path)
    assert isinstance(error, DicomError), error
    assert error.code == "header-too-large"
    assert f"MAX_HEADER_BYTES={MAX_HEADER_BYTES}" in error.reason
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB to refuse"
    assert _error(read_dicom, path).code == "header-too-large"  # the same parse


@pytest.mark.slow
def test_header_limit_counts_the_header_not_the_pixels(tmp_path, make_dicom):
    # 8 MiB of pixel data is skipped on disk, not read, while the header is parsed.
    pixels = np.arange(2048 * 2048, dtype=np.uint16).reshape(2048, 2048)
    path = make_dicom(tmp_path / "a.dcm", pixels)
    assert read_dicom_header(path).raw is not None
    np.testing.assert_array_equal(read_dicom(path).image, pixels.astype(np.float32))
    # Just under the limit, many elements are fine; just over, refused.
    for count, refused in ((MAX_HEADER_BYTES // 8 - 200, False), (MAX_HEADER_BYTES // 8, True)):
        path = make_dicom(tmp_path / f"{count}.dcm", PIXELS)
        path.write_bytes(insert_before_pixels(path.read_bytes(), tiny_elements(count)))
        if refused:
            with pytest.raises(DicomError, match="MAX_HEADER_BYTES"):
                read_dicom_header(path)
        else:
            np.testing.assert_array_equal(read_dicom(path).image, PIXELS.astype(np.float32))


def test_deflated_syntax_refused_before_inflating():
    # zlib would inflate the whole dataset at once: a size nothing bounds beforehand.
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file("image_dfl.dcm"))
    assert (
        pydicom.dcmread(path).file_meta.TransferSyntaxUID
        == pydicom.uid.DeflatedExplicitVRLittleEndian
    )
    for function in (read_dicom, read_dicom_header):
        error = _error(function, path)
        assert error.code == "unreadable-dicom" and "deflated" in error.reason


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
@pytest.mark.parametrize(
    ("dtype", "attrs", "words"),
    [
        (np.int16, {"RescaleSlope": "1e39"}, "overflow float32"),  # the audit's case
        (np.uint16, {"RescaleSlope": "6e34"}, "overflow float32"),  # 65535 * 6e34 > 3.4e38
        (np.int16, {"RescaleIntercept": "-3.5e38"}, "overflow float32"),
        (np.uint8, {"RescaleSlope": "1e37", "RescaleIntercept": "3.3e38"}, "overflow float32"),
        (np.int16, {"RescaleSlope": "inf"}, "not finite"),
        (np.int16, {"RescaleIntercept": "NaN"}, "not finite"),
    ],
)
def test_rescale_beyond_float32_refused_at_the_header(
    tmp_path, make_dicom, function, dtype, attrs, words
):
    path = make_dicom(tmp_path / "a.dcm", np.zeros((3, 4), dtype), **attrs)
    error = _error(function, path)
    assert error.code == "invalid-rescale"
    assert words in error.reason


def test_rescale_range_is_that_of_the_stored_bits(tmp_path, make_dicom):
    # 12 bits stored: values reach 4095, and 4095 * 8e34 = 3.3e38 fits float32 ...
    pixels = np.array([[0, 4095]], dtype=np.uint16)
    path = make_dicom(tmp_path / "a.dcm", pixels, BitsStored=12, HighBit=11, RescaleSlope="8e34")
    image = read_dicom(path).image
    assert np.isfinite(image).all() and image[0, 1] == np.float32(4095 * 8e34)
    # ... while 16 bits stored could reach 65535 * 8e34: refused though no pixel is that large.
    path = make_dicom(tmp_path / "b.dcm", pixels, RescaleSlope="8e34")
    assert _error(read_dicom_header, path).code == "invalid-rescale"


def test_fast_path_never_serves_non_finite_values(tmp_path, make_dicom):
    # Headers are checked, so this takes a header altered by hand: defence in depth.
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    header = read_dicom_header(path)
    assert header.raw is not None
    with pytest.raises(DicomError, match="NaN or infinite"):
        read_dicom_pixels(path, replace(header, slope=1e39))


def test_modality_lut_sequence_is_applied_like_pydicom():
    # mlut_18.dcm maps its pixels through a Modality LUT; ignoring it was off by 63,488.
    path = pydicom_data("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    assert np.abs(expected - ds.pixel_array).max() > 60_000  # the LUT matters here
    header = read_dicom_header(path)
    assert header.modality_lut and header.raw is None  # no direct-offset shortcut
    np.testing.assert_array_equal(read_dicom(path).image, expected.astype(np.float32))
    np.testing.assert_array_equal(read_dicom_pixels(path, header), expected.astype(np.float32))


def _with_modality_lut(ds: pydicom.Dataset, table: np.ndarray, first: int) -> None:
    item = pydicom.Dataset()
    item.LUTDescriptor = [len(table), first, 16]
    item.ModalityLUTType = "US"
    item.add_new(0x00283006, "OW", table.astype("<u2").tobytes())  # LUTData
    ds.ModalityLUTSequence = pydicom.Sequence([item])


def test_modality_lut_of_a_fast_path_file_is_applied(tmp_path, make_dicom):
    # An uncompressed 16-bit file would take the direct-offset path: not with a LUT.
    pixels = np.array([[0, 1, 2, 3], [4, 5, 6, 7]], dtype=np.uint16)
    path = make_dicom(tmp_path / "a.dcm", pixels, RescaleSlope=1000)
    ds = pydicom.dcmread(path)
    table = np.array([100, 200, 300, 400, 500])  # entries for stored values 2..6
    _with_modality_lut(ds, table, first=2)
    ds.save_as(path)
    # By hand: below the first mapped value -> first entry, above the last -> last entry.
    expected = np.array([[100, 100, 100, 200], [300, 400, 500, 500]], dtype=np.float32)
    header = read_dicom_header(path)
    assert header.modality_lut and header.raw is None
    np.testing.assert_array_equal(read_dicom(path).image, expected)
    np.testing.assert_array_equal(read_dicom_pixels(path, header), expected)


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
def test_malformed_modality_lut_refused_at_the_header(tmp_path, make_dicom, function):
    path = make_dicom(tmp_path / "a.dcm", PIXELS.astype(np.uint16))
    ds = pydicom.dcmread(path)
    _with_modality_lut(ds, np.arange(8), first=0)
    del ds.ModalityLUTSequence[0].LUTData
    ds.save_as(path)
    assert "Modality LUT" in _error(function, path).reason


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
@pytest.mark.parametrize("photometric", ["RGB", "PALETTE COLOR", "YBR_FULL", "ARGB", None])
def test_only_grey_photometric_interpretations(tmp_path, make_dicom, function, photometric):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    ds = pydicom.dcmread(path)
    if photometric is None:
        del ds.PhotometricInterpretation
    else:
        ds.PhotometricInterpretation = photometric
    ds.save_as(path)
    error = _error(function, path)
    assert error.code == "unreadable-dicom"
    assert "PhotometricInterpretation" in error.reason and "MONOCHROME2" in error.reason


def test_monochrome1_values_are_kept_as_stored(tmp_path, make_dicom):
    # MONOCHROME1 shows low values white; the values themselves mean the same.
    path = make_dicom(tmp_path / "a.dcm", PIXELS, PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_array_equal(read_dicom(path).image, PIXELS.astype(np.float32))


@pytest.mark.parametrize("function", [read_dicom, read_dicom_header])
@pytest.mark.parametrize("keyword", ["BitsStored", "PixelRepresentation", "BitsAllocated"])
def test_elements_the_decoder_needs_are_required(tmp_path, make_dicom, function, keyword):
    path = make_dicom(tmp_path / "a.dcm", PIXELS)
    ds = pydicom.dcmread(path)
    delattr(ds, keyword)
    ds.save_as(path)
    error = _error(function, path)
    assert error.code == "unreadable-dicom" and keyword in error.reason


def test_an_undecodable_compressed_stream_fails_the_header_read(tmp_path):
    data = bytearray(pydicom_data("MR2_J2KR.dcm").read_bytes())
    start = data.find(b"\xff\x4f\xff\x51")
    data[start + 4 : start + 40] = bytes(36)
    path = tmp_path / "broken.dcm"
    path.write_bytes(bytes(data))
    error = _error(read_dicom_header, path)  # decoded during the header read: a scan catches it
    assert "decode" in error.reason
    assert read_dicom_header(path, verify_pixels=False).shape == (1024, 1024)  # opted out


# -------------------------------------------- the header check and the decoder agree


def _testdata_files() -> list[Path]:
    from pydicom.data import get_testdata_files

    return sorted(Path(p) for p in get_testdata_files() if Path(p).is_file())


@pytest.mark.parametrize("path", _testdata_files(), ids=lambda p: p.name)
@pytest.mark.slow
def test_pydicom_test_files_are_refused_at_the_header_or_read_like_pydicom(path):
    try:
        header = read_dicom_header(path)
    except DicomError:
        return  # refused up front, as a scan reports it
    decoded = read_dicom(path)  # must not fail: the scan passed it
    image = decoded.image
    assert image.dtype == np.float32 and image.shape == header.shape
    assert np.isfinite(image).all()
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_allclose(image, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_array_equal(read_dicom_pixels(path, header), image)


def test_the_corpus_holds_refused_and_read_files():
    # The test above is meaningful only if both outcomes occur.
    outcomes = {"read": 0, "refused": 0}
    for path in _testdata_files():
        try:
            read_dicom_header(path, verify_pixels=False)
            outcomes["read"] += 1
        except DicomError:
            outcomes["refused"] += 1
    assert outcomes["read"] > 50 and outcomes["refused"] > 100


# ----------------------------------------------------------------------------- fuzzing


def _seed_files(tmp_path: Path) -> list[Path]:
    """Files to mutate: a real slice if the data is here, a written one, pydicom's."""
    from pydicom.data import get_testdata_file

    seeds = [write_dicom(tmp_path / "written.dcm", PIXELS, RescaleSlope=2, RescaleIntercept=-5)]
    real = sorted(REAL_DATA.glob("dicoms/*/1.dcm"))[:1]
    seeds += real
    names = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "mlut_18.dcm"]
    seeds += [Path(get_testdata_file(name)) for name in names]
    return seeds


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded damage: flipped bytes, an extreme length or value, a cut, a repeat."""
    out = bytearray(data)
    header_end = min(len(out), 2048)  # most damage where the parser looks
    kind = rng.integers(5)
    at = int(rng.integers(128, header_end))
    if kind == 0:
        for _ in range(int(rng.integers(1, 8))):
            out[int(rng.integers(128, header_end))] = int(rng.integers(256))
    elif kind == 1:
        word = [b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x00\x00\x00\x00"]
        out[at : at + 4] = word[int(rng.integers(4))]
    elif kind == 2:
        del out[int(rng.integers(128, len(out))) :]
    elif kind == 3:
        length = int(rng.integers(1, 64))
        out[at:at] = out[at : at + length]
    else:
        out[at : at + 2] = bytes(rng.integers(0, 256, 2, dtype=np.uint8))
    return bytes(out)


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_mutated_files_raise_only_dicom_errors_in_bounded_memory(tmp_path):
    rng = np.random.default_rng(11)
    outcomes = {"read": 0, "refused": 0}
    for seed in _seed_files(tmp_path):
        data = seed.read_bytes()
        for k in range(40):
            path = tmp_path / f"{seed.stem}-{k}.dcm"
            path.write_bytes(_mutate(data, rng))
            header, peak = _traced(read_dicom_header, path)
            assert peak < 64 * 2**20, (path, peak)
            if isinstance(header, DicomError):
                outcomes["refused"] += 1
                continue
            assert not isinstance(header, Exception), (seed.name, k, header)
            decoded, peak = _traced(read_dicom, path)
            assert peak < 64 * 2**20, (path, peak)
            # What the header read passes, the decoder reads.
            assert not isinstance(decoded, Exception), (seed.name, k, decoded)
            assert decoded.image.dtype == np.float32 and decoded.image.shape == header.shape
            assert np.isfinite(decoded.image).all()
            np.testing.assert_array_equal(read_dicom_pixels(path, header), decoded.image)
            outcomes["read"] += 1
    assert outcomes["read"] > 20 and outcomes["refused"] > 20, outcomes


@pytest.mark.parametrize(
    ("name", "marker", "start", "size"),
    [
        # JPEG 2000 SIZ: Xsiz, Ysiz (4 bytes each) at +8; JPEG SOF: rows, columns at +5.
        ("MR_small_jp2klossless.dcm", b"\xff\x4f\xff\x51", 8, b"\x00\x00\xff\xf0" * 2),
        ("MR_small_jpeg_ls_lossless.dcm", b"\xff\xf7", 5, b"\xff\xf0" * 2),  # SOF55
        ("JPEG-LL.dcm", b"\xff\xc3", 5, b"\xff\xf0" * 2),  # SOF3
    ],
)
def test_compressed_frame_larger_than_the_header_refused_before_decoding(
    tmp_path, name, marker, start, size
):
    # The decoder allocates what the frame declares: 65535 x 65535 (JPEG) or
    # more (JPEG 2000) whatever Rows and Columns say.
    from pydicom.data import get_testdata_file

    data = bytearray(Path(get_testdata_file(name)).read_bytes())
    at = data.find(marker)
    assert at > 0
    data[at + start : at + start + len(size)] = size  # 65520 x 65520
    path = tmp_path / "huge.dcm"
    path.write_bytes(bytes(data))
    for function in (read_dicom_header, read_dicom):
        error, peak = _traced(function, path)
        assert isinstance(error, DicomError), error
        assert "compressed frame declares" in error.reason and "65520" in error.reason
        assert peak < 16 * 2**20


@settings(max_examples=150, deadline=None)
@given(
    dtype=st.sampled_from(
        ["uint8", "int8", "uint16", "int16", ">i2", "uint32", "int32", "float64", ">f8"]
    ),
    seed=st.integers(0, 2**32 - 1),
    slope=st.floats(-(2.0**100), 2.0**100, allow_nan=False, width=32),
    intercept=st.floats(-(2.0**127), 2.0**127, allow_nan=False, width=32),
    lut=st.booleans(),
    strided=st.booleans(),
)
def test_rescale_is_numpys_float32_arithmetic(dtype, seed, slope, intercept, lut, strided):
    # The one-pass kernel against the numpy steps it replaced: copy as float32,
    # then *= slope and += intercept in float32 (skipped for 1 and 0, and under a
    # modality LUT), bit for bit, and "non-finite" exactly when numpy's result is.
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    info = np.iinfo(kind) if kind.kind in "iu" else None
    pixels = (
        rng.integers(info.min, info.max, size=(7, 5), endpoint=True, dtype=kind.newbyteorder("="))
        if info
        else rng.normal(0, 1e4, size=(7, 5))
    ).astype(kind)
    header = SimpleNamespace(slope=slope, intercept=intercept, modality_lut=lut)  # what it reads
    expected = pixels.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        if not lut and slope != 1.0:
            expected *= np.float32(slope)
        if not lut and intercept != 0.0:
            expected += np.float32(intercept)
    out = np.full((7, 10) if strided else (7, 5), np.nan, np.float32)
    target = out[:, ::2] if strided else out
    if np.isfinite(expected).all():
        _rescale_into(pixels, header, target, "x.dcm")
        np.testing.assert_array_equal(target.view(np.uint32), expected.view(np.uint32))
    else:
        with pytest.raises(DicomError, match=r"x\.dcm: the decoded image holds NaN or infinite"):
            _rescale_into(pixels, header, target, "x.dcm")
