"""Write a deterministic synthetic cine cardiac MRI dataset (a "phantom").

The phantom has exactly the layout of the real data::

    ROOT/link.csv                                   patient_id,original_id
    ROOT/dicoms/<patient_id>/<n>.dcm                n = 1..N = InstanceNumber
    ROOT/contourfiles/<original_id>/i-contours/IM-0001-<nnnn>-icontour-manual.txt
    ROOT/contourfiles/<original_id>/o-contours/IM-0001-<nnnn>-ocontour-manual.txt

Every image is a short-axis slice: a noisy dark background, a body ellipse, a
bright left-ventricle blood pool, a darker myocardium ring around it and a few
dark papillary muscles inside the pool.  The i-contour traces the blood pool
(papillary muscles included, as annotators draw it) and the o-contour the
outer edge of the myocardium, so masks built from the contours match the
image.  Optional deliberate faults exercise a dataset scan; see
:func:`write_phantom`.

Everything is derived from ``seed`` through :func:`numpy.random.default_rng`,
so the same arguments always give byte-identical files.
"""

from __future__ import annotations

import copy
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

__all__ = [
    "CARDIAC_PHASES",
    "RESCALED_PATIENT",
    "PhantomInfo",
    "phantom_slice",
    "write_phantom",
]

#: Frames in one cardiac cycle; slice n is phase (n - 1) % 20 at location (n - 1) // 20.
CARDIAC_PHASES = 20
#: The one patient whose files carry RescaleSlope 2 and RescaleIntercept -100.
RESCALED_PATIENT = "PHA00002"

# Mean intensities (stored values) and noise.
_BACKGROUND = 20.0
_BODY = 200.0
_MYOCARDIUM = 250.0
_BLOOD = 700.0
_NOISE_SD = 30.0

_PIXEL_SPACING = 1.40625  # mm, a 180 mm field of view at 128 pixels
_SLICE_THICKNESS = 8.0  # mm

_META_LENGTH = 0x00020000  # (0002,0000) File Meta Information Group Length
_MEDIA_INSTANCE_UID = Tag(0x00020003)
_PIXEL_DATA = Tag(0x7FE00010)
#: The elements that change from slice to slice.
_PER_SLICE = (
    "SOPInstanceUID",
    "TriggerTime",
    "InstanceNumber",
    "ImagePositionPatient",
    "SliceLocation",
    "PixelData",
)


@dataclass(frozen=True)
class PhantomInfo:
    """What :func:`write_phantom` wrote.

    Attributes
    ----------
    root : str
        The dataset root.
    patients : tuple of str
        The patient ids written with DICOM files, in order.
    dicoms : int
        Number of ``.dcm`` files written, the truncated one included.
    i_contours, o_contours : int
        Number of valid contour files that pair with a readable slice of a
        patient in ``link.csv``: the contours a correct scan keeps.
    faults : tuple of (str, str)
        The deliberate faults as (expected problem code, path of the file or
        folder concerned relative to ``root`` with forward slashes).
    """

    root: str
    patients: tuple[str, ...]
    dicoms: int
    i_contours: int
    o_contours: int
    faults: tuple[tuple[str, str], ...]


