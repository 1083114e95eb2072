"""The header read's plain fast path (no pydicom) gives pydicom's header, or none at all.

The property: for any file, mutated or not, the fast path either falls back
(returns None) or returns exactly the header the careful pydicom path returns
for the same file; never a header where pydicom would refuse the file, never
a different value.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from helpers import REAL_DATA, write_dicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

import dicontour.dicom
from dicontour import _dicom_plain as plain
from dicontour.dicom import DicomHeader, read_dicom_header
from dicontour.errors import DicomError

_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_REAL_FILE = REAL_DATA / "dicoms" / "SCD0000101" / "48.dcm"
# What DS, IS, UI and CS values are made of, and what breaks them.
_VALUE_BYTES = st.sampled_from(list(b"0123456789.+-eE \\\x00AZ_,\xe9\x7f"))


def _fast(path: Path) -> DicomHeader | None:
    with open(path, "rb") as handle:
        header = dicontour.dicom._plain_header(handle, dicontour.dicom.MAX_PIXELS)
        if header is None:
            assert handle.tell() == 0, "a fallback leaves the file at its start"
        return header


def _careful(path: Path) -> DicomHeader | tuple[str, str]:
    """pydicom's header of ``path`` (with its pixel layout), or its error's (reason, code)."""
    try:
        header, raw = dicontour.dicom._careful_header(
            path, path.name, dicontour.dicom.MAX_PIXELS, True
        )
    except DicomError as exc:
        return exc.reason, exc.code
    return replace(header, raw=raw)


def _agrees(path: Path) -> DicomHeader | None:
    fast = _fast(path)
    if fast is not None:
        assert _careful(path) == fast
    return fast


def _elements(data: bytes) -> dict[int, tuple[int, int]]:
    """(value offset, length) of each top-level element of an explicit VR LE file."""
    found, position = {}, 132
    while position + 8 <= len(data):
        group, element, vr = struct.unpack_from("<HH2s", data, position)
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"OF", b"OD", b"OL"):
            (length,) = struct.unpack_from("<I", data, position + 8)
            start = position + 12
        else:
            (length,) = struct.unpack_from("<H", data, position + 6)
            start = position + 8
        found[group << 16 | element] = (start, length)
        if (group, element) == (0x7FE0, 0x0010):
            break
        position = start + length
    return found


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("plain")
    pixels = np.arange(64 * 64, dtype=np.int16).reshape(64, 64)
    files = {
        "written": write_dicom(
            folder / "w.dcm",
            pixels,
            RescaleSlope="2",
            RescaleIntercept="-1.5",
            ImagePositionPatient=[1, 2, 3],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            SliceThickness="8",
            FrameOfReferenceUID="1.2.3",
        ).read_bytes()
    }
    if _REAL_FILE.is_file():
        files["real"] = _REAL_FILE.read_bytes()
    return files


def test_a_written_file_takes_the_fast_path_with_pydicoms_values(
    sources: dict[str, bytes], tmp_path: Path
) -> None:
    path = tmp_path / "f.dcm"
    path.write_bytes(sources["written"])
    header = _agrees(path)
    assert header is not None
    assert (header.rows, header.columns, header.slope, header.intercept) == (64, 64, 2.0, -1.5)
    assert header.image_position == (1.0, 2.0, 3.0)
    assert header.raw is not None and header.raw.dtype == "<i2"


def test_other_transfer_syntaxes_and_trailing_bytes_fall_back(tmp_path: Path) -> None:
    implicit = write_dicom(tmp_path / "i.dcm", syntax=ImplicitVRLittleEndian)
    assert _fast(implicit) is None
    trailing = write_dicom(tmp_path / "t.dcm", syntax=ExplicitVRLittleEndian)
    trailing.write_bytes(trailing.read_bytes() + b"\0\0\0\0")
    assert _fast(trailing) is None  # pydicom would parse what follows the pixel data
    assert read_dicom_header(trailing).rows == 3  # the careful path still reads it


def test_a_stream_without_rewind_takes_the_careful_path(sources: dict[str, bytes]) -> None:
    # A pipe has a descriptor (and a size of 0) but cannot be rewound: the fast path must
    # not read from it, so that the careful path words its failure as before.
    outcomes = []
    for fast in (True, False):
        read, write = os.pipe()
        os.write(write, sources["written"][:4096])
        os.close(write)
        with os.fdopen(read, "rb") as handle, contextlib.ExitStack() as stack:
            if not fast:
                stack.enter_context(
                    mock.patch.object(dicontour.dicom, "_plain_header", lambda *args: None)
                )
            with pytest.raises(DicomError) as caught:
                read_dicom_header(handle)
            outcomes.append((caught.value.reason, caught.value.code))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize(
    ("convert", "args", "expected"),
    [
        (plain.as_decimals, ((b"DS", b"1.5\\-2e1 "), 2), (1.5, -20.0)),
        (plain.as_decimals, ((b"DS", b"1.5\\\\2"), 3), None),  # an empty value: pydicom's ''
        (plain.as_decimals, ((b"DS", b"nan "), 1), None),
        (plain.as_decimals, ((b"IS", b"1 "), 1), None),  # another VR than the tag's
        (plain.as_integer, ((b"IS", b" 12 "),), 12),
        (plain.as_integer, ((b"IS", b"1.0 "),), None),
        (plain.as_uid, ((b"UI", b"1.2.3\0"),), "1.2.3"),
        (plain.as_uid, ((b"UI", b"1.2\\3.4\0"),), None),  # two UIDs
        (plain.as_code, ((b"CS", b"MONOCHROME2 "),), "MONOCHROME2"),
        (plain.as_us, ((b"US", b"\x00\x01"),), 256),
        (plain.as_us, ((b"US", b"\x00\x01\x00\x01"),), None),  # two values
    ],
)
def test_converters_take_only_unambiguous_forms(convert, args, expected) -> None:
    assert convert(*args) == expected


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="real data not found")
def test_every_real_file_takes_the_fast_path_and_agrees(tmp_path: Path) -> None:
    files = sorted((REAL_DATA / "dicoms").glob("*/*.dcm"))
    assert len(files) > 1000
    for path in files:
        fast = _fast(path)
        assert fast is not None, f"{path}: the real MR files are plain"
        assert fast == _careful(path), path


@_SETTINGS
@given(
    source=st.sampled_from(["written", "real"]),
    tag=st.sampled_from(sorted(dicontour.dicom._PLAIN_TAGS)),
    data=st.data(),
)
def test_a_changed_value_gives_pydicoms_header_or_falls_back(
    sources: dict[str, bytes], tmp_path: Path, source: str, tag: int, data: st.DataObject
) -> None:
    """Values of the wanted elements rewritten in place (lengths kept, so the layout holds)."""
    if source not in sources:
        pytest.skip("real data not found")
    raw = bytearray(sources[source])
    where = _elements(bytes(raw)).get(tag)
    if where is None or where[1] == 0:
        return
    start, length = where
    value = data.draw(st.lists(_VALUE_BYTES, min_size=length, max_size=length))
    raw[start : start + length] = bytes(value)
    path = tmp_path / "v.dcm"
    path.write_bytes(bytes(raw))
    _agrees(path)


@_SETTINGS
@given(
    source=st.sampled_from(["written", "real"]),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.none() | st.floats(0, 1),
)
def test_a_damaged_file_gives_pydicoms_header_or_falls_back(
    sources: dict[str, bytes],
    tmp_path: Path,
    source: str,
    edits: list[tuple[float, int]],
    cut: float | None,
) -> None:
    """Bytes of the header changed anywhere (tags, VRs, lengths, values), or the file cut."""
    if source not in sources:
        pytest.skip("real data not found")
    raw = bytearray(sources[source])
    header_end = _elements(bytes(raw))[0x7FE00010][0]
    for where, byte in edits:
        raw[int(where * (header_end - 1))] = byte
    if cut is not None:
        raw = raw[: int(cut * len(raw))]
    path = tmp_path / "d.dcm"
    path.write_bytes(bytes(raw))
    _agrees(path)
