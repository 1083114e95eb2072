"""Pixel checks: contours against the image they are drawn on, and against each other.

The geometry checks (``i-outside-o``, ``contours-misaligned``,
``implausible-area``, ``shape-mismatch``) run inside :func:`dicontour.scan` and
live beside it in :mod:`dicontour.consistency`; they are re-exported here.
The pixel checks need the images, so they are not part of the scan:
:func:`check_index` reads every labelled slice and reports
``contour-on-background``, and ``duplicate-contour`` for contour files whose
points repeat another file's.  ``dicontour check ROOT`` and
``dicontour preview`` run them.

Every threshold is relative to the image; no patient is special-cased.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

# The geometry checks moved beside the scan; re-exported here for existing callers.
from ..consistency import (
    AREA_FACTOR,
    AREA_MIN_OTHERS,
    I_OUTSIDE_O_TOLERANCE,
    MISALIGNED_MIN_SLICES,
    MISALIGNED_SHARE,
    SliceGeometry,
    check_patient,
    i_outside_o,
    implausible_areas,
    measure_slice,
    misaligned_contours,
    shape_mismatch,
)
from ..errors import ContourError, DicomError
from ..index import Index, Sample, SampleRecord, read_points
from ..problems import Problem, problem
from .threshold import otsu_threshold

__all__ = [
    "AREA_FACTOR",
    "AREA_MIN_OTHERS",
    "BACKGROUND_SHARE",
    "I_OUTSIDE_O_TOLERANCE",
    "MISALIGNED_MIN_SLICES",
    "MISALIGNED_SHARE",
    "SliceGeometry",
    "background_mask",
    "check_index",
    "check_patient",
    "contour_on_background",
    "duplicate_contours",
    "i_outside_o",
    "implausible_areas",
    "measure_slice",
    "misaligned_contours",
    "shape_mismatch",
    "unloadable",
    "with_problems",
]

#: ``contour-on-background``: more than this share of the mask on dark background.
BACKGROUND_SHARE = 0.5


def background_mask(image: np.ndarray) -> np.ndarray:
    """The image's dark background (air, lung): Otsu's threshold on log intensities.

    MR intensities spread over tissues by factors while air is a noise floor
    near zero, so Otsu's threshold on ``log1p(max(v, 0))`` separates air from
    every tissue, a dark myocardium included, where a threshold on raw values
    would split bright blood from the rest.  A 3x3 mean first narrows the
    noise of the air, which the logarithm would otherwise stretch.

    Parameters
    ----------
    image : float ndarray of shape (H, W)

    Returns
    -------
    bool ndarray of shape (H, W)
        True on background.

    Examples
    --------
    The 3x3 mean lifts the dark column beside the bright half to tissue, so of
    the two dark columns only the outer one is background:

    >>> image = np.full((4, 4), 300.0); image[:, :2] = 3.0
    >>> background_mask(image).astype(int)
    array([[1, 0, 0, 0],
           [1, 0, 0, 0],
           [1, 0, 0, 0],
           [1, 0, 0, 0]])
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W); got ndim={image.ndim}")
    if image.size == 0:
        return np.zeros(image.shape, bool)
    padded = np.pad(image, 1, mode="edge")
    height, width = image.shape
    smooth = sum(padded[r : r + height, c : c + width] for r in range(3) for c in range(3)) / 9.0
    logs = np.log1p(np.maximum(smooth, 0.0))
    return logs <= otsu_threshold(logs)