@lru_cache(maxsize=8)
def _body(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free background and body, and the coil shading; read-only, cached per shape."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    shading = 1.0 + 0.08 * (xs / width - 0.5) - 0.06 * (ys / height - 0.5)
    bx, by = xs - width / 2.0, ys - height / 2.0
    rho = np.hypot(bx, by)
    inside = rho > 0
    c = np.divide(bx, rho, out=np.ones_like(rho), where=inside)
    s = np.divide(by, rho, out=np.zeros_like(rho), where=inside)
    edge = _ellipse_radius(c, s, 0.42 * width, 0.34 * height, 0.0)
    signal = _BACKGROUND + shading * (_BODY - _BACKGROUND) * _coverage(edge - rho)
    signal = signal.astype(np.float32)
    signal.flags.writeable = False
    shading.flags.writeable = False
    return signal, shading


def _ellipse_radius(c: np.ndarray, s: np.ndarray, a: float, b: float, tilt: float) -> np.ndarray:
    """Distance from the centre to a tilted ellipse's edge in the direction (cos, sin) = (c, s)."""
    ct = c * math.cos(tilt) + s * math.sin(tilt)
    st = s * math.cos(tilt) - c * math.sin(tilt)
    return a * b / np.sqrt((b * ct) ** 2 + (a * st) ** 2)


def _coverage(distance_inside: np.ndarray) -> np.ndarray:
    """Fraction of a pixel inside an edge, from the signed distance to it (soft edges)."""
    return np.clip(distance_inside + 0.5, 0.0, 1.0)


Radius = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _polygon(cx: float, cy: float, radius: Radius, count: int, start: float) -> np.ndarray:
    """A star-shaped polygon, vertices rounded to 0.5 pixel, no repeated vertices."""
    theta = start + np.linspace(0.0, 2.0 * math.pi, count, endpoint=False)
    c, s = np.cos(theta), np.sin(theta)
    r = radius(c, s)
    xy = np.column_stack([cx + r * c, cy + r * s])
    xy = np.round(xy * 2.0) / 2.0
    keep = np.any(xy != np.roll(xy, 1, axis=0), axis=1)
    return xy[keep] if keep.any() else xy[:1]


def phantom_slice(
    shape: tuple[int, int], *, rng: np.random.Generator, phase: float, level: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one short-axis cine MRI slice and its two contours.

    Pure: no I/O, and the output depends only on the arguments (``rng`` is
    advanced).  The blood pool is largest at ``phase`` 0 (end diastole) and
    smallest at 0.5 (end systole), and shrinks towards the apex as ``level``
    goes from 0 (base) to 1; the wall thickens as the pool contracts.  Stored
    intensities are about 20 (background), 200 (body), 250 (myocardium and
    papillary muscles) and 700 (blood), with a gentle shading across the body,
    plus Gaussian noise of sd 30, so the background holds some negative values.

    Parameters
    ----------
    shape : (int, int)
        Image (rows, columns); both at least 32.
    rng : numpy.random.Generator
        Source of the noise, the small jitter of the heart and the contour
        irregularity.
    phase : float
        Cardiac phase; only its fractional part matters.
    level : float
        Position in the stack, 0 (base) to 1 (apex).

    Returns
    -------
    image : int16 ndarray of shape ``shape``
    i_polygon : float64 ndarray of shape (N, 2)
        The blood pool's outline as (x, y) = (column, row), pixel centres at
        integers, rounded to 0.5, about 60 to 120 vertices, not closed.
    o_polygon : float64 ndarray of shape (M, 2)
        The myocardium's outer outline, same conventions; it strictly
        contains ``i_polygon``.

    Examples
    --------
    >>> image, inner, outer = phantom_slice((128, 128), rng=np.random.default_rng(0), phase=0.0)
    >>> image.dtype, image.shape, inner.shape[1], outer.shape[1]
    (dtype('int16'), (128, 128), 2, 2)
    """
    height, width = int(shape[0]), int(shape[1])
    if min(height, width) < 32:
        raise ValueError(f"shape must be at least 32 x 32, got {shape!r}")
    size = float(min(height, width))
    level = min(max(float(level), 0.0), 1.0)
    # 1 at end diastole, 0 at end systole, smooth in between.
    filling = 0.5 + 0.5 * math.cos(2.0 * math.pi * float(phase))

    # The heart, with a little jitter (breathing, heart motion).
    jitter = rng.normal(0.0, 0.6, size=2)
    cx, cy = 0.55 * width + jitter[0], 0.45 * height + jitter[1]
    a_in = size * (0.075 + 0.045 * filling) * (1.0 - 0.35 * level)
    b_in = 0.85 * a_in
    tilt = 0.3 + 0.05 * math.sin(2.0 * math.pi * float(phase))
    wall = size * (0.045 + 0.02 * (1.0 - filling))
    # Irregular edges: harmonics 2..4 on top of the ellipse, as complex weights.
    amp_in = rng.uniform(0.0, 0.03, size=3)
    weights = amp_in * np.exp(1j * rng.uniform(0.0, 2.0 * math.pi, size=3))
    amp_out = float(rng.uniform(0.0, 0.12))
    off_out = float(rng.uniform(0.0, 2.0 * math.pi))

    def r_in(c: np.ndarray, s: np.ndarray) -> np.ndarray:
        z = c + 1j * s
        z2 = z * z
        wobble = (z2 * (weights[0] + z * (weights[1] + z * weights[2]))).real
        return _ellipse_radius(c, s, a_in, b_in, tilt) * (1.0 + wobble)

    def thickness(c: np.ndarray, s: np.ndarray) -> np.ndarray:
        return wall * (1.0 + amp_out * (c * math.cos(off_out) - s * math.sin(off_out)))

    def r_out(c: np.ndarray, s: np.ndarray) -> np.ndarray:
        return r_in(c, s) + thickness(c, s)

    # Papillary muscles: dark blobs in the pool, near its edge.
    n_muscles = int(rng.integers(2, 4))
    angles = np.array([3.6, 4.9, 2.6])[:n_muscles] + rng.normal(0.0, 0.15, size=n_muscles)
    centre_r = r_in(np.cos(angles), np.sin(angles)) * rng.uniform(0.68, 0.78, size=n_muscles)
    muscle_r = a_in * rng.uniform(0.13, 0.19, size=n_muscles)
    noise = rng.standard_normal((height, width), dtype=np.float32)

    # The heart is drawn only in its bounding box, with anti-aliased edges.
    base, shading = _body((height, width))
    reach = a_in * (1.0 + amp_in.sum()) + wall * (1.0 + amp_out) + 2.0
    r0, r1 = max(0, math.floor(cy - reach)), min(height, math.ceil(cy + reach) + 1)
    c0, c1 = max(0, math.floor(cx - reach)), min(width, math.ceil(cx + reach) + 1)
    ys, xs = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    dx, dy = xs - cx, ys - cy
    rho = np.hypot(dx, dy)
    inside = rho > 0
    c = np.divide(dx, rho, out=np.ones_like(rho), where=inside)
    s = np.divide(dy, rho, out=np.zeros_like(rho), where=inside)
    inner_edge = r_in(c, s)
    w_inner = _coverage(inner_edge - rho)
    w_outer = _coverage(inner_edge + thickness(c, s) - rho)
    w_muscle = np.zeros_like(rho)
    for angle, cr, mr in zip(angles, centre_r, muscle_r, strict=True):
        mx, my = cx + cr * math.cos(angle), cy + cr * math.sin(angle)
        w_muscle = np.maximum(w_muscle, _coverage(mr - np.hypot(xs - mx, ys - my)))
    heart = (_MYOCARDIUM - _BODY) * w_outer + (_BLOOD - _MYOCARDIUM) * w_inner * (1.0 - w_muscle)

    signal = base + np.float32(_NOISE_SD) * noise
    signal[r0:r1, c0:c1] += shading[r0:r1, c0:c1] * heart
    image = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)

    # Contours traced on the same edges.
    n_in = int(rng.integers(60, 121))
    n_out = int(rng.integers(60, 121))
    start_in, start_out = rng.uniform(0.0, 2.0 * math.pi, size=2)
    i_polygon = _polygon(cx, cy, r_in, n_in, start_in)
    o_polygon = _polygon(cx, cy, r_out, n_out, start_out)
    return image, i_polygon, o_polygon


def _format_polygon(points: np.ndarray) -> str:
    return "".join(f"{x:.2f} {y:.2f}\n" for x, y in points.tolist())


def _write_text(path: Path, text: str) -> None:
    """Write ASCII text with ``\\n`` line ends on every platform."""
    path.write_bytes(text.encode("ascii"))


def _contour_name(kind: str, n: int) -> str:
    return f"{kind}-contours/IM-0001-{n:04d}-{kind}contour-manual.txt"


def _uid(*parts: object) -> UID:
    return generate_uid(entropy_srcs=["dicontour-phantom", *(str(p) for p in parts)])


def _template(shape: tuple[int, int], patient_id: str, seed: int, rescaled: bool) -> Dataset:
    """The dataset of one patient's slices; the per-slice fields are filled in later."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = _uid(seed, patient_id, "template")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = "20000101"
    ds.SeriesDate = "20000101"
    ds.StudyTime = "120000"
    ds.Modality = "MR"
    ds.Manufacturer = "dicontour phantom"
    ds.SeriesDescription = "synthetic cine short axis"
    ds.PatientName = f"Phantom^{patient_id}"
    ds.PatientID = patient_id
    ds.SliceThickness = _SLICE_THICKNESS
    ds.CardiacNumberOfImages = CARDIAC_PHASES
    ds.StudyInstanceUID = _uid(seed, patient_id, "study")
    ds.SeriesInstanceUID = _uid(seed, patient_id, "series")
    ds.FrameOfReferenceUID = _uid(seed, patient_id, "frame")
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.TriggerTime = 0.0
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceLocation = 0.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = shape
    ds.PixelSpacing = [_PIXEL_SPACING, _PIXEL_SPACING]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    if rescaled:
        ds.RescaleIntercept = -100
        ds.RescaleSlope = 2
        ds.RescaleType = "US"
    ds.PixelData = b"\x00\x00" * (shape[0] * shape[1])
    ds["PixelData"].VR = "OW"
    return ds


class _SliceWriter:
    """Encode one patient's slices quickly from a template dataset.

    pydicom encodes every element of the template once (the file meta made
    complete by :func:`pydicom.dataset.validate_file_meta`, as
    ``dcmwrite(..., enforce_file_format=True)`` does).  Per slice only the
    elements named in ``variable`` are encoded and spliced in, with the
    meta's MediaStorageSOPInstanceUID and group length.  Encoded values that
    repeat (instance numbers, trigger times, positions) are kept in ``cache``,
    which may be shared between writers.  The result is the byte stream
    ``dcmwrite`` produces for the template with those values, several times
    faster.
    """

    def __init__(
        self, template: Dataset, variable: tuple[str, ...], cache: dict[str, bytes] | None = None
    ) -> None:
        if template["PixelData"].VR != "OW":
            raise ValueError("the template's PixelData must be OW")
        self._vrs = {keyword: template[keyword].VR for keyword in variable}
        self._cache = {} if cache is None else cache
        meta = copy.deepcopy(template.file_meta)
        validate_file_meta(meta, enforce_standard=True)
        self._preamble = (template.preamble or b"\x00" * 128) + b"DICM"
        self._encodings = convert_encodings(template.get("SpecificCharacterSet"))
        self._meta = self._split(meta, {_MEDIA_INSTANCE_UID}, skip={_META_LENGTH})
        self._data = self._split(template, {Tag(keyword) for keyword in variable})

    def _encode(self, elem: DataElement) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        write_data_element(fp, elem, self._encodings)
        return fp.getvalue()

    def _split(
        self, ds: Dataset, variable: set[BaseTag], skip: frozenset[int] | set[int] = frozenset()
    ) -> list[bytes | BaseTag]:
        """The encoded dataset as runs of fixed bytes with the variable tags between."""
        parts: list[bytes | BaseTag] = []
        run: list[bytes] = []
        for elem in ds:
            if elem.tag in skip:
                continue
            if elem.tag in variable:
                parts += [b"".join(run), elem.tag]
                run = []
            else:
                run.append(self._encode(elem))
        parts.append(b"".join(run))
        return parts

    def _element(self, tag: BaseTag, vr: str, value: object, *, cache: bool) -> bytes:
        if tag == _PIXEL_DATA:
            assert isinstance(value, bytes)
            # Explicit VR little endian, long form: tag, VR, 2 reserved bytes, 4-byte length.
            return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(value)) + value
        key = f"{tag:08X} {vr} {value!r}"
        encoded = self._cache.get(key)
        if encoded is None:
            encoded = self._encode(DataElement(tag, vr, value))
            if cache:
                self._cache[key] = encoded
        return encoded

    def encode(self, values: dict[str, object]) -> bytes:
        """The whole file for the template with the variable elements set to ``values``.

        ``values`` maps each variable keyword to its new value, in a form
        pydicom accepts for that element; ``SOPInstanceUID`` is also written to
        the file meta.
        """
        encoded = {}
        for keyword, value in values.items():
            tag = Tag(keyword)
            encoded[tag] = self._element(
                tag, self._vrs[keyword], value, cache=keyword != "SOPInstanceUID"
            )
        uid = self._element(_MEDIA_INSTANCE_UID, "UI", values["SOPInstanceUID"], cache=False)
        meta = b"".join(part if isinstance(part, bytes) else uid for part in self._meta)
        # (0002,0000) UL, explicit VR little endian short form.
        length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(meta))
        data = b"".join(part if isinstance(part, bytes) else encoded[part] for part in self._data)
        return self._preamble + length + meta + data


