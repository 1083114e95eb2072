"""Read one DICOM slice: its header, its pixels as float32, typed errors.

Built on pydicom (>= 3) with the pylibjpeg plugins, so JPEG, JPEG-LS and
JPEG 2000 transfer syntaxes decode as well as uncompressed ones.

Images are (H, W) = (rows, columns) float32 arrays with the modality
transform applied: the Modality LUT Sequence when the file has one (through
pydicom's ``apply_modality_lut``), else ``value * RescaleSlope +
RescaleIntercept``, each defaulting to 1 and 0 when absent.  A lone slope is
applied too.  What is left as stored: MONOCHROME1 images are not inverted
(like pydicom, values keep their meaning; only display differs), the VOI LUT
and window are display settings and are ignored, and PixelPaddingValue pixels
keep their (rescaled) value.

Every image served is finite float32.  What the decoder would refuse, the
header read refuses too, so a scan never passes a file that fails to load:
only MONOCHROME1/MONOCHROME2 single-frame images, with the elements pydicom's
decoder requires, a rescale whose range fits float32, and (by default) a
compressed pixel stream that actually decodes.

Limits, checked before the work they bound: the file size
(:data:`MAX_FILE_BYTES`, from its size before reading), the bytes parsed for
the header (:data:`MAX_HEADER_BYTES`, counted while pydicom reads) and the
image size (:data:`MAX_PIXELS`, from Rows and Columns before decoding).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from stat import S_ISREG
from typing import Any, BinaryIO, cast

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileDataset
from pydicom.encaps import generate_fragments
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.pixels.utils import _get_jpg_parameters
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from . import _dicom_plain as plain
from ._compiled import kernel
from ._docstrings import fill_doc
from ._files import open_for
from .errors import DicomError

#: Largest image accepted, in pixels (rows x columns x frames).  Checked from the
#: header, before any pixel buffer is allocated.
MAX_PIXELS = 4096 * 4096
#: Largest DICOM file accepted, in bytes: room for the largest image at 64 bits
#: a pixel and its header.  Checked from the file's size, before reading it.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Most bytes read while parsing a header: every element's tag and length, and
#: each value of up to 4 KiB (longer values such as the pixel data are skipped
#: on disk, not read).  An element takes at least 8 bytes, so this also bounds
#: the element count (32,768) and pydicom's memory (about 10 MB) before parsing
#: goes on: a file of millions of tiny elements is refused after 256 KiB.  The
#: real MR headers read about 2.5 KiB.
MAX_HEADER_BYTES = 256 * 1024

_PIXEL_DATA = 0x7FE00010
# Bytes read in one piece for a header parsed in memory (see _parsed_in_memory):
# real MR headers take 2.5 KiB; a quarter of the header budget, so that a parse
# within them stays within the budget without counting.
_HEAD_BYTES = MAX_HEADER_BYTES // 4
_HEAD_STEPS = (8 * 1024, _HEAD_BYTES)
_DEFLATED = DeflatedExplicitVRLittleEndian.encode("ascii")
# Headers are read with values larger than this left unread on disk; pixel data
# is the only element this large in an MR slice.
_DEFER_BYTES = 4096
_RAW_SYNTAXES = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
# Pixels stored as plain integers: their length is checked from the header.
# Other syntaxes hold an encapsulated (compressed) stream.
_NATIVE_SYNTAXES = _RAW_SYNTAXES | {ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}
_GREY = ("MONOCHROME1", "MONOCHROME2")
_FLOAT32_MAX = float(np.finfo(np.float32).max)

# Real scanners write UIDs with leading-zero components ("...99.0407..."); pydicom
# warns on each read.  Harmless for us, and thousands of warnings hide real ones.
warnings.filterwarnings("ignore", message="Invalid value for VR UI", module="pydicom")

PathOrFile = str | os.PathLike[str] | BinaryIO


@dataclass(frozen=True)
class RawPixels:
    """Where an uncompressed file keeps its pixels, recorded by a header read.

    With it, :func:`read_dicom_pixels` reads the pixels straight from
    ``offset`` without parsing the file again, after checking that the file's
    ``size`` and ``mtime_ns`` are unchanged.
    """

    offset: int
    dtype: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class DicomHeader:
    """What a header-only read tells about one slice.

    Attributes
    ----------
    rows, columns : int
        Image height and width in pixels.
    pixel_spacing : tuple of float or None
        (row spacing, column spacing) in mm, from PixelSpacing.
    instance_number : int or None
        InstanceNumber (0020,0013).
    sop_instance_uid : str or None
        SOPInstanceUID (0008,0018).
    slope, intercept : float
        RescaleSlope and RescaleIntercept (1 and 0 when absent).
    transfer_syntax : str
        The transfer syntax UID.
    raw : RawPixels or None
        Where uncompressed little-endian pixels sit in a local file, else None.
    modality_lut : bool
        The file maps its pixels through a Modality LUT Sequence (0028,3000)
        instead of the rescale; ``slope`` and ``intercept`` are then unused.
    image_position : tuple of 3 float or None
        ImagePositionPatient (0020,0032): the patient-space position (mm, LPS)
        of the centre of pixel (row 0, column 0).
    image_orientation : tuple of 6 float or None
        ImageOrientationPatient (0020,0037): the unit direction of increasing
        column (along a row), then of increasing row (along a column).
    slice_thickness : float or None
        SliceThickness (0018,0050) in mm.
    frame_of_reference_uid, series_instance_uid, study_instance_uid : str or None
        The UIDs exactly as the file holds them (a de-identified file's invalid
        UIDs included: references to this image must repeat them unchanged).

    The geometry fields are None when absent or invalid; see :func:`pixel_to_patient`.
    """

    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None
    instance_number: int | None
    sop_instance_uid: str | None
    slope: float
    intercept: float
    transfer_syntax: str
    raw: RawPixels | None = None
    modality_lut: bool = False
    image_position: tuple[float, float, float] | None = None
    image_orientation: tuple[float, float, float, float, float, float] | None = None
    slice_thickness: float | None = None
    frame_of_reference_uid: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return (self.rows, self.columns)

    @property
    def has_geometry(self) -> bool:
        """Whether position, orientation and spacing place the pixels in patient space."""
        return (
            self.image_position is not None
            and self.image_orientation is not None
            and self.pixel_spacing is not None
        )


@dataclass(frozen=True)
class DicomImage:
    """A decoded slice: ``image`` float32 of shape (rows, columns) and its ``header``."""

    image: np.ndarray
    header: DicomHeader


def _name(source: PathOrFile, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return str(getattr(source, "name", "<file object>"))


class _OverBudget(Exception):
    """Raised inside pydicom's parse when the header budget is spent."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class _Budgeted:
    """A binary file wrapper that refuses to read more than ``budget`` bytes.

    Only reads of up to ``_DEFER_BYTES`` count, each one an element's tag,
    length or value: pydicom skips longer values with a seek.
    ``budget = None`` lifts the limit (for the deferred pixel data, read later).
    """

    def __init__(self, raw: BinaryIO, budget: int, size: int | None) -> None:
        self._raw = raw
        self.budget: int | None = budget
        self.spent = 0
        self._size = size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and 0 <= size <= _DEFER_BYTES:  # an element's part: counted
            if self.budget is not None and self.spent + size > self.budget:
                raise _OverBudget(
                    f"header too large: parsing it reads more than "
                    f"MAX_HEADER_BYTES={self.budget} bytes (values over {_DEFER_BYTES} "
                    f"bytes such as the pixel data are not counted)",
                    "header-too-large",
                )
            data = self._raw.read(size)
            self.spent += len(data)
            return data
        if self.budget is not None and (size is None or size < 0):
            # Only a deflated dataset is read in one piece; zlib would then
            # inflate it whole, a size nothing bounds.
            raise _OverBudget(
                "the dataset is read in one piece to be inflated (deflated transfer "
                "syntax), a size that cannot be bounded before inflating: not supported",
                "unreadable-dicom",
            )
        # With defer_size, pydicom reads a value in one piece only up to
        # defer_size; larger reads are its 8 KiB chunks scanning an
        # undefined-length value for its end (kept by no one: not counted), or
        # deferred values read after parsing.
        if self._size is not None and size is not None and size > 0:
            # A damaged length (0xDB002000) would make a buffered file allocate
            # that much before finding the end of the file: ask only for what is there.
            size = min(size, max(self._size - self._raw.tell(), 0))
        return self._raw.read() if size is None else self._raw.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    @property
    def closed(self) -> bool:
        return bool(getattr(self._raw, "closed", False))