def contour_on_background(record: SampleRecord, sample: Sample) -> list[Problem]:
    """``contour-on-background`` for a contour whose mask lies mostly on dark background.

    More than :data:`BACKGROUND_SHARE` of the mask on :func:`background_mask`
    means the contour does not belong to this image (another slice, a
    flipped or shifted export): the heart is never in air.
    """
    found = []
    dark = background_mask(sample.image)
    for kind, mask in (("i", sample.i_mask), ("o", sample.o_mask)):
        if mask is None or not mask.any():
            continue
        share = float(dark[mask].mean())
        if share > BACKGROUND_SHARE:
            found.append(
                problem(
                    "contour-on-background",
                    (record.i_contour if kind == "i" else record.o_contour) or record.dicom,
                    f"{share:.0%} of the {kind}-contour's mask lies on the image's dark "
                    f"background (air or lung); it does not fit {record.dicom}",
                    patient_id=record.patient_id,
                    slice=record.slice,
                )
            )
    return found


def duplicate_contours(index: Index) -> list[Problem]:
    """``duplicate-contour`` for contour files whose points equal another file's.

    Two hand-drawn contours never coincide point for point, so a repeat is a
    copy: the same annotation filed under two slices or two patients.  Both
    files are reported (which one is the original cannot be told), each
    naming the other(s).  Reads the contour files again, not the images;
    files that became unreadable since the scan are skipped.
    """
    groups: dict[str, list[tuple[SampleRecord, str]]] = defaultdict(list)
    for record in index:
        for path in filter(None, (record.i_contour, record.o_contour)):
            try:
                points = read_points(index.location, path)
            except ContourError:
                continue  # vanished since the scan: check_index reports it when loading
            digest = hashlib.sha1(np.ascontiguousarray(points, dtype="<f8").tobytes()).hexdigest()
            groups[digest].append((record, path))
    found = []
    for members in groups.values():
        if len(members) < 2:
            continue
        for record, path in members:
            others = [f"{p} (patient {r.patient_id} slice {r.slice})" for r, p in members]
            others.remove(f"{path} (patient {record.patient_id} slice {record.slice})")
            found.append(
                problem(
                    "duplicate-contour",
                    path,
                    "same points as " + "; ".join(others[:3]) + ("; ..." * (len(others) > 3)),
                    patient_id=record.patient_id,
                    slice=record.slice,
                )
            )
    return found


def check_index(index: Index, *, progress: bool = False) -> list[Problem]:
    """The pixel checks of every labelled slice, and the duplicate-contour check.

    Parameters
    ----------
    index : Index
        A scan's result; its images are read.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    list of Problem
        ``contour-on-background`` and ``duplicate-contour`` findings; a slice
        whose files became unreadable since the scan is reported with the
        error's own code.

    Examples
    --------
    >>> index = dicontour.scan("final_data")                   # doctest: +SKIP
    >>> [p.code for p in check_index(index)][:1]               # doctest: +SKIP
    ['duplicate-contour']
    """
    found: list[Problem] = []
    positions: Iterable[int] = range(len(index))
    if progress:
        from tqdm import tqdm  # not a cycle: only when a bar is shown (slow to import)

        positions = tqdm(positions, total=len(index), desc="check", unit="slice", leave=False)
    for k in positions:
        record = index[k]
        try:
            sample = index.load(k)
        except (DicomError, ContourError) as exc:
            found.append(unloadable(record, exc))
            continue
        found.extend(contour_on_background(record, sample))
    found.extend(duplicate_contours(index))
    return found


def unloadable(record: SampleRecord, error: DicomError | ContourError) -> Problem:
    """The problem for a slice that passed the scan but cannot be loaded now.

    A file changed since the scan, or compressed pixels the header-only scan
    could not test; its code is the error's.
    """
    return Problem.from_error(
        error,
        path=record.dicom if isinstance(error, DicomError) else error.path,
        note=" (the scan passed it; loading failed)",
        patient_id=record.patient_id,
        slice=record.slice,
    )


def with_problems(index: Index, extra: Iterable[Problem]) -> Index:
    """A copy of ``index`` with ``extra`` problems added and its summary recomputed."""
    problems = sorted([*index.problems, *extra], key=lambda p: (p.path, p.code))
    return Index(
        index.location, index.samples, problems, counts=index.counts, excluded=index.excluded
    )