def _check_arguments(
    patients: int, slices: int, shape: tuple[int, int], labelled_every: int, seed: int
) -> None:
    if not 1 <= patients <= 99_990:
        raise ValueError(f"patients must be 1..99990, got {patients!r}")
    if slices < 1:
        raise ValueError(f"slices must be at least 1, got {slices!r}")
    if labelled_every < 1:
        raise ValueError(f"labelled_every must be at least 1, got {labelled_every!r}")
    if len(shape) != 2 or min(shape) < 32 or max(shape) > 4096:
        raise ValueError(f"shape must be two sizes from 32 to 4096, got {shape!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def write_phantom(
    root: str | os.PathLike[str],
    *,
    patients: int = 3,
    slices: int = 20,
    shape: tuple[int, int] = (128, 128),
    labelled_every: int = 2,
    faults: bool = True,
    seed: int = 0,
) -> PhantomInfo:
    """Write a synthetic cine cardiac MRI dataset in the layout of the real data.

    Patient k (k = 1..``patients``) has patient_id ``PHA<k:05d>`` and original
    id ``PH-<k>``, and ``slices`` DICOM files ``1.dcm`` .. ``<slices>.dcm``.
    Slice n shows cardiac phase ``(n - 1) % 20`` at stack location
    ``(n - 1) // 20`` (see :func:`phantom_slice`).  Each file is a valid DICOM
    file (128-byte preamble, file meta, MR Image Storage, Explicit VR Little
    Endian) holding a signed 16-bit MONOCHROME2 image with 1.40625 mm pixels,
    InstanceNumber n and a SOPInstanceUID derived from seed, patient and slice.
    Patient ``PHA00002`` (:data:`RESCALED_PATIENT`, when ``patients >= 2``) has
    RescaleSlope 2 and RescaleIntercept -100; its stored values follow the same
    distribution as everyone else's, so its modality values are ``2 * v - 100``.
    The others have no rescale attributes.

    Slices n divisible by ``labelled_every`` get an i-contour; every second one
    of those, starting with the first, also an o-contour.  Each patient gets
    both contour sub-folders even if they stay empty.

    With ``faults=True`` seven deliberate faults are added (each needs at least
    three labelled slices).  Below, L is the list of labelled slices, O =
    L[0::2] those with an o-contour and ``P`` the last patient:

    1. ``unreadable-dicom``: ``dicoms/<P>/<L[1]>.dcm`` (an i-contour-only slice)
       is cut in the middle of its pixel data; its i-contour is not counted.
    2. ``unparseable-contour``: patient 1's i-contour of slice O[0] holds a
       line ``12.5 abc``; the slice's valid o-contour is counted.
    3. ``missing-dicom``: patient 1 gets a valid i-contour for slice
       ``slices + 5``, which has no DICOM file.
    4. ``not-in-link-csv``: folder ``contourfiles/PH-99`` with one valid
       i-contour, absent from link.csv.
    5. ``missing-patient-folder``: link.csv row ``PHA00099,PH-98`` with no
       dicoms folder (and no contour folder, so a scan may also warn
       ``missing-contour-folder``).
    6. ``stray-file`` (info): ``dicoms/PHA00001/notes.txt``.
    7. ``empty-contour``: the o-contour of slice O[1] of patient 2 (patient 1
       if there is only one) is an empty file; that slice's i-contour is
       counted.

    For ``patients >= 98`` the ids of faults 4 and 5 move past the real ones:
    ``PHA<g:05d>,PH-<g-1>`` and ``PH-<g>`` with ``g = patients + 2``.  With
    ``faults=False`` the dataset is clean.

    Parameters
    ----------
    root : str or os.PathLike
        A local directory; created if missing.  It must not exist with content.
    patients : int
        Number of patients with DICOM files.
    slices : int
        DICOM files per patient.
    shape : (int, int)
        Image (rows, columns), each 32..4096.
    labelled_every : int
        Label every this-many-th slice.
    faults : bool
        Add the deliberate faults listed above.
    seed : int
        Non-negative seed; the same arguments give byte-identical files.

    Returns
    -------
    PhantomInfo
        What was written, with the expected faults.

    Raises
    ------
    ValueError
        ``root`` is a file or a non-empty directory, or an argument is out of
        range, or ``faults=True`` with fewer than 3 labelled slices.

    Examples
    --------
    >>> import tempfile
    >>> info = write_phantom(tempfile.mkdtemp() + "/data", patients=2, slices=10)
    >>> info.patients, info.dicoms, info.i_contours, info.o_contours
    (('PHA00001', 'PHA00002'), 20, 8, 5)
    >>> info.faults[0]
    ('unreadable-dicom', 'dicoms/PHA00002/4.dcm')
    """
    shape = (int(shape[0]), int(shape[1]))
    _check_arguments(patients, slices, shape, labelled_every, seed)
    plan = _Plan.make(patients, slices, shape, labelled_every, faults, seed)
    base = _empty_folder(Path(root))
    ids = [(f"PHA{k:05d}", f"PH-{k}") for k in range(1, patients + 1)]
    ghost = max(99, patients + 2)
    ghost_row = (f"PHA{ghost:05d}", f"PH-{ghost - 1}")

    cache: dict[str, bytes] = {}
    counts = [
        _write_patient(base, plan, index, patient_id, original_id, cache)
        for index, (patient_id, original_id) in enumerate(ids)
    ]
    _write_link_csv(base, [*ids, ghost_row] if faults else ids)
    fault_list = _write_faults(base, plan, ids, ghost_row, f"PH-{ghost}") if faults else []
    dicom_count, i_count, o_count = (sum(column) for column in zip(*counts, strict=True))
    return PhantomInfo(
        root=str(base),
        patients=tuple(p for p, _ in ids),
        dicoms=dicom_count,
        i_contours=i_count,
        o_contours=o_count,
        faults=tuple(fault_list),
    )


