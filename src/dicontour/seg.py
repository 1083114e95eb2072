"""Write DICOM Segmentation objects (SEG) of the LV contours, with highdicom.

Each labelled image contributes, as BINARY segments described by SNOMED CT codes:

=== ======================== =================================== ===========================
#   label                    property type                       drawn where
=== ======================== =================================== ===========================
1   LV blood pool            Blood (87612001) in Left ventricle  inside the i-contour
2   LV myocardium            Left ventricle myocardium (49848007) inside o, outside i
3   LV (epicardial contour)  Left ventricle (87878005)           inside the o-contour
=== ======================== =================================== ===========================

Segment 1 is the i-mask and segment 3 the o-mask exactly, so a SEG gives back
dicontour's masks even where the i-contour leaks out of the o-contour;
segment 2 is the myocardium asked for by training pipelines.  A segment is
written only for images where it is known: blood pool needs the i-contour,
LV the o-contour, myocardium both.  Images are grouped so that every segment
of a SEG is known on every image it references (an absent frame then means
empty, never unknown): one SEG per source series, frame of reference (highdicom
requires one) and set of contours drawn, and images at one plane position
(cine phases; highdicom refuses two frames at one position) go to separate SEGs.

The source images' UIDs are referenced exactly as they are, even when a
de-identification left them invalid; patient and study attributes are copied
only when valid (:func:`dicontour.rtstruct.valid_value`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from .rtstruct import PATIENT_STUDY_KEYWORDS, valid_value

#: Segment number -> (label, which contours it needs).
SEGMENTS: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("LV blood pool", ("i",)),
    2: ("LV myocardium", ("i", "o")),
    3: ("LV", ("o",)),
}


def _highdicom() -> Any:
    try:
        import highdicom
    except ImportError as exc:  # an optional dependency: say which extra brings it
        raise ImportError(
            "writing DICOM-SEG needs highdicom: pip install 'dicontour[export]'"
        ) from exc
    return highdicom


def segments_for(kinds: Sequence[str]) -> list[int]:
    """The segment numbers known on an image with the contours ``kinds``.

    Examples
    --------
    >>> segments_for(["i"]), segments_for(["i", "o"]), segments_for(["o"])
    ([1], [1, 2, 3], [3])
    """
    return [n for n, (_, needs) in SEGMENTS.items() if set(needs) <= set(kinds)]


def segment_masks(masks: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Segment number -> bool (H, W) mask, from ``{"i": i_mask, "o": o_mask}`` (either optional)."""
    found = {}
    for number in segments_for(list(masks)):
        if number == 1:
            found[number] = masks["i"]
        elif number == 2:
            found[number] = masks["o"] & ~masks["i"]
        else:
            found[number] = masks["o"]
    return found


def _description(number: int):  # type: ignore[no-untyped-def]
    hd = _highdicom()
    label = SEGMENTS[number][0]
    if number == 1:
        category, kind, regions = (
            codes.SCT.BodySubstance,
            codes.SCT.Blood,
            [codes.SCT.LeftVentricle],
        )
    elif number == 2:
        category, kind, regions = (
            codes.SCT.AnatomicalStructure,
            codes.SCT.LeftVentricleMyocardium,
            None,
        )
    else:
        category, kind, regions = codes.SCT.AnatomicalStructure, codes.SCT.LeftVentricle, None
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=category,
        segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        anatomic_regions=regions,
    )


def _clean_source(source: Dataset) -> Dataset:
    """A copy of ``source`` whose patient and study attributes hold only valid values."""
    clean = deepcopy(source)
    for keyword in PATIENT_STUDY_KEYWORDS:
        if valid_value(clean, keyword) is None:
            setattr(clean, keyword, None)  # type 2: present, empty
    return clean


def segmentation(
    sources: Sequence[Dataset],
    masks: Sequence[Mapping[str, np.ndarray]],
    *,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_number: int = 900,
) -> Dataset:
    """A DICOM SEG of the masks drawn on ``sources``.

    Parameters
    ----------
    sources : sequence of pydicom Dataset
        Single-frame images of one series and one frame of reference, each
        with the same contours drawn (see the module docstring).
    masks : sequence of mapping
        Per source, ``{"i": bool (H, W), "o": bool (H, W)}``.
    series_instance_uid, sop_instance_uid : str, optional
        New UIDs by default.

    Returns
    -------
    highdicom.seg.Segmentation
        A pydicom Dataset; ``.save_as(path)`` writes it.

    Raises
    ------
    ValueError
        No sources, different contour sets, or highdicom's own refusal
        (several series or frames of reference, shapes that differ).
    """
    hd = _highdicom()
    if not sources or len(sources) != len(masks):
        raise ValueError("segmentation needs one mask mapping per source, at least one")
    kinds = {tuple(sorted(m)) for m in masks}
    if len(kinds) != 1:
        raise ValueError(f"every source must have the same contours drawn, got {sorted(kinds)}")
    numbers = segments_for(next(iter(kinds)))
    if not numbers:
        raise ValueError("no contour to write")
    stacks = [segment_masks(m) for m in masks]
    pixels = np.stack([np.stack([s[n] for n in numbers], axis=-1) for s in stacks]).astype(np.uint8)
    first = sources[0]
    with warnings.catch_warnings():
        # A one-component PatientName ("SCD0000101") is valid DICOM, copied unchanged;
        # highdicom warns on every SEG, which would drown a user's real warnings.
        warnings.filterwarnings("ignore", message="The string .* is unlikely to represent")
        return hd.seg.Segmentation(
            source_images=[_clean_source(s) for s in sources],
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[_description(n) for n in numbers],
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=series_number,
            sop_instance_uid=sop_instance_uid or hd.UID(),
            instance_number=1,
            manufacturer="dicontour",
            manufacturer_model_name="dicontour",
            software_versions="dicontour",
            device_serial_number="0",
            content_description="LV contours",
            content_creator_name=None,
            series_description=f"SEG of series {first.get('SeriesNumber', '')}".strip(),
        )
