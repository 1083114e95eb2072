"""Read and write DICOM RT Structure Sets (RTSTRUCT): LV contours in patient millimetres.

A dataset whose contours come as RT Structure Sets has this layout::

    ROOT/link.csv                                   patient_id,original_id
    ROOT/dicoms/<patient_id>/<n>.dcm                one slice, n = InstanceNumber
    ROOT/contourfiles/<original_id>/<name>.dcm      RT Structure Set(s) of the patient

and is scanned with ``dicontour.scan(root, contours=RtstructContours())``.
Each contour of an ROI whose name the ROI name map gives as ``i`` or ``o`` is
placed on the patient's image whose SOPInstanceUID it references (Contour
Image Sequence), or, without a reference, on the one image whose plane holds
its points.  Its points (patient coordinates, mm) become (x, y) = (column,
row) pixel coordinates through the image's ImagePositionPatient,
ImageOrientationPatient and PixelSpacing (:func:`dicontour.dicom.patient_to_pixel`),
rounded to 1e-6 pixel (DS values carry ~12 significant digits; the rounding
keeps a vertex written from a pixel centre exactly on it), and are then masked
by the same rasteriser and checked by the same rules as a contour file.

A contour found this way is named, in the index and in problems, by a
*reference* ``<rtstruct path>#<ROI number>/<contour number>/<dicom path>``,
which :func:`read_reference` reads back into points (the loader does so
through :func:`dicontour.index.read_points`).

:func:`structure_set` writes the other way: contours in pixel coordinates on
source images become an RT Structure Set referencing those images by their
UIDs, unchanged.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

from ._files import open_regular
from .contour import MAX_POINTS, check_polygon
from .dicom import DicomHeader, patient_to_pixel, pixel_to_patient, read_dicom_header
from .errors import ContourError, DicomError, RefusedFileError
from .problems import Problem, problem
from .storage import Location, opened_as

#: Largest RT Structure Set file read, in bytes (checked before reading): the
#: parsed numbers cost several times the text, so this bounds memory to ~1 GiB.
MAX_RTSTRUCT_BYTES = 64 * 2**20
#: How far (mm) a contour's points may lie from its image's plane.
OFF_PLANE_TOLERANCE = 0.1
#: Decimals kept of the pixel coordinates computed from patient coordinates.
PIXEL_DECIMALS = 6

#: ROI names recognised without ``roi_map`` (compared after :func:`normalize_roi_name`).
DEFAULT_ROI_NAMES: dict[str, tuple[str, ...]] = {
    "i": (
        "i",
        "i contour",
        "icontour",
        "endo",
        "endocardium",
        "endocardial",
        "lv endo",
        "lvendo",
        "lv endocardium",
        "lv endocardial",
        "lv blood pool",
        "lv bloodpool",
        "blood pool",
        "lv cavity",
    ),
    "o": (
        "o",
        "o contour",
        "ocontour",
        "epi",
        "epicardium",
        "epicardial",
        "lv epi",
        "lvepi",
        "lv epicardium",
        "lv epicardial",
    ),
}
#: The ROI names :func:`structure_set` writes.
ROI_NAMES = {"i": "LV endocardium", "o": "LV epicardium"}

_REFERENCE = re.compile(r"^(?P<rt>.+)#(?P<roi>\d+)/(?P<contour>\d+)/(?P<dicom>dicoms/[^/]+/[^/]+)$")
_DICOM_NAME = re.compile(r"^(\d+)\.dcm$")


def normalize_roi_name(name: str) -> str:
    """Lower case, runs of spaces, ``_`` and ``-`` as one space: ``"LV_Endo "`` -> ``"lv endo"``."""
    return " ".join(re.split(r"[\s_\-]+", name.strip().lower())).strip()


def parse_roi_map(spec: Mapping[str, Iterable[str]] | Sequence[str] | str | None) -> dict[str, str]:
    """An ROI name map: normalised ROI name -> ``"i"`` or ``"o"``.

    Parameters
    ----------
    spec : mapping, sequence of str, str or None
        ``{"i": ["LV_Endo"], "o": ["LV_Epi"]}``; or command-line items
        ``["i=LV_Endo,Endocardium", "o=LV_Epi"]``; or the path of a JSON file
        holding such a mapping; None for :data:`DEFAULT_ROI_NAMES`.  A given
        map replaces the defaults.

    Raises
    ------
    ValueError
        A kind other than i/o, an item without ``=``, a name given for both
        kinds, an unreadable JSON file.

    Examples
    --------
    >>> parse_roi_map(["i=LV_Endo,Endocardium", "o=LV Epi"])
    {'lv endo': 'i', 'endocardium': 'i', 'lv epi': 'o'}
    """
    given: Mapping[str, Iterable[str]] | Sequence[str] | str | os.PathLike[str]
    given = DEFAULT_ROI_NAMES if spec is None else spec
    if isinstance(given, str | os.PathLike):
        path = os.fspath(given)
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ValueError(f"ROI map {path}: cannot read JSON ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ValueError(
                f"ROI map must be a JSON object {{'i': [...], 'o': [...]}}: {loaded!r}"
            )
        given = loaded
    mapping: Mapping[str, Iterable[str] | str]
    if isinstance(given, Mapping):
        mapping = given
    else:
        items: dict[str, list[str]] = {}
        for item in given:
            kind, sep, names = item.partition("=")
            if not sep:
                raise ValueError(f"ROI map item {item!r}: expected KIND=NAME[,NAME...]")
            items.setdefault(kind.strip(), []).extend(names.split(","))
        mapping = items
    result: dict[str, str] = {}
    for kind, given_names in mapping.items():
        if kind not in ("i", "o"):
            raise ValueError(f"ROI map: kind must be 'i' or 'o', got {kind!r}")
        roi_names = [given_names] if isinstance(given_names, str) else list(given_names)
        for name in roi_names:
            key = normalize_roi_name(str(name))
            if not key:
                continue
            if result.get(key, kind) != kind:
                raise ValueError(f"ROI map: {name!r} is given for both i and o")
            result[key] = kind
    return result


@dataclass(frozen=True)
class RtContour:
    """One contour of an RT Structure Set.

    Attributes
    ----------
    roi_number : int
        ROINumber (3006,0022) of its ROI.
    roi_name : str
        ROIName (3006,0026).
    number : int
        Its position (1-based) in the ROI's Contour Sequence.
    referenced_uid : str or None
        The ReferencedSOPInstanceUID of its Contour Image Sequence, if any.
    points : float64 ndarray of shape (N, 3)
        ContourData: patient coordinates in mm (may hold NaN; checked later).
    geometric_type : str
        ContourGeometricType (CLOSED_PLANAR for a polygon).
    """

    roi_number: int
    roi_name: str
    number: int
    referenced_uid: str | None
    points: np.ndarray
    geometric_type: str


def _malformed(name: str, reason: str) -> ContourError:
    return ContourError(name, reason, code="malformed-rtstruct")


def read_rtstruct(
    source: str | os.PathLike[str] | BinaryIO, *, name: str | None = None
) -> list[RtContour]:
    """Read the contours of an RT Structure Set.

    Parameters
    ----------
    source : str, path or binary file object
        The file (a file object is read, not closed).
    name : str, optional
        The name used in errors.

    Returns
    -------
    list of RtContour
        Every contour of every ROI, in file order.

    Raises
    ------
    ContourError
        Code ``malformed-rtstruct``: not DICOM, over :data:`MAX_RTSTRUCT_BYTES`,
        not an RT Structure Set, a missing sequence, a ContourData that is not
        a multiple of 3 numbers, an ROI Contour item naming an unknown ROI.
    """
    where = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "<rtstruct>")
    if isinstance(source, str | os.PathLike):
        try:
            with open_regular(source, name=where) as handle:  # a FIFO would block open()
                data = handle.read(MAX_RTSTRUCT_BYTES + 1)
        except RefusedFileError as exc:
            raise ContourError(where, exc.reason, code=exc.code) from exc
        except OSError as exc:
            raise _malformed(where, f"cannot read file ({exc})") from exc
    else:
        try:
            data = source.read(MAX_RTSTRUCT_BYTES + 1)
        except OSError as exc:  # a store or disk failing mid-read: still this file's problem
            raise _malformed(where, f"cannot read file ({exc})") from exc
    if len(data) > MAX_RTSTRUCT_BYTES:
        raise _malformed(where, f"file larger than {MAX_RTSTRUCT_BYTES} bytes")
    try:
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        return _contours(ds, where)
    except ContourError:
        raise
    except Exception as exc:  # pydicom raises many types on damaged files
        raise _malformed(
            where, f"not a readable RT Structure Set ({type(exc).__name__}: {exc})"
        ) from exc


def _contours(ds: Dataset, where: str) -> list[RtContour]:
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != RTStructureSetStorage:
        raise _malformed(
            where, f"SOP Class UID is {sop_class or 'absent'}, not RT Structure Set Storage"
        )
    if "StructureSetROISequence" not in ds or "ROIContourSequence" not in ds:
        raise _malformed(where, "no Structure Set ROI Sequence or ROI Contour Sequence")
    names = {
        int(item.ROINumber): str(item.get("ROIName", "")) for item in ds.StructureSetROISequence
    }
    found: list[RtContour] = []
    for roi in ds.ROIContourSequence:
        number = int(roi.ReferencedROINumber)
        if number not in names:
            raise _malformed(
                where, f"ROI Contour Sequence names ROI {number}, which is not defined"
            )
        for k, item in enumerate(roi.get("ContourSequence", []), start=1):
            values = item.get("ContourData")
            if values is None:
                raise _malformed(where, f"ROI {number} contour {k}: no Contour Data")
            if isinstance(values, Sequence) and len(values) > 3 * MAX_POINTS:
                raise _malformed(where, f"ROI {number} contour {k}: over {MAX_POINTS} points")
            points = np.array(
                [float(v) for v in (values if isinstance(values, Sequence) else [values])]
            )
            if points.size % 3:
                raise _malformed(
                    where, f"ROI {number} contour {k}: {points.size} numbers, not x,y,z triples"
                )
            images = item.get("ContourImageSequence") or []
            uid = str(images[0].ReferencedSOPInstanceUID) if images else None
            found.append(
                RtContour(
                    number,
                    names[number],
                    k,
                    uid or None,
                    points.reshape(-1, 3),
                    str(item.get("ContourGeometricType", "")),
                )
            )
    return found


def _read(where: Location, relative: str) -> list[RtContour]:
    try:
        size = where.size(relative)
    except (OSError, RefusedFileError):
        size = None
    if size is not None and size > MAX_RTSTRUCT_BYTES:
        raise _malformed(relative, f"{size} bytes, over {MAX_RTSTRUCT_BYTES} bytes; not read")
    with opened_as(
        where, relative, ContourError, missing="missing-contour", unreadable="malformed-rtstruct"
    ) as handle:
        return read_rtstruct(handle, name=relative)


def _header(where: Location, relative: str) -> DicomHeader:
    with opened_as(where, relative, DicomError, missing="missing-dicom") as handle:
        return read_dicom_header(handle, name=relative)


def is_reference(text: str) -> bool:
    """Whether ``text`` names a contour inside an RT Structure Set (see the module docstring)."""
    return _REFERENCE.match(text) is not None


def make_reference(rtstruct: str, contour: RtContour, dicom: str) -> str:
    """The reference of ``contour`` of the file ``rtstruct`` placed on the image ``dicom``."""
    return f"{rtstruct}#{contour.roi_number}/{contour.number}/{dicom}"


def to_pixels(contour: RtContour, header: DicomHeader, *, name: str) -> np.ndarray:
    """The contour's (x, y) pixel points on ``header``'s image, checked like a contour file.

    Raises
    ------
    ContourError
        ``non-finite-coordinate``, ``off-plane`` (beyond
        :data:`OFF_PLANE_TOLERANCE`), ``too-few-points``, ``malformed-rtstruct``
        (the image has no geometry, or the contour is not CLOSED_PLANAR).
    """
    if not np.isfinite(contour.points).all():
        raise ContourError(name, "a coordinate is not finite", code="non-finite-coordinate")
    if contour.geometric_type not in ("CLOSED_PLANAR", ""):
        raise _malformed(name, f"ContourGeometricType {contour.geometric_type}, not CLOSED_PLANAR")
    try:
        xy, distance = patient_to_pixel(contour.points, header, name=name)
    except DicomError as exc:
        raise _malformed(name, f"its image cannot place it: {exc.reason}") from exc
    if len(distance) and np.abs(distance).max() > OFF_PLANE_TOLERANCE:
        raise ContourError(
            name,
            f"points lie up to {np.abs(distance).max():.3g} mm off the image's plane "
            f"(tolerance {OFF_PLANE_TOLERANCE} mm)",
            code="off-plane",
        )
    return check_polygon(np.round(xy, PIXEL_DECIMALS), name=name)


def read_reference(where: Location, reference: str) -> np.ndarray:
    """Read the contour a reference names, as (x, y) = (column, row) pixel points.

    Raises
    ------
    ContourError
        The structure set or its image became unreadable, the contour is gone,
        or it fails :func:`to_pixels`; named by the reference.
    """
    match = _REFERENCE.match(reference)
    if match is None:
        raise ContourError(reference, "not an RT Structure Set contour reference")
    roi, number = int(match["roi"]), int(match["contour"])
    contours = _read(where, match["rt"])
    chosen = [c for c in contours if c.roi_number == roi and c.number == number]
    if not chosen:
        raise ContourError(
            reference, "the structure set no longer holds this contour", code="missing-contour"
        )
    try:
        header = _header(where, match["dicom"])
    except DicomError as exc:
        raise ContourError(reference, f"its image: {exc.reason}", code=exc.code) from exc
    return to_pixels(chosen[0], header, name=reference)


@dataclass(frozen=True)
class RtstructContours:
    """The contour source for datasets whose contours are RT Structure Sets.

    Pass it to :func:`dicontour.scan` (``contours=``).  It lists the ``.dcm``
    files of ``contourfiles/<original_id>/``, places each contour on one image
    of the patient and names it by a reference (see the module docstring).

    Parameters
    ----------
    roi_map : mapping of str to str, optional
        Normalised ROI name -> ``"i"``/``"o"`` (:func:`parse_roi_map`);
        :data:`DEFAULT_ROI_NAMES` by default.

    Examples
    --------
    >>> source = RtstructContours(parse_roi_map(["i=LV_Endo", "o=LV_Epi"]))
    >>> index = dicontour.scan("rtstruct_data", contours=source)   # doctest: +SKIP
    """

    roi_map: Mapping[str, str] | None = None

    def find(
        self, where: Location, patient: Any, slices: Mapping[int, str], problems: list[Problem]
    ) -> dict[str, dict[int, str]]:
        """Slice number -> contour reference, for the i- and o-contours of ``patient``.

        Everything that cannot be placed is one problem in ``problems``.
        """
        roi_map = dict(self.roi_map) if self.roi_map is not None else parse_roi_map(None)
        pid = patient.patient_id
        folder = f"contourfiles/{patient.original_id}"
        found: dict[str, dict[int, str]] = {"i": {}, "o": {}}
        try:
            entries = where.entries(folder)
        except FileNotFoundError:
            return found  # reported by the layout check (missing-contour-folder)
        except RefusedFileError as exc:
            problems.append(problem(exc.code, folder, exc.reason, patient_id=pid))
            return found
        files = []
        for entry in sorted(entries, key=lambda e: e.name):
            path = f"{folder}/{entry.name}"
            if entry.kind == "refused":
                problems.append(
                    problem(
                        entry.code or "not-a-regular-file",
                        path,
                        entry.reason or "not read",
                        patient_id=pid,
                    )
                )
            elif entry.kind == "folder" or not entry.name.lower().endswith(".dcm"):
                problems.append(
                    problem(
                        "stray-file",
                        path,
                        "not an RT Structure Set (<name>.dcm); ignored",
                        patient_id=pid,
                    )
                )
            else:
                files.append(path)
        if not files:
            return found
        headers = _headers(where, slices)
        by_uid = {h.sop_instance_uid: n for n, h in headers.items() if h.sop_instance_uid}
        for path in files:
            try:
                contours = _read(where, path)
            except ContourError as exc:
                problems.append(problem(exc.code, path, exc.reason, patient_id=pid))
                continue
            for contour in contours:
                what = f"ROI {contour.roi_number} {contour.roi_name!r} contour {contour.number}"
                kind = roi_map.get(normalize_roi_name(contour.roi_name))
                if kind is None:
                    if contour.number == 1:  # one problem per ROI
                        problems.append(
                            problem(
                                "unmapped-roi",
                                path,
                                f"ROI {contour.roi_number} {contour.roi_name!r} is not in the ROI "
                                "name map; its contours are not used",
                                patient_id=pid,
                            )
                        )
                    continue
                number, why = _place(contour, by_uid, headers)
                if number is None:
                    code, reason = why
                    problems.append(problem(code, path, f"{what}: {reason}", patient_id=pid))
                    continue
                if number in found[kind]:
                    problems.append(
                        problem(
                            "extra-contour",
                            path,
                            f"{what}: slice {number} already has an {kind}-contour "
                            f"({found[kind][number]}); this one is not used",
                            patient_id=pid,
                            slice=number,
                        )
                    )
                    continue
                found[kind][number] = make_reference(path, contour, slices[number])
        return found


def _headers(where: Location, slices: Mapping[int, str]) -> dict[int, DicomHeader]:
    """The readable headers of a patient's slices (an unreadable one is the scan's to report)."""
    headers = {}
    for number, path in slices.items():
        try:
            headers[number] = _header(where, path)
        except DicomError:
            continue
    return headers


def _place(
    contour: RtContour, by_uid: Mapping[str, int], headers: Mapping[int, DicomHeader]
) -> tuple[int | None, tuple[str, str]]:
    """The slice a contour lies on, or None and (problem code, reason)."""
    if contour.referenced_uid is not None:
        number = by_uid.get(contour.referenced_uid)
        if number is None:
            return None, (
                "referenced-image-missing",
                f"references SOP Instance UID {contour.referenced_uid}, which no image of the "
                "patient has",
            )
        return number, ("", "")
    if not np.isfinite(contour.points).all():
        return None, ("non-finite-coordinate", "a coordinate is not finite")
    on_plane = []
    for number, header in headers.items():
        if not header.has_geometry:
            continue
        _, distance = patient_to_pixel(contour.points, header)
        if len(distance) and np.abs(distance).max() <= OFF_PLANE_TOLERANCE:
            on_plane.append(number)
    if len(on_plane) == 1:
        return on_plane[0], ("", "")
    if not on_plane:
        return None, (
            "contour-on-no-image",
            "no image reference, and no image's plane holds its points",
        )
    return None, (
        "contour-on-no-image",
        f"no image reference, and {len(on_plane)} images share its plane (slices "
        f"{', '.join(map(str, sorted(on_plane)[:5]))}{', ...' if len(on_plane) > 5 else ''}); "
        "cannot tell which",
    )


# ----------------------------------------------------------------------------- writing


def _valid_date(value: object) -> bool:
    try:
        datetime.datetime.strptime(str(value), "%Y%m%d")
    except ValueError:
        return False
    return True


_TIME = re.compile(r"^([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?$")


def valid_value(ds: Dataset, keyword: str) -> Any:
    """``ds.<keyword>`` when present and valid for its VR, else None.

    De-identified files hold dates such as ``20120000`` and birth dates
    ``00000000``; a written object copies only values that are valid.

    Examples
    --------
    >>> ds = Dataset(); ds.StudyDate = "20120000"; ds.StudyTime = "083237.000000"
    >>> valid_value(ds, "StudyDate"), valid_value(ds, "StudyTime")
    (None, '083237.000000')
    """
    if keyword not in ds:
        return None
    element = ds[keyword]
    value = element.value
    if value is None or value == "":
        return None
    if element.VR == "DA":
        return value if _valid_date(value) else None
    if element.VR == "TM":
        return value if _TIME.match(str(value)) else None
    return value


#: Patient and study attributes a derived object copies from its source when valid.
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
)


def structure_set(
    sources: Sequence[Dataset],
    headers: Sequence[DicomHeader],
    contours: Sequence[Mapping[str, np.ndarray]],
    *,
    roi_names: Mapping[str, str] = ROI_NAMES,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_number: int = 901,
    label: str = "dicontour",
) -> Dataset:
    """An RT Structure Set holding contours drawn on source images.

    Parameters
    ----------
    sources : sequence of pydicom Dataset
        The images (headers suffice), all of one study and one frame of reference.
    headers : sequence of DicomHeader
        Their dicontour headers (the geometry).
    contours : sequence of mapping
        Per image, ``{"i": points, "o": points}`` (either may be absent),
        points (x, y) = (column, row) float ndarrays of shape (N, 2).
    roi_names : mapping
        The ROI name written for each kind.
    series_instance_uid, sop_instance_uid : str, optional
        New UIDs by default.

    Returns
    -------
    pydicom Dataset
        With file meta; references to the source study, series, frame of
        reference and images repeat their UIDs exactly.

    Raises
    ------
    ValueError
        No sources, lengths that differ, images of several studies or frames
        of reference.
    DicomError
        An image without the geometry to place its contours.
    """
    if not sources or not len(sources) == len(headers) == len(contours):
        raise ValueError(
            "structure_set needs as many sources, headers and contour maps, at least one"
        )
    frames = {h.frame_of_reference_uid for h in headers}
    studies = {h.study_instance_uid for h in headers}
    if len(frames) != 1 or None in frames or len(studies) != 1 or None in studies:
        raise ValueError(
            f"one structure set holds images of one study and one frame of reference; got "
            f"{len(studies)} study UID(s) {sorted(map(str, studies))[:3]} and {len(frames)} "
            f"frame(s) of reference"
        )
    # Both sets hold exactly one UID, not None (checked above).
    frame, study = str(frames.pop()), str(studies.pop())
    first = sources[0]
    now = datetime.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid or generate_uid())
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    for keyword in PATIENT_STUDY_KEYWORDS:
        # Type 2 attributes: present, empty when the source's value is absent or invalid.
        value = valid_value(first, keyword)
        setattr(ds, keyword, value if value is not None else "")
    ds.StudyInstanceUID = study
    ds.Modality = "RTSTRUCT"
    ds.Manufacturer = "dicontour"
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = frame
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = label
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")
    ds.ReferencedFrameOfReferenceSequence = [_referenced_frame(frame, study, sources)]
    kinds = [k for k in ("i", "o") if any(k in c for c in contours)]
    rois, roi_contours, observations = [], [], []
    for number, kind in enumerate(kinds, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame
        roi.ROIName = roi_names[kind]
        roi.ROIGenerationAlgorithm = "MANUAL"
        rois.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = [255, 0, 0] if kind == "i" else [0, 255, 0]
        item.ContourSequence = [
            _contour(source, header, points[kind])
            for source, header, points in zip(sources, headers, contours, strict=True)
            if kind in points
        ]
        roi_contours.append(item)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = "ORGAN"
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = roi_contours
    ds.RTROIObservationsSequence = observations
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def _referenced_frame(frame: str, study: str, sources: Sequence[Dataset]) -> Dataset:
    by_series: dict[str, list[Dataset]] = {}
    for source in sources:
        by_series.setdefault(str(source.SeriesInstanceUID), []).append(source)
    series_items = []
    for series_uid, members in by_series.items():
        series = Dataset()
        series.SeriesInstanceUID = series_uid
        series.ContourImageSequence = [_image_reference(s) for s in members]
        series_items.append(series)
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = (
        "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired, as PS3.3 asks)
    )
    study_item.ReferencedSOPInstanceUID = study
    study_item.RTReferencedSeriesSequence = series_items
    item = Dataset()
    item.FrameOfReferenceUID = frame
    item.RTReferencedStudySequence = [study_item]
    return item


def _image_reference(source: Dataset) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return reference


def _contour(source: Dataset, header: DicomHeader, points: np.ndarray) -> Dataset:
    mm = pixel_to_patient(points, header, name=str(source.get("SOPInstanceUID", "<image>")))
    item = Dataset()
    item.ContourImageSequence = DicomSequence([_image_reference(source)])
    item.ContourGeometricType = "CLOSED_PLANAR"
    item.NumberOfContourPoints = len(mm)
    # DS holds 16 characters: format_number_as_ds keeps all the precision that fits.
    item.ContourData = [pydicom.valuerep.format_number_as_ds(float(v)) for v in mm.ravel()]
    return item