@contextmanager
def _opened(source: PathOrFile, where: str) -> Iterator[BinaryIO]:
    """A path opened as a regular file only (a FIFO would block); a file object as is."""
    if not isinstance(source, str | os.PathLike):
        yield source
        return
    with open_for(source, where, DicomError, "missing-dicom") as handle:
        yield handle


@contextmanager
def _parsed(source: PathOrFile, where: str) -> Iterator[tuple[pydicom.Dataset, BinaryIO]]:
    """Parse the header of ``source`` within the file and header limits.

    Yields the dataset and the open file it was read from (a path is opened
    once, as a regular file only).  The dataset's deferred values (the pixel
    data) stay readable inside the ``with`` block, from that same open file:
    pydicom keeps the :class:`_Budgeted` wrapper as its buffer, so it never
    re-opens the file by name (a second, unchecked open).
    """
    with _opened(source, where) as handle:
        size = _checked_size(handle, where)
        if size is not None and size > MAX_FILE_BYTES:
            raise DicomError(
                where,
                f"file too large: {size} bytes, more than MAX_FILE_BYTES={MAX_FILE_BYTES}",
                code="file-too-large",
            )
        ds = _parsed_in_memory(handle, size, where)
        if ds is None:  # the careful path decides, counting every read
            reader = _Budgeted(handle, MAX_HEADER_BYTES, size)
            ds = _dcmread(reader, where, defer_size=_DEFER_BYTES)
            reader.budget = None
        yield ds, handle


def _parsed_in_memory(handle: BinaryIO, size: int | None, where: str) -> pydicom.Dataset | None:
    """The header parsed from the file's first bytes, read in one piece.

    The fast path of :func:`_parsed`: pydicom reads each element's tag, length
    and value (about 200 reads a file) from memory instead of through
    :class:`_Budgeted`, a Python call each.  The first 8 KiB are tried, then
    the first :data:`_HEAD_BYTES`.  Returns None (the file rewound) whenever
    the careful path could decide otherwise, which it then does on the same
    file.  A parse is kept only when it saw what a parse of the whole file sees:

    * the whole file is in memory; or
    * the last element is a defined-length pixel data element whose value,
      left unread (longer than ``_DEFER_BYTES``), runs to or past the end of
      the file: every element before it lies within the bytes read, and after
      it both parses meet the end of the file (a truncated file included).

    The header budget holds without counting: pydicom reads each byte of
    such a parse at most about twice (the file meta group retried in implicit
    VR, a 6-byte peek per sequence item), so it reads under ``2 * _HEAD_BYTES
    + 1 KiB``, well under :data:`MAX_HEADER_BYTES`.  A deflated dataset
    (read whole, then inflated) and a file object not at its start (its offsets
    would be relative) take the careful path.  Deferred values (the pixel
    data) are read later from the real file, as the careful path reads them.
    """
    if size is None:
        return None
    try:
        if handle.tell() != 0:
            return None
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None
    head, ds = b"", None
    try:
        for step in _HEAD_STEPS:
            head += handle.read(max(min(size, step) - len(head), 0))
            ds = _parsed_head(head, size, where)
            if ds is not None or len(head) >= size:
                break
    except (OSError, TypeError):  # not a binary file: the careful path says so
        ds = None
    if ds is None:
        handle.seek(0)
        return None
    # Deferred values are read from the real file, through the same wrapper (its
    # budget lifted) as the careful path leaves behind.
    reader = _Budgeted(handle, 0, size)
    reader.budget = None
    parsed = cast(FileDataset, ds)
    parsed.buffer, parsed.fileobj_type, parsed.filename = reader, _Budgeted, None
    return parsed


