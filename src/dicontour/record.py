"""``SampleRecord``: one labelled slice as the scan found it (no pixels).

Defined apart from :mod:`dicontour.index` so that the index's column store
(:mod:`dicontour._table`) can rebuild records without importing the index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .dicom import DicomHeader
from .targets import Target, check_target


@dataclass(frozen=True)
class SampleRecord:
    """One labelled slice found by the scan.

    Attributes
    ----------
    patient_id, original_id : str
        The two ids that link.csv ties together.
    slice : int
        The slice number n of ``dicoms/<patient_id>/<n>.dcm``.
    dicom : str
        Path of the DICOM file, relative to the root.
    i_contour, o_contour : str or None
        Paths of the valid contour files, relative to the root.
    header : DicomHeader
        The slice's header (shape, spacing, where its pixels are).
    """

    patient_id: str
    original_id: str
    slice: int
    dicom: str
    i_contour: str | None
    o_contour: str | None
    header: DicomHeader = field(repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the image."""
        return self.header.shape

    @property
    def case_id(self) -> str:
        """``<patient_id>_<slice:04d>``, e.g. ``SCD0000101_0048``: the id in splits files."""
        return f"{self.patient_id}_{self.slice:04d}"

    def has(self, target: Target) -> bool:
        """Whether this slice has the contour(s) that ``target`` asks for.

        Raises ``ValueError`` for a target other than ``"i"``, ``"o"``, ``"both"``.
        """
        target = check_target(target)
        if target == "i":
            return self.i_contour is not None
        if target == "o":
            return self.o_contour is not None
        return self.i_contour is not None and self.o_contour is not None

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (paths relative to the root)."""
        return {
            "patient_id": self.patient_id,
            "original_id": self.original_id,
            "slice": self.slice,
            "dicom": self.dicom,
            "i_contour": self.i_contour,
            "o_contour": self.o_contour,
            "rows": self.header.rows,
            "columns": self.header.columns,
            "pixel_spacing": list(self.header.pixel_spacing) if self.header.pixel_spacing else None,
        }
