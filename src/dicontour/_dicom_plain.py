"""The elements of a *plain* DICOM file, found without pydicom: the header read's fast path.

pydicom parses every element of a header through several Python calls and
converts each value it is asked for through its value classes and validation:
about 570 CPU-µs for a real MR header, 85% of :func:`dicontour.read_dicom_header`.
Most files a scan meets are plain: a preamble, an explicit VR little endian file
meta group and dataset (transfer syntax 1.2.840.10008.1.2.1), every element of
defined length, in ascending tag order, ending with the pixel data, which runs
exactly to the end of the file.  For those, :func:`plain_elements` walks the
elements with ``struct`` and keeps the raw values of the few tags asked for
(about 60 µs); the ``as_*`` converters accept only values whose meaning is
unambiguous and give what pydicom's conversion gives for them.

Anything else (another transfer syntax, an undefined length, an unknown VR, a tag
out of order, a value of another VR or an odd form) returns None, and the caller
reads the file with pydicom, which decides.  So the fast path never gives a
different result: it gives the same one sooner, or none (see
``tests/test_dicom_plain.py`` and ``benchmarks/bench_read.py``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
PIXEL_DATA = 0x7FE00010
_TRANSFER_SYNTAX = 0x00020010
_UNDEFINED = 0xFFFFFFFF
# VRs whose explicit form has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())
_TAG_VR = struct.Struct("<HH2s")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<I")
# Strict forms: what pydicom converts to the same number float()/int() gives.
_DECIMAL = re.compile(r" *[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)? *")
_INTEGER = re.compile(r" *[-+]?[0-9]+ *")
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_CODE = re.compile(r"[A-Z0-9_ ]*")


@dataclass(frozen=True)
class PlainFile:
    """What :func:`plain_elements` found: ``values`` maps each wanted tag present
    to its (VR, raw value); the pixel data's value starts at ``pixel_offset`` and
    holds ``pixel_length`` bytes, up to the end of the file."""

    values: dict[int, tuple[bytes, bytes]]
    pixel_vr: bytes
    pixel_offset: int
    pixel_length: int


def plain_elements(head: bytes, size: int, wanted: frozenset[int]) -> PlainFile | None:
    """The wanted elements of a plain file whose first bytes are ``head`` (None: not plain).

    ``size`` is the whole file's size: the pixel data element must end exactly there.
    """
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    values: dict[int, tuple[bytes, bytes]] = {}
    position, previous, syntax = 132, -1, None
    end = len(head)
    while position + 8 <= end:
        group, element, vr = _TAG_VR.unpack_from(head, position)
        tag = group << 16 | element
        if tag <= previous:
            return None  # out of order or repeated: pydicom's own rules decide
        if syntax is None and group != 2:
            # The file meta group is over: the dataset must be explicit VR little endian.
            syntax = as_uid(values.pop(_TRANSFER_SYNTAX, None))
            if syntax != EXPLICIT_VR_LE:
                return None
        if vr in _SHORT_VRS:
            (length,) = _SHORT_LENGTH.unpack_from(head, position + 6)
            start = position + 8
        elif vr in _LONG_VRS:
            if position + 12 > end:
                return None
            (length,) = _LONG_LENGTH.unpack_from(head, position + 8)
            start = position + 12
        else:
            return None
        if length == _UNDEFINED:
            return None
        if tag == PIXEL_DATA:
            if vr not in (b"OB", b"OW") or start + length != size or syntax is None:
                return None
            return PlainFile(values, vr, start, length)
        if start + length > end:
            return None  # the header goes on past these bytes
        if tag in wanted or tag == _TRANSFER_SYNTAX:
            values[tag] = (vr, head[start : start + length])
        position, previous = start + length, tag
    return None


def _values(
    entry: tuple[bytes, bytes] | None, vr: bytes, form: re.Pattern[str], count: int
) -> list[str] | None:
    """The ``count`` values of a ``vr`` string element, each matching ``form`` (else None).

    Split at backslashes after the trailing padding is stripped, as pydicom splits them.
    """
    if entry is None or entry[0] != vr:
        return None
    try:
        text = entry[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    items = text.rstrip(" \x00").split("\\")
    if len(items) != count or not all(form.fullmatch(item) for item in items):
        return None
    return items


def as_us(entry: tuple[bytes, bytes] | None) -> int | None:
    """A one-value US element's number (None: absent or not exactly that)."""
    if entry is None or entry[0] != b"US" or len(entry[1]) != 2:
        return None
    return int(_SHORT_LENGTH.unpack(entry[1])[0])


def as_decimals(entry: tuple[bytes, bytes] | None, count: int) -> tuple[float, ...] | None:
    """``count`` numbers of a DS element, each in a strict decimal form (None otherwise)."""
    items = _values(entry, b"DS", _DECIMAL, count)
    return None if items is None else tuple(float(item) for item in items)


def as_integer(entry: tuple[bytes, bytes] | None) -> int | None:
    """A one-value IS element's number in strict integer form (None otherwise)."""
    items = _values(entry, b"IS", _INTEGER, 1)
    return None if items is None else int(items[0])


def as_uid(entry: tuple[bytes, bytes] | None) -> str | None:
    """A one-value UI element of digits and dots (None otherwise)."""
    items = _values(entry, b"UI", _UID, 1)
    return None if items is None else items[0]


def as_code(entry: tuple[bytes, bytes] | None) -> str | None:
    """A one-value CS element, stripped (None otherwise)."""
    items = _values(entry, b"CS", _CODE, 1)
    return None if items is None else items[0].strip()