def _parsed_head(head: bytes, size: int, where: str) -> pydicom.Dataset | None:
    """``head`` (the file's first bytes) parsed, if that is the whole file's parse, else None."""
    # A deflated transfer syntax's UID is in the file meta, at the start of the
    # file: absent from these bytes, pydicom never inflates anything.
    if not isinstance(head, bytes) or _DEFLATED in head:
        return None
    whole = len(head) == size
    try:
        ds = _dcmread(io.BytesIO(head), where, defer_size=_DEFER_BYTES)
    except DicomError:
        if whole:  # the same bytes as the file's: the careful path would fail alike
            raise
        return None
    if whole:
        return ds
    pixels = ds.get_item(_PIXEL_DATA, keep_deferred=True) if _PIXEL_DATA in ds else None
    if (
        not isinstance(pixels, RawDataElement)
        or pixels.value is not None
        or pixels.length == 0xFFFFFFFF
        or pixels.value_tell + pixels.length < size
    ):
        return None
    return ds


def _checked_size(source: PathOrFile, where: str) -> int | None:
    try:
        return _size_of(source)
    except OSError as exc:
        raise DicomError(where, f"cannot stat file ({exc})") from exc


def _dcmread(source: Any, where: str, **kwargs: Any) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(source, **kwargs)
    except _OverBudget as exc:
        raise DicomError(where, exc.reason, code=exc.code) from exc
    except InvalidDicomError as exc:
        raise DicomError(where, f"not a DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on damaged files
        raise DicomError(where, f"cannot parse DICOM ({type(exc).__name__}: {exc})") from exc


def _number(ds: pydicom.Dataset, keyword: str, default: float, where: str) -> float:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise DicomError(where, f"{keyword} is not a number: {value!r}") from exc
    if not np.isfinite(number):
        raise DicomError(where, f"{keyword} is not finite: {value!r}", code="invalid-rescale")
    return number


def _header(ds: pydicom.Dataset, where: str, *, max_pixels: int) -> DicomHeader:
    """Validate the image-describing elements and build a :class:`DicomHeader`."""
    if _PIXEL_DATA not in ds:
        # pydicom stops quietly at the end of a file cut before or inside an
        # encapsulated (compressed) pixel data element, so say both.
        raise DicomError(
            where,
            "no pixel data (7FE0,0010): the element is absent, or the file ends before it",
            code="no-pixel-data",
        )
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.SamplesPerPixel)  # required by the decoder
    except (AttributeError, TypeError, ValueError) as exc:
        raise DicomError(where, f"missing or invalid Rows/Columns/SamplesPerPixel ({exc})") from exc
    if rows <= 0 or columns <= 0:
        raise DicomError(where, f"image has no pixels: Rows={rows}, Columns={columns}")
    if rows * columns * frames > max_pixels:
        raise DicomError(
            where,
            f"image too large: {rows}x{columns}x{frames} frames exceeds {max_pixels} pixels",
            code="image-too-large",
        )
    if frames != 1:
        raise DicomError(where, f"multi-frame images are not supported (NumberOfFrames={frames})")
    if samples != 1:
        raise DicomError(where, f"only grey-scale images are supported (SamplesPerPixel={samples})")
    # Checked here so that a scan's header read catches what decoding would trip
    # on: pydicom's decoder requires each of these elements.
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip()
    if photometric not in _GREY:
        raise DicomError(
            where,
            f"only grey-scale images are supported: PhotometricInterpretation is "
            f"{photometric or 'missing'!r}, not MONOCHROME1 or MONOCHROME2",
        )
    try:
        bits = int(ds.BitsAllocated)
        stored = int(ds.BitsStored)
        signed = int(ds.PixelRepresentation)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DicomError(
            where, f"missing or invalid BitsAllocated/BitsStored/PixelRepresentation ({exc})"
        ) from exc
    if bits not in (1, 8, 16, 32, 64) or not 1 <= stored <= bits or signed not in (0, 1):
        raise DicomError(
            where,
            f"invalid pixel format: BitsAllocated={bits}, BitsStored={stored}, "
            f"PixelRepresentation={signed}",
        )
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if not syntax:
        raise DicomError(where, "no Transfer Syntax UID (0002,0010): the pixels cannot be decoded")
    try:
        decoder = get_decoder(UID(str(syntax)))
    except NotImplementedError as exc:
        raise DicomError(where, f"no decoder exists for transfer syntax {syntax!s}") from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise DicomError(where, f"cannot decode {UID(str(syntax)).name}: {missing}")
    spacing = ds.get("PixelSpacing")
    try:
        pixel_spacing = (float(spacing[0]), float(spacing[1])) if spacing else None
    except (TypeError, ValueError, IndexError):
        pixel_spacing = None
    instance = ds.get("InstanceNumber")
    try:
        instance_number = int(instance) if instance not in (None, "") else None
    except (TypeError, ValueError):
        instance_number = None
    uid = ds.get("SOPInstanceUID")
    # As pydicom's apply_modality_lut decides: an empty sequence means the rescale.
    modality_lut = bool(ds.get("ModalityLUTSequence"))
    slope = _number(ds, "RescaleSlope", 1.0, where)
    intercept = _number(ds, "RescaleIntercept", 0.0, where)
    if modality_lut:
        _check_modality_lut(ds, where)
    else:
        _check_rescale(slope, intercept, stored, signed, where)
    position = _floats(ds, "ImagePositionPatient", 3)
    orientation = _floats(ds, "ImageOrientationPatient", 6)
    if orientation is not None and not _orthonormal(orientation):
        orientation = None
    thickness = _floats(ds, "SliceThickness", 1)
    return DicomHeader(
        rows=rows,
        columns=columns,
        pixel_spacing=pixel_spacing,
        instance_number=instance_number,
        sop_instance_uid=str(uid) if uid else None,
        slope=slope,
        intercept=intercept,
        transfer_syntax=str(syntax),
        modality_lut=modality_lut,
        image_position=position,  # type: ignore[arg-type]
        image_orientation=orientation,  # type: ignore[arg-type]
        slice_thickness=thickness[0] if thickness and thickness[0] > 0 else None,
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
    )


