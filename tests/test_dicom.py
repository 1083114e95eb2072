"""dicontour.dicom: float32 images with the rescale, metadata, compressed syntaxes, errors."""

from __future__ import annotations

import io
import os
from importlib.resources import files
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

import dicontour
from dicontour import DicomError, read_dicom, read_dicom_header
from dicontour.dicom import MAX_PIXELS, read_dicom_pixels

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
def test_lossless_jpeg2000_equals_its_uncompressed_twin(compressed, uncompressed):
    a = read_dicom(pydicom_data(compressed))
    b = read_dicom(pydicom_data(uncompressed))
    assert a.header.transfer_syntax == pydicom.uid.JPEG2000Lossless
    assert a.image.dtype == np.float32
    assert a.image.shape == b.image.shape == (a.header.rows, a.header.columns)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.std() > 0  # a real picture, not a blank decode


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "MR2_J2KI.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
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