@dataclass(frozen=True)
class _Plan:
    """What :func:`write_phantom` writes where, from its checked arguments."""

    slices: int
    shape: tuple[int, int]
    labelled_every: int
    seed: int
    labelled: list[int]
    #: Labelled slices that also get an o-contour.
    outlined: set[int]
    #: Stack locations (``slices / 20`` rounded up).
    locations: int
    #: Where the in-place faults go, as (patient index, slice); None without faults.
    truncated: tuple[int, int] | None
    garbled: tuple[int, int] | None
    emptied: tuple[int, int] | None

    @classmethod
    def make(
        cls,
        patients: int,
        slices: int,
        shape: tuple[int, int],
        labelled_every: int,
        faults: bool,
        seed: int,
    ) -> _Plan:
        labelled = list(range(labelled_every, slices + 1, labelled_every))
        if faults and len(labelled) < 3:
            raise ValueError(
                f"faults=True needs at least 3 labelled slices, got {len(labelled)} "
                f"({slices} slices, labelled_every={labelled_every})"
            )
        return cls(
            slices=slices,
            shape=shape,
            labelled_every=labelled_every,
            seed=seed,
            labelled=labelled,
            outlined=set(labelled[0::2]),
            locations=max(1, math.ceil(slices / CARDIAC_PHASES)),
            truncated=(patients - 1, labelled[1]) if faults else None,
            garbled=(0, labelled[0]) if faults else None,
            emptied=(min(1, patients - 1), labelled[2]) if faults else None,
        )