def _floats(ds: pydicom.Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    """``count`` finite numbers from a DS element, or None when absent or invalid."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, list | tuple | MultiValue) else [value]
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        return None
    return numbers


def _orthonormal(orientation: tuple[float, ...]) -> bool:
    """Whether the two direction cosines are unit vectors at right angles (to 1e-3)."""
    row, column = np.array(orientation[:3]), np.array(orientation[3:])
    return bool(
        abs(np.linalg.norm(row) - 1) < 1e-3
        and abs(np.linalg.norm(column) - 1) < 1e-3
        and abs(row @ column) < 1e-3
    )


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value) if value else None


def _check_rescale(slope: float, intercept: float, stored: int, signed: int, where: str) -> None:
    """Refuse a rescale that takes some storable value beyond float32."""
    low, high = (-(2 ** (stored - 1)), 2 ** (stored - 1) - 1) if signed else (0, 2**stored - 1)
    ends = [low * slope + intercept, high * slope + intercept]
    if not all(abs(end) < _FLOAT32_MAX for end in ends):
        raise DicomError(
            where,
            f"rescaled values overflow float32: stored values {low}..{high} "
            f"(BitsStored={stored}) x RescaleSlope {slope:g} + RescaleIntercept "
            f"{intercept:g} reach {min(ends):g}..{max(ends):g}",
            code="invalid-rescale",
        )


def _check_modality_lut(ds: pydicom.Dataset, where: str) -> None:
    """Refuse a Modality LUT Sequence that pydicom's apply_modality_lut could not apply."""
    items = ds.ModalityLUTSequence
    if len(items) != 1:
        raise DicomError(
            where, f"Modality LUT Sequence (0028,3000) has {len(items)} items, 1 expected"
        )
    item = items[0]
    descriptor = item.get("LUTDescriptor")
    data = item.get("LUTData")
    if descriptor is None or data is None or len(descriptor) != 3:
        raise DicomError(
            where,
            "Modality LUT Sequence (0028,3000) lacks a 3-value LUTDescriptor or its LUTData",
        )
    entries = int(descriptor[0]) or 2**16
    depth = int(descriptor[2])
    if depth not in (8, 16):
        raise DicomError(where, f"Modality LUT: LUTDescriptor bit depth {depth}, not 8 or 16")
    values = len(data) // 2 if isinstance(data, bytes) else len(data)
    if values < entries:
        raise DicomError(
            where, f"Modality LUT: LUTData holds {values} entries, LUTDescriptor says {entries}"
        )


# The elements :func:`_header` reads, by tag (the plain fast path's wanted set).
_ROWS, _COLUMNS, _FRAMES, _SAMPLES = 0x00280010, 0x00280011, 0x00280008, 0x00280002
_PHOTOMETRIC, _BITS, _STORED, _SIGNED = 0x00280004, 0x00280100, 0x00280101, 0x00280103
_SPACING, _INSTANCE, _SOP_UID, _MODALITY_LUT = 0x00280030, 0x00200013, 0x00080018, 0x00283000
_SLOPE, _INTERCEPT, _POSITION, _ORIENTATION = 0x00281053, 0x00281052, 0x00200032, 0x00200037
_THICKNESS, _FRAME_UID, _SERIES_UID, _STUDY_UID = 0x00180050, 0x00200052, 0x0020000E, 0x0020000D
_PLAIN_TAGS = frozenset(
    {
        *(_ROWS, _COLUMNS, _FRAMES, _SAMPLES, _PHOTOMETRIC, _BITS, _STORED, _SIGNED),
        *(_SPACING, _INSTANCE, _SOP_UID, _MODALITY_LUT, _SLOPE, _INTERCEPT, _POSITION),
        *(_ORIENTATION, _THICKNESS, _FRAME_UID, _SERIES_UID, _STUDY_UID),
    }
)


class _NotPlain(Exception):
    """A value the plain fast path leaves to pydicom (internal: never escapes)."""


def _optional(values: dict[int, tuple[bytes, bytes]], tag: int, convert: Any, *args: Any) -> Any:
    """``convert(entry)`` of an element present; None when absent; _NotPlain when odd."""
    entry = values.get(tag)
    if entry is None:
        return None
    value = convert(entry, *args)
    if value is None:
        raise _NotPlain
    return value


def _plain_header(handle: BinaryIO, max_pixels: int) -> DicomHeader | None:
    """:func:`read_dicom_header`'s result for a plain file, read without pydicom; else None.

    The fast path (see :mod:`dicontour._dicom_plain`): it returns a header only
    when every value is in a form whose conversion is pydicom's and every check
    of :func:`_header` and :func:`_raw_layout` passes, so that the careful path
    would return the same header.  Anything else, errors included, returns
    None with ``handle`` back at its start, for the careful path to decide and
    word.  Only a local file at its start is tried.
    """
    try:
        stat = _stat_of(handle)
        # A regular file only: a pipe has a descriptor too, but no rewinding it.
        if stat is None or not S_ISREG(stat.st_mode) or stat.st_size > MAX_FILE_BYTES:
            return None
        if handle.tell() != 0:
            return None
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None  # nothing read: the careful path starts where the caller left the file
    try:
        head = handle.read(min(stat.st_size, _HEAD_STEPS[0]))
        header = _plain_header_of(head, stat, max_pixels) if isinstance(head, bytes) else None
    except (OSError, TypeError, ValueError):
        header = None
    if header is None:
        handle.seek(0)  # a regular file read from its start: the careful path reads it again
    return header


def _plain_header_of(head: bytes, stat: os.stat_result, max_pixels: int) -> DicomHeader | None:
    found = plain.plain_elements(head, stat.st_size, _PLAIN_TAGS)
    if found is None:
        return None
    values = found.values
    if _FRAMES in values or _MODALITY_LUT in values:
        return None
    numbers = [plain.as_us(values.get(t)) for t in (_ROWS, _COLUMNS, _SAMPLES)]
    numbers += [plain.as_us(values.get(t)) for t in (_BITS, _STORED, _SIGNED)]
    if any(n is None for n in numbers):
        return None
    rows, columns, samples, bits, stored, signed = cast(list[int], numbers)
    if rows <= 0 or columns <= 0 or rows * columns > max_pixels or samples != 1:
        return None
    if plain.as_code(values.get(_PHOTOMETRIC)) not in _GREY:
        return None
    if bits not in (1, 8, 16, 32, 64) or not 1 <= stored <= bits or signed not in (0, 1):
        return None
    if not get_decoder(ExplicitVRLittleEndian).is_available:
        return None
    try:
        spacing = _optional(values, _SPACING, plain.as_decimals, 2)
        instance = _optional(values, _INSTANCE, plain.as_integer)
        uids = [_optional(values, t, plain.as_uid) for t in (_SOP_UID, _FRAME_UID)]
        uids += [_optional(values, t, plain.as_uid) for t in (_SERIES_UID, _STUDY_UID)]
        slope = _optional(values, _SLOPE, plain.as_decimals, 1) or (1.0,)
        intercept = _optional(values, _INTERCEPT, plain.as_decimals, 1) or (0.0,)
        position = _optional(values, _POSITION, plain.as_decimals, 3)
        orientation = _optional(values, _ORIENTATION, plain.as_decimals, 6)
        thickness = _optional(values, _THICKNESS, plain.as_decimals, 1)
    except _NotPlain:
        return None
    decimals = [spacing, slope, intercept, position, orientation, thickness]
    if not all(math.isfinite(x) for group in decimals if group for x in group):
        return None  # the careful path words a non-finite rescale, and drops the others
    try:
        _check_rescale(slope[0], intercept[0], stored, signed, "")
    except DicomError:
        return None
    if found.pixel_length < (rows * columns * bits + 7) // 8:
        return None
    raw = None
    if bits in (8, 16, 32) and stored == bits:
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}").str
        raw = RawPixels(found.pixel_offset, dtype, stat.st_size, stat.st_mtime_ns)
    if orientation is not None and not _orthonormal(orientation):
        orientation = None
    sop_uid, frame_uid, series_uid, study_uid = uids
    return DicomHeader(
        rows=rows,
        columns=columns,
        pixel_spacing=spacing,
        instance_number=instance,
        sop_instance_uid=sop_uid or None,
        slope=slope[0],
        intercept=intercept[0],
        transfer_syntax=plain.EXPLICIT_VR_LE,
        raw=raw,
        modality_lut=False,
        image_position=position,
        image_orientation=orientation,
        slice_thickness=thickness[0] if thickness and thickness[0] > 0 else None,
        frame_of_reference_uid=frame_uid or None,
        series_instance_uid=series_uid or None,
        study_instance_uid=study_uid or None,
    )


