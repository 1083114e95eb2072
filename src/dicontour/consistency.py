"""Geometry checks the scan runs: contours against each other and the patient's others.

Header-only, no pixels: :func:`check_patient` rasterises each slice's polygons
once and reports ``i-outside-o`` (per slice), ``contours-misaligned`` (one line
per patient), ``implausible-area`` (per contour, relative to the patient's
others) and ``shape-mismatch``.  :func:`dicontour.scan` calls it for every
patient; the pixel checks, which need the images, live in
:mod:`dicontour.qa.checks`.

Every threshold is relative to the patient; no patient is special-cased.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .index import SampleRecord
from .problems import Problem, problem
from .raster import polygon_to_mask

#: Fraction of the i-mask allowed outside the o-mask before ``i-outside-o``.
I_OUTSIDE_O_TOLERANCE = 0.02
#: A patient is ``contours-misaligned`` when at least this share of its slices
#: with both contours (and at least :data:`MISALIGNED_MIN_SLICES`) has ``i-outside-o``.
MISALIGNED_SHARE = 0.5
MISALIGNED_MIN_SLICES = 2
#: ``implausible-area``: an area over this factor times the largest, or under the
#: smallest divided by it, of the patient's other contours of the same kind.
AREA_FACTOR = 3.0
#: Fewer other contours of the same kind than this and the area is not judged:
#: a range from a handful of slices does not cover base-to-apex variation.
AREA_MIN_OTHERS = 5

Kind = str  # "i" or "o"


@dataclass(frozen=True)
class SliceGeometry:
    """What the geometry checks measure on one slice's contours.

    Attributes
    ----------
    record : SampleRecord
    areas : dict of {"i", "o"} to int
        Pixels inside each valid contour (the mask of :func:`polygon_to_mask`).
    centres : dict of {"i", "o"} to (float, float)
        (row, col) centre of each non-empty mask.
    i_outside : float or None
        Fraction of the i-mask outside the o-mask, where both contours exist.
    """

    record: SampleRecord
    areas: dict[Kind, int]
    centres: dict[Kind, tuple[float, float]]
    i_outside: float | None

    def path(self, kind: Kind) -> str:
        """Relative path of the slice's i- or o-contour file."""
        found = self.record.i_contour if kind == "i" else self.record.o_contour
        return found or self.record.dicom


def measure_slice(record: SampleRecord, points: dict[Kind, np.ndarray]) -> SliceGeometry:
    """Rasterise one slice's polygons and measure areas, centres and overlap.

    Parameters
    ----------
    record : SampleRecord
        The slice (its shape is the mask shape).
    points : dict of {"i", "o"} to float ndarray of shape (N, 2)
        The valid polygons as (x, y) = (column, row), as read by
        :func:`dicontour.read_contour`.

    Returns
    -------
    SliceGeometry

    Examples
    --------
    >>> from dicontour.index import SampleRecord
    >>> from dicontour.dicom import DicomHeader
    >>> header = DicomHeader(8, 8, None, 1, None, 1.0, 0.0, "")
    >>> record = SampleRecord("P1", "O1", 1, "dicoms/P1/1.dcm", "i.txt", "o.txt", header)
    >>> inner = np.array([(2, 2), (2, 4), (6, 4), (6, 2)])   # 4 x 2 = 8 pixels
    >>> outer = np.array([(0, 0), (0, 8), (4, 8), (4, 0)])   # cols 0..3: half of inner
    >>> g = measure_slice(record, {"i": inner, "o": outer})
    >>> g.areas["i"], g.i_outside
    (8, 0.5)
    """
    # Rasterise only the box around the polygons (clipped to the image), shifted by
    # whole pixels: the same masks as on the full image, for a fraction of the work.
    height, width = record.shape
    top, left, bottom, right = 0, 0, 0, 0
    if points:
        stacked = np.concatenate([np.asarray(p, dtype=np.float64) for p in points.values()])
        left = int(np.clip(np.floor(stacked[:, 0].min()), 0, width))
        right = int(np.clip(np.ceil(stacked[:, 0].max()) + 1, left, width))
        top = int(np.clip(np.floor(stacked[:, 1].min()), 0, height))
        bottom = int(np.clip(np.ceil(stacked[:, 1].max()) + 1, top, height))
    offset = np.array([left, top], dtype=np.float64)
    masks = {
        kind: polygon_to_mask(
            np.asarray(polygon, np.float64) - offset, (bottom - top, right - left)
        )
        for kind, polygon in points.items()
    }
    areas = {kind: int(np.count_nonzero(mask)) for kind, mask in masks.items()}
    centres = {}
    for kind, mask in masks.items():
        if areas[kind]:
            row_counts, col_counts = mask.sum(axis=1), mask.sum(axis=0)
            centres[kind] = (
                top + float(row_counts @ np.arange(row_counts.size)) / areas[kind],
                left + float(col_counts @ np.arange(col_counts.size)) / areas[kind],
            )
    i_outside = None
    if "i" in masks and "o" in masks:
        inside = areas["i"]
        i_outside = float((masks["i"] & ~masks["o"]).sum()) / inside if inside else 0.0
    return SliceGeometry(record, areas, centres, i_outside)