def _empty_folder(base: Path) -> Path:
    """``base``, created; refused if it is a file or a folder with content."""
    if base.exists():
        if not base.is_dir():
            raise ValueError(f"{base}: exists and is not a directory")
        if any(base.iterdir()):
            raise ValueError(f"{base}: directory is not empty")
    base.mkdir(parents=True, exist_ok=True)
    return base


def _write_patient(
    base: Path, plan: _Plan, index: int, patient_id: str, original_id: str, cache: dict[str, bytes]
) -> tuple[int, int, int]:
    """One patient's DICOM files and contours; (DICOMs, i-contours, o-contours) counted."""
    dicom_dir = base / "dicoms" / patient_id
    contour_dir = base / "contourfiles" / original_id
    dicom_dir.mkdir(parents=True)
    (contour_dir / "i-contours").mkdir(parents=True)
    (contour_dir / "o-contours").mkdir()
    template = _template(plan.shape, patient_id, plan.seed, patient_id == RESCALED_PATIENT)
    writer = _SliceWriter(template, _PER_SLICE, cache)
    i_count = o_count = 0
    for n in range(1, plan.slices + 1):
        phase_index, location = (n - 1) % CARDIAC_PHASES, (n - 1) // CARDIAC_PHASES
        rng = np.random.default_rng([plan.seed, index, n])
        image, inner, outer = phantom_slice(
            plan.shape,
            rng=rng,
            phase=phase_index / CARDIAC_PHASES,
            level=location / max(1, plan.locations - 1),
        )
        z = location * _SLICE_THICKNESS
        values = {
            "SOPInstanceUID": _uid(plan.seed, patient_id, n),
            "TriggerTime": phase_index * 40.0,
            "InstanceNumber": n,
            "ImagePositionPatient": [0.0, 0.0, z],
            "SliceLocation": z,
            "PixelData": image.astype("<i2", copy=False).tobytes(),
        }
        data = writer.encode(values)
        readable = (index, n) != plan.truncated
        if not readable:
            # Cut in the middle of the pixel data, the file's last element.
            data = data[: len(data) - image.nbytes // 2]
        (dicom_dir / f"{n}.dcm").write_bytes(data)
        if n % plan.labelled_every == 0:
            i_add, o_add = _write_contours(contour_dir, plan, (index, n), inner, outer, readable)
            i_count += i_add
            o_count += o_add
    return plan.slices, i_count, o_count


def _write_contours(
    folder: Path,
    plan: _Plan,
    where: tuple[int, int],
    inner: np.ndarray,
    outer: np.ndarray,
    readable: bool,
) -> tuple[int, int]:
    """A labelled slice's i-contour (and o-contour if outlined); the valid ones counted."""
    n = where[1]
    i_count = o_count = 0
    i_text = _format_polygon(inner)
    if where == plan.garbled:
        lines = i_text.splitlines(keepends=True)
        i_text = "".join([*lines[:3], "12.5 abc\n", *lines[3:]])
    elif readable:
        i_count += 1
    _write_text(folder / _contour_name("i", n), i_text)
    if n in plan.outlined:
        o_text = _format_polygon(outer)
        if where == plan.emptied:
            o_text = ""
        elif readable:
            o_count += 1
        _write_text(folder / _contour_name("o", n), o_text)
    return i_count, o_count


def _write_link_csv(base: Path, rows: list[tuple[str, str]]) -> None:
    with open(base / "link.csv", "w", encoding="ascii", newline="") as handle:
        handle.write("patient_id,original_id\n")
        handle.writelines(f"{p},{o}\n" for p, o in rows)


def _write_faults(
    base: Path,
    plan: _Plan,
    ids: list[tuple[str, str]],
    ghost_row: tuple[str, str],
    orphan: str,
) -> list[tuple[str, str]]:
    """The faults that add files (3, 4 and 6); all seven as (code, path)."""
    assert plan.truncated is not None and plan.garbled is not None and plan.emptied is not None
    first_pid, first_oid = ids[0]
    # Contours without a DICOM: geometry of a slice one past the last.
    extra_slice = plan.slices + 5
    _, extra, _ = phantom_slice(
        plan.shape, rng=np.random.default_rng([plan.seed, 0, extra_slice]), phase=0.0
    )
    missing = f"contourfiles/{first_oid}/{_contour_name('i', extra_slice)}"
    _write_text(base / missing, _format_polygon(extra))
    orphan_file = f"contourfiles/{orphan}/{_contour_name('i', 1)}"
    (base / orphan_file).parent.mkdir(parents=True)
    _write_text(base / orphan_file, _format_polygon(extra))
    _write_text(
        base / "dicoms" / first_pid / "notes.txt",
        "Synthetic phantom: this file is not part of the layout.\n",
    )
    truncated, garbled, emptied = plan.truncated, plan.garbled, plan.emptied
    return [
        ("unreadable-dicom", f"dicoms/{ids[truncated[0]][0]}/{truncated[1]}.dcm"),
        ("unparseable-contour", f"contourfiles/{first_oid}/{_contour_name('i', garbled[1])}"),
        ("missing-dicom", missing),
        ("not-in-link-csv", f"contourfiles/{orphan}"),
        ("missing-patient-folder", f"dicoms/{ghost_row[0]}"),
        ("stray-file", f"dicoms/{first_pid}/notes.txt"),
        ("empty-contour", f"contourfiles/{ids[emptied[0]][1]}/{_contour_name('o', emptied[1])}"),
    ]