def _checked_header(ds: pydicom.Dataset, where: str, *, max_pixels: int) -> DicomHeader:
    """:func:`_header`, with pydicom's errors on damaged elements turned into DicomError."""
    try:
        return _header(ds, where, max_pixels=max_pixels)
    except DicomError:
        raise
    except Exception as exc:  # elements are parsed on first access: a damaged VR raises here
        raise DicomError(where, f"cannot parse DICOM header ({type(exc).__name__}: {exc})") from exc


def _raw_layout(
    ds: pydicom.Dataset, header: DicomHeader, source: PathOrFile, where: str
) -> RawPixels | None:
    """Check uncompressed pixels' length against the header; locate them on disk.

    Raises when the file is too short for its pixels; returns the layout when
    the direct-offset fast path of :func:`read_dicom_pixels` gives exactly what
    the decoder would, else None.
    """
    if header.transfer_syntax not in _NATIVE_SYNTAXES:
        return None
    element = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    offset = getattr(element, "value_tell", None)
    length = getattr(element, "length", None)
    if offset is None or length is None:
        return None
    if length == 0xFFFFFFFF:
        raise DicomError(
            where, "pixel data has an undefined length, but the transfer syntax is uncompressed"
        )
    bits = int(ds.BitsAllocated)
    expected = (header.rows * header.columns * bits + 7) // 8
    size = _size_of(source)
    # (A deflated file's offsets are in the inflated stream, not the file.)
    in_file = size is not None and header.transfer_syntax != DeflatedExplicitVRLittleEndian
    if in_file and offset + expected > size:
        raise DicomError(
            where,
            f"truncated: pixel data needs {expected} bytes at offset {offset}, "
            f"file has {size - offset}",
        )
    if length < expected:
        raise DicomError(where, f"pixel data holds {length} bytes, {expected} expected")
    if in_file and offset + length > size:
        raise DicomError(
            where,
            f"truncated: pixel data declares {length} bytes at offset {offset}, "
            f"file has {size - offset}",
        )
    # The fast path reads exactly the stored integers, so it is only taken where
    # pydicom would not mask, sign-extend or map anything.
    if (
        header.transfer_syntax not in _RAW_SYNTAXES
        or bits not in (8, 16, 32)
        or int(ds.BitsStored) != bits
        or header.modality_lut
    ):
        return None
    stat = _stat_of(source)
    if stat is None:  # not a local file: nothing to read directly
        return None
    signed = int(ds.PixelRepresentation) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}").str
    return RawPixels(offset=offset, dtype=dtype, size=stat.st_size, mtime_ns=stat.st_mtime_ns)


