"""The header read's in-memory fast path decides every file as the counted careful path does."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from helpers import insert_before_pixels, tiny_elements, write_dicom
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

import dicontour.dicom
from dicontour.dicom import DicomHeader, read_dicom, read_dicom_header
from dicontour.errors import DicomError

_SMALL = np.arange(12, dtype=np.int16).reshape(3, 4)  # the whole file fits the first read
_LARGE = np.arange(128 * 128, dtype=np.uint16).reshape(128, 128)  # 32 KiB of pixels after it


def _outcome(function, data: bytes) -> DicomHeader | tuple[str, str]:
    """What ``function`` makes of ``data``: the header, or the error's (reason, code)."""
    try:
        result = function(io.BytesIO(data), name="f.dcm")
    except DicomError as exc:
        return exc.reason, exc.code
    return result if isinstance(result, DicomHeader) else result.header


def _careful(monkeypatch: pytest.MonkeyPatch, function, data: bytes):
    with monkeypatch.context() as patch:
        patch.setattr(dicontour.dicom, "_parsed_in_memory", lambda *args: None)
        return _outcome(function, data)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], bytes]:
    folder = tmp_path_factory.mktemp("head")
    files = {}
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        for large in (False, True):
            path = write_dicom(
                folder / f"{syntax}-{large}.dcm",
                _LARGE if large else _SMALL,
                syntax=syntax,
                RescaleSlope="2",
                ImagePositionPatient=[1, 2, 3],
            )
            files[(syntax, large)] = path.read_bytes()
    return files


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    syntax=st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
    large=st.booleans(),
    how=st.sampled_from(["flip", "cut", "junk", "length", "none"]),
    at=st.floats(0, 1),
    blob=st.binary(min_size=1, max_size=16),
)
@example(syntax=ExplicitVRLittleEndian, large=True, how="cut", at=0.5, blob=b"\0")
@example(syntax=ExplicitVRLittleEndian, large=True, how="length", at=0.99, blob=b"\0")
def test_fast_and_careful_paths_agree(
    clean, monkeypatch, syntax: str, large: bool, how: str, at: float, blob: bytes
) -> None:
    data = bytearray(clean[(syntax, large)])
    header_end = data.find(b"\xe0\x7f\x10\x00") + 12 or len(data)
    where = 132 + int(at * (header_end - 132))
    if how == "flip":  # bytes of the header changed
        data[where : where + len(blob)] = bytes(b ^ 0x5A for b in blob)[: len(data) - where]
    elif how == "cut":  # cut anywhere, the pixels included
        del data[int(at * len(data)) :]
    elif how == "junk":
        data[where:where] = blob
    elif how == "length":  # a huge length field in the header
        data[where : where + 4] = b"\xff\xff\xff\x7f"
    data = bytes(data)
    for function in (read_dicom_header, read_dicom):
        assert _outcome(function, data) == _careful(monkeypatch, function, data)


@pytest.mark.parametrize("count", [100, 900, 8_000, 20_000])
def test_headers_around_the_first_reads_agree(clean, monkeypatch, count: int) -> None:
    # 800 B to 160 KiB of elements: inside the 8 KiB and 64 KiB reads, and beyond both.
    data = insert_before_pixels(clean[(ExplicitVRLittleEndian, True)], tiny_elements(count))
    fast = _outcome(read_dicom_header, data)
    assert isinstance(fast, DicomHeader) and fast.shape == (128, 128)
    assert fast == _careful(monkeypatch, read_dicom_header, data)


def test_a_file_object_not_at_its_start_takes_the_careful_path(clean, monkeypatch) -> None:
    data = clean[(ExplicitVRLittleEndian, True)]
    tried = []
    parsed_head = dicontour.dicom._parsed_head
    monkeypatch.setattr(
        dicontour.dicom, "_parsed_head", lambda *args: tried.append(1) or parsed_head(*args)
    )
    handle = io.BytesIO(b"junk" + data)
    handle.seek(4)
    assert read_dicom_header(handle, name="f.dcm").shape == (128, 128)
    assert not tried  # its offsets would be relative to where it stood
    assert read_dicom_header(io.BytesIO(data), name="f.dcm").shape == (128, 128)
    assert tried


def test_the_fast_path_reads_pixels_from_the_file(clean, tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(clean[(ImplicitVRLittleEndian, True)])
    header = read_dicom_header(path)
    assert header.raw is not None and header.raw.offset == path.stat().st_size - _LARGE.nbytes
    np.testing.assert_array_equal(read_dicom(path).image, _LARGE.astype(np.float32) * 2)