def i_outside_o(geometry: Iterable[SliceGeometry]) -> list[Problem]:
    """``i-outside-o`` for each slice whose i-mask pokes out of its o-mask.

    The message gives the fraction of the i-mask outside, beyond
    :data:`I_OUTSIDE_O_TOLERANCE` (2%, a pixel's width of disagreement along
    a contour drawn twice).
    """
    found = []
    for slice_ in geometry:
        if slice_.i_outside is None or slice_.i_outside <= I_OUTSIDE_O_TOLERANCE:
            continue
        record = slice_.record
        found.append(
            problem(
                "i-outside-o",
                record.i_contour or record.dicom,
                f"{slice_.i_outside:.0%} of the i-contour's mask lies outside the o-contour "
                f"({record.o_contour})",
                patient_id=record.patient_id,
                slice=record.slice,
            )
        )
    return found


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def misaligned_contours(geometry: Sequence[SliceGeometry]) -> list[Problem]:
    """One ``contours-misaligned`` line for a patient whose i- and o-contours disagree.

    Raised when at least :data:`MISALIGNED_SHARE` of the patient's slices with
    both contours (and at least :data:`MISALIGNED_MIN_SLICES`) have
    ``i-outside-o``: then the disagreement is systematic (o-contours from
    another series, a shifted export), not one slip of the pen.  The message
    gives the share, the median and largest fraction outside and the median
    distance between the i- and o-contour centres.
    """
    both = [g for g in geometry if g.i_outside is not None]
    bad = [g for g in both if g.i_outside is not None and g.i_outside > I_OUTSIDE_O_TOLERANCE]
    if len(bad) < MISALIGNED_MIN_SLICES or len(bad) < MISALIGNED_SHARE * len(both):
        return []
    record = bad[0].record
    fractions = [g.i_outside or 0.0 for g in bad]
    offsets = [
        _distance(g.centres["i"], g.centres["o"]) for g in both if {"i", "o"} <= set(g.centres)
    ]
    spacing = record.header.pixel_spacing
    offset = float(np.median(offsets)) if offsets else float("nan")
    in_mm = f" ({offset * float(np.mean(spacing)):.1f} mm)" if spacing and offsets else ""
    return [
        problem(
            "contours-misaligned",
            f"contourfiles/{record.original_id}",
            f"the i- and o-contours do not line up: {len(bad)} of {len(both)} slices with both "
            f"contours have i-outside-o (median {np.median(fractions):.0%} of the i-mask outside, "
            f"up to {max(fractions):.0%}); the contour centres are a median {offset:.1f} px"
            f"{in_mm} apart",
            patient_id=record.patient_id,
        )
    ]


def implausible_areas(geometry: Sequence[SliceGeometry]) -> list[Problem]:
    """``implausible-area`` for a contour far outside the range of the patient's others.

    A contour of kind i (or o) is implausible when its area is more than
    :data:`AREA_FACTOR` times the largest, or less than the smallest divided
    by it, of the patient's other contours of the same kind.  The patient's
    other slices span base to apex and diastole to systole, so their range is
    the natural yardstick; a factor of 3 beyond it catches contours in the
    wrong units, from another image size, or collapsed to a sliver.  Needs at
    least :data:`AREA_MIN_OTHERS` (5) other contours of the kind.
    """
    found = []
    for kind in ("i", "o"):
        have = [g for g in geometry if kind in g.areas]
        if len(have) - 1 < AREA_MIN_OTHERS:
            continue
        areas = np.array([g.areas[kind] for g in have], dtype=np.int64)
        for n, slice_ in enumerate(have):
            others = np.delete(areas, n)
            area, low, high = int(areas[n]), int(others.min()), int(others.max())
            if area > AREA_FACTOR * high:
                why = f"over {AREA_FACTOR:g}x the largest ({high} px)"
            elif area * AREA_FACTOR < low:
                why = f"under 1/{AREA_FACTOR:g} of the smallest ({low} px)"
            else:
                continue
            record = slice_.record
            found.append(
                problem(
                    "implausible-area",
                    slice_.path(kind),
                    f"{kind}-contour area {area} px is {why} of the patient's "
                    f"{len(others)} other {kind}-contours",
                    patient_id=record.patient_id,
                    slice=record.slice,
                )
            )
    return found


def shape_mismatch(records: Sequence[SampleRecord]) -> list[Problem]:
    """``shape-mismatch`` for slices whose image shape differs from the patient's usual one."""
    shapes = Counter(record.shape for record in records)
    if len(shapes) <= 1:
        return []
    usual = shapes.most_common(1)[0][0]
    return [
        problem(
            "shape-mismatch",
            record.dicom,
            f"image is {record.shape[0]}x{record.shape[1]}, the patient's other slices are "
            f"{usual[0]}x{usual[1]}",
            patient_id=record.patient_id,
            slice=record.slice,
        )
        for record in records
        if record.shape != usual
    ]


def check_patient(
    records: Sequence[SampleRecord], polygons: dict[int, dict[Kind, np.ndarray]]
) -> list[Problem]:
    """All geometry checks of one patient; what :func:`dicontour.scan` runs.

    Parameters
    ----------
    records : sequence of SampleRecord
        The patient's labelled slices.
    polygons : dict of int to dict of {"i", "o"} to ndarray
        For each slice number, its valid polygons as (x, y) points.

    Returns
    -------
    list of Problem
        ``i-outside-o``, ``contours-misaligned``, ``implausible-area`` and
        ``shape-mismatch`` findings.
    """
    geometry = [measure_slice(record, polygons.get(record.slice, {})) for record in records]
    return [
        *i_outside_o(geometry),
        *misaligned_contours(geometry),
        *implausible_areas(geometry),
        *shape_mismatch(records),
    ]