def _stat_of(source: PathOrFile) -> os.stat_result | None:
    """The stat of a path or of a local file object's descriptor (None for others)."""
    if isinstance(source, str | os.PathLike):
        return os.stat(source)
    try:
        return os.fstat(source.fileno())
    except (AttributeError, io.UnsupportedOperation, ValueError):
        return None


def _size_of(source: PathOrFile) -> int | None:
    stat = _stat_of(source)
    if stat is not None:
        return stat.st_size
    size = getattr(source, "size", None)
    if isinstance(size, int):
        return size
    handle = cast(BinaryIO, source)  # a path has a stat: returned above
    try:
        position = handle.tell()
        end = handle.seek(0, io.SEEK_END)
        handle.seek(position)
        return int(end)
    except (OSError, AttributeError):
        return None


#: The ``source`` and ``name`` parameters of the readers (see :func:`fill_doc`).
_SOURCE_DOC = """source : str, path or binary file object
    The file.  A file object is read from its current position and not closed.
name : str, optional
    The name used in errors (defaults to the path)."""


@fill_doc(source=_SOURCE_DOC)
def read_dicom_header(
    source: PathOrFile,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    verify_pixels: bool = True,
) -> DicomHeader:
    """Read a slice's header without decoding its pixels (unless compressed).

    The pixel data element is located but not read, so a scan of thousands of
    files costs little more than listing them, and a truncated file is still
    caught (its pixel data would run past the end of the file).  A compressed
    stream cannot be known to decode without decoding it, so with
    ``verify_pixels`` (the default) a compressed file is decoded and checked
    like :func:`read_dicom` does: what this function accepts, :func:`read_dicom`
    reads.

    Parameters
    ----------
    %(source)s
    max_pixels : int
        Largest accepted rows x columns.
    verify_pixels : bool
        Decode compressed pixel data to check it (uncompressed pixel data is
        checked from its length alone).

    Returns
    -------
    DicomHeader

    Raises
    ------
    DicomError
        Not DICOM, damaged, no pixel data, an image over ``max_pixels``, a file
        over :data:`MAX_FILE_BYTES` or a header over :data:`MAX_HEADER_BYTES`,
        pixels that :func:`read_dicom` would not decode to a finite image.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> header = read_dicom_header(get_testdata_file("MR_small.dcm"))
    >>> header.shape
    (64, 64)
    """
    where = _name(source, name)
    with _opened(source, where) as opened:
        fast = _plain_header(opened, max_pixels)
        if fast is not None:
            return fast
        header, raw = _careful_header(opened, where, max_pixels, verify_pixels)
    return replace(header, raw=raw)


def _careful_header(
    source: BinaryIO, where: str, max_pixels: int, verify_pixels: bool
) -> tuple[DicomHeader, RawPixels | None]:
    """:func:`read_dicom_header` through pydicom, for every file (the reference path)."""
    with _parsed(source, where) as (ds, handle):
        header = _checked_header(ds, where, max_pixels=max_pixels)
        try:
            raw = _raw_layout(ds, header, handle, where)
        except OSError as exc:
            raise DicomError(where, f"cannot stat file ({exc})") from exc
        if verify_pixels and header.transfer_syntax not in _NATIVE_SYNTAXES:
            _decode(ds, header, where)
    return header, raw


@fill_doc(source=_SOURCE_DOC)
def read_dicom(
    source: PathOrFile, *, name: str | None = None, max_pixels: int = MAX_PIXELS
) -> DicomImage:
    """Read a slice and decode its pixels to float32 with the modality transform applied.

    Parameters
    ----------
    %(source)s
    max_pixels : int
        Largest accepted rows x columns, checked before decoding.

    Returns
    -------
    DicomImage
        ``image``: finite float32 ndarray of shape (rows, columns); ``header``:
        its metadata.

    Raises
    ------
    DicomError
        Not DICOM, truncated, no pixel data, undecodable, too large; the message
        names the file and the reason.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> slice_ = read_dicom(get_testdata_file("MR_small.dcm"))
    >>> slice_.image.dtype, slice_.image.shape
    (dtype('float32'), (64, 64))
    """
    where = _name(source, name)
    # Pixel data is left on disk until the header has passed the size limit, so
    # an oversized file is refused before its pixels are read or allocated.
    with _parsed(source, where) as (ds, handle):
        header = _checked_header(ds, where, max_pixels=max_pixels)
        try:
            _raw_layout(ds, header, handle, where)  # its length check; no fast path here
        except OSError as exc:
            raise DicomError(where, f"cannot stat file ({exc})") from exc
        image = _decode(ds, header, where)
    return DicomImage(image=image, header=header)


def _codestream_shape(ds: pydicom.Dataset, syntax: str) -> tuple[int, int] | None:
    """(rows, columns) that a JPEG, JPEG-LS or JPEG 2000 frame declares, else None."""
    fragments = generate_fragments(ds.PixelData)
    next(fragments)  # the Basic Offset Table
    head = next(fragments)[:4096]
    if syntax in JPEGTransferSyntaxes or syntax in JPEGLSTransferSyntaxes:
        info = _get_jpg_parameters(head)
        return (int(info["height"]), int(info["width"])) if "height" in info else (-1, -1)
    if syntax in JPEG2000TransferSyntaxes:
        at = head.find(b"\xff\x4f\xff\x51")  # start of codestream, then its SIZ segment
        if at < 0 or len(head) < at + 24:
            return (-1, -1)
        x, y, x0, y0 = (int.from_bytes(head[k : k + 4], "big") for k in range(at + 8, at + 24, 4))
        return (y - y0, x - x0)
    return None  # RLE and others: decoded to the header's shape


def _decode(ds: pydicom.Dataset, header: DicomHeader, where: str) -> np.ndarray:
    """Decode the pixels and apply the modality transform: a finite float32 (H, W) image."""
    if header.transfer_syntax not in _NATIVE_SYNTAXES:
        # Decoders allocate what the compressed frame declares (up to 65535^2
        # for JPEG, 2^32 squared for JPEG 2000), whatever Rows and Columns say:
        # the two must agree before decoding.
        try:
            declared = _codestream_shape(ds, header.transfer_syntax)
        except Exception as exc:  # damaged items: pydicom raises several types
            raise DicomError(
                where, f"cannot decode pixel data: no frame header ({type(exc).__name__}: {exc})"
            ) from exc
        if declared is not None and declared != header.shape:
            raise DicomError(
                where,
                f"cannot decode pixel data: the compressed frame declares "
                f"{declared[0]}x{declared[1]} pixels, Rows x Columns is "
                f"{header.rows}x{header.columns}",
            )
    try:
        pixels = ds.pixel_array
        if header.modality_lut:
            pixels = apply_modality_lut(pixels, ds)
    except Exception as exc:  # decoders raise many types; keep the cause chained
        raise DicomError(where, f"cannot decode pixel data ({type(exc).__name__}: {exc})") from exc
    if pixels.shape != header.shape:
        raise DicomError(where, f"decoded shape {pixels.shape} != Rows x Columns {header.shape}")
    return _rescale(pixels, header, where)


def _rescale(pixels: np.ndarray, header: DicomHeader, where: object) -> np.ndarray:
    image = np.empty(pixels.shape, dtype=np.float32)
    _rescale_into(pixels, header, image, where)
    return image


def _rescale_into(pixels: np.ndarray, header: DicomHeader, out: np.ndarray, where: object) -> None:
    """Write ``pixels`` as float32 with the modality transform into ``out`` (same shape)."""
    scale = not header.modality_lut and header.slope != 1.0
    shift = not header.modality_lut and header.intercept != 0.0
    if not pixels.dtype.isnative:  # big-endian data: the kernel reads native numbers
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    # The header checks make a non-finite value impossible; it is checked
    # anyway because a NaN served to training is silent and a failed load is not.
    if not _to_float32(
        pixels, out, np.float32(header.slope), np.float32(header.intercept), scale, shift
    ):
        raise DicomError(where, "the decoded image holds NaN or infinite values")


@kernel
def _to_float32(
    pixels: np.ndarray,
    out: np.ndarray,
    slope: np.float32,
    intercept: np.float32,
    scale: bool,
    shift: bool,
) -> bool:
    """``out[...] = pixels`` as float32, times ``slope``, plus ``intercept``; all finite?

    The float32 operations of ``np.copyto(out, pixels, casting="unsafe")``,
    ``out *= slope`` and ``out += intercept``, rounded as those round (no
    fastmath, so no fused multiply-add), in one pass instead of three plus
    ``np.isfinite(out).all()``: 5 against 17 us for a 256 x 256 slice.
    """
    finite = True
    rows, columns = pixels.shape
    for r in range(rows):
        for c in range(columns):
            value = np.float32(pixels[r, c])
            if scale:
                value = value * slope
            if shift:
                value = value + intercept
            out[r, c] = value
            finite &= np.isfinite(value)
    return finite


def _read_raw_into(handle: BinaryIO, header: DicomHeader, out: np.ndarray, where: str) -> bool:
    """Read the pixels at ``header.raw`` straight into ``out``; False if the file changed.

    False (nothing usable read) when the file's size or mtime differs from the
    header read's, when it has no descriptor, or when it is shorter than the
    pixels: the caller then decodes it in full, which re-validates it.
    """
    raw = header.raw
    stat = _stat_of(handle)
    if raw is None or not stat or stat.st_size != raw.size or stat.st_mtime_ns != raw.mtime_ns:
        return False
    pixels = np.empty(header.shape, dtype=raw.dtype)
    start = handle.tell()
    handle.seek(raw.offset)
    if handle.readinto(pixels) != pixels.nbytes:  # type: ignore[attr-defined]
        handle.seek(start)
        return False
    _rescale_into(pixels, header, out, where)
    return True


def read_dicom_pixels(
    source: PathOrFile,
    header: DicomHeader,
    *,
    name: str | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Read the image of a slice whose header was read before, as fast as possible.

    When ``header.raw`` is set and the file's size and modification time are
    unchanged, the pixels are read directly at the recorded offset (about ten
    times faster than a full parse); otherwise the file is decoded again with
    :func:`read_dicom`, which also re-validates it.

    Parameters
    ----------
    source : str, path or binary file object
        The file; a path is opened once, as a regular file only.
    header : DicomHeader
        From :func:`read_dicom_header` on the same file.
    name : str, optional
        The name used in errors (defaults to the path).
    out : float32 ndarray of shape (rows, columns), optional
        Where to write the image (a batch slot, say), instead of a new array.

    Returns
    -------
    float32 ndarray of shape (rows, columns)
        Finite, with the modality transform applied (``out`` when given).

    Raises
    ------
    DicomError
        The file became unreadable, or its shape changed since the header read.
    ValueError
        ``out`` is not a float32 array of the header's shape.

    Examples
    --------
    >>> header = read_dicom_header("final_data/dicoms/SCD0000101/48.dcm")  # doctest: +SKIP
    >>> image = read_dicom_pixels("final_data/dicoms/SCD0000101/48.dcm", header)  # doctest: +SKIP
    """
    where = _name(source, name)
    if out is not None and (out.shape != header.shape or out.dtype != np.float32):
        raise ValueError(
            f"out must be float32 of shape {header.shape}; got {out.dtype} {out.shape}"
        )
    with _opened(source, where) as handle:
        if header.raw is not None:
            image = np.empty(header.shape, dtype=np.float32) if out is None else out
            try:
                if _read_raw_into(handle, header, image, where):
                    return image
            except OSError as exc:
                raise DicomError(where, f"cannot read file ({exc})") from exc
        decoded = read_dicom(handle, name=where)
    if decoded.header.shape != header.shape:
        raise DicomError(
            where,
            f"image shape changed since the scan: {decoded.header.shape} != {header.shape}",
        )
    if out is None:
        return decoded.image
    out[...] = decoded.image
    return out


def _frame(header: DicomHeader, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, row step, column step) in mm: pixel (r, c) sits at origin + c*xstep + r*ystep."""
    if not header.has_geometry:
        raise DicomError(
            where,
            "no patient geometry: ImagePositionPatient, ImageOrientationPatient and "
            "PixelSpacing are needed (absent or invalid)",
        )
    spacing = header.pixel_spacing
    assert spacing is not None and header.image_orientation is not None  # has_geometry
    if not (spacing[0] > 0 and spacing[1] > 0 and math.isfinite(spacing[0] + spacing[1])):
        raise DicomError(where, f"PixelSpacing must be two positive numbers, got {spacing}")
    orientation = np.asarray(header.image_orientation, dtype=np.float64)
    origin = np.asarray(header.image_position, dtype=np.float64)
    # PixelSpacing is (between rows, between columns); the first cosine runs along a row.
    x_step = orientation[:3] * spacing[1]
    y_step = orientation[3:] * spacing[0]
    return origin, x_step, y_step


#: What :func:`pixel_to_patient` and :func:`patient_to_pixel` share (see :func:`fill_doc`).
_FRAME_DOCS = {
    "header": """header : DicomHeader
    The image the points lie on.
name : str
    The file named in errors.""",
    "raises": """Raises
------
DicomError
    The header lacks position, orientation or spacing.""",
}


@fill_doc(**_FRAME_DOCS)
def pixel_to_patient(
    points: np.ndarray, header: DicomHeader, *, name: str = "<dicom>"
) -> np.ndarray:
    """Map (x, y) = (column, row) pixel coordinates to patient coordinates in mm.

    Pixel (row r, column c) has its centre at ``IPP + c * Δc * X + r * Δr * Y``
    (DICOM PS3.3 C.7.6.2.1.1), X and Y the two cosines of
    ImageOrientationPatient and (Δr, Δc) the PixelSpacing.

    Parameters
    ----------
    points : float ndarray of shape (N, 2)
        (x, y) = (column, row), pixel centres at integers, as contour files hold them.
    %(header)s

    Returns
    -------
    float64 ndarray of shape (N, 3)
        Patient coordinates (LPS, mm).

    %(raises)s

    Examples
    --------
    >>> header = DicomHeader(4, 4, (2.0, 0.5), 1, None, 1.0, 0.0, "",
    ...     image_position=(10.0, 20.0, 30.0), image_orientation=(1, 0, 0, 0, 1, 0))
    >>> pixel_to_patient(np.array([[1.0, 2.0]]), header)
    array([[10.5, 24. , 30. ]])
    """
    origin, x_step, y_step = _frame(header, name)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return origin + points[:, :1] * x_step + points[:, 1:2] * y_step


@fill_doc(**_FRAME_DOCS)
def patient_to_pixel(
    points: np.ndarray, header: DicomHeader, *, name: str = "<dicom>"
) -> tuple[np.ndarray, np.ndarray]:
    """Map patient coordinates (mm) to (x, y) = (column, row) on the image's plane.

    The inverse of :func:`pixel_to_patient` for points on the plane; a point
    off it is projected, and its distance from the plane is returned too.

    Parameters
    ----------
    points : float ndarray of shape (N, 3)
        Patient coordinates (LPS, mm).
    %(header)s

    Returns
    -------
    xy : float64 ndarray of shape (N, 2)
        (x, y) = (column, row) pixel coordinates.
    distance : float64 ndarray of shape (N,)
        Signed distance (mm) of each point from the image's plane.

    %(raises)s

    Examples
    --------
    >>> header = DicomHeader(4, 4, (2.0, 0.5), 1, None, 1.0, 0.0, "",
    ...     image_position=(10.0, 20.0, 30.0), image_orientation=(1, 0, 0, 0, 1, 0))
    >>> xy, distance = patient_to_pixel(np.array([[10.5, 24.0, 31.0]]), header)
    >>> xy, distance
    (array([[1., 2.]]), array([1.]))
    """
    origin, x_step, y_step = _frame(header, name)
    offset = np.asarray(points, dtype=np.float64).reshape(-1, 3) - origin
    # Solve offset = x * x_step + y * y_step + d * normal exactly: stored cosines are
    # rounded (6 decimals in the real data), so they are orthogonal only to ~1e-6 and
    # projections would move a vertex off the pixel centre it was written from.
    normal = np.cross(x_step, y_step)
    normal /= np.linalg.norm(normal)
    solved = np.linalg.solve(np.stack([x_step, y_step, normal], axis=1), offset.T).T
    return solved[:, :2], solved[:, 2]
