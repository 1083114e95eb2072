"""The result of a scan: which slices have contours, what went wrong, how to load them.

Nouns
-----
``SampleRecord``
    One labelled slice as the scan found it: who, which slice, which files
    (paths relative to the root), and the DICOM header.  No pixels.
``Sample``
    One loaded slice: the float32 image and its boolean masks.
``Index``
    The records, the problems and a summary, plus :meth:`Index.load`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .contour import check_bounds, read_contour
from .dicom import DicomHeader, read_dicom, read_dicom_header, read_dicom_pixels
from .errors import ContourError, DicomError
from .problems import Problem
from .raster import MAX_CROSSINGS, count_crossings, polygon_to_mask
from .storage import Location, location

Target = Literal["i", "o", "both"]


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

    def has(self, target: Target) -> bool:
        """Whether this slice has the contour(s) that ``target`` asks for."""
        if target == "i":
            return self.i_contour is not None
        if target == "o":
            return self.o_contour is not None
        if target == "both":
            return self.i_contour is not None and self.o_contour is not None
        raise ValueError(f"target must be 'i', 'o' or 'both'; got {target!r}")

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


@dataclass(frozen=True)
class Sample:
    """One loaded slice.

    Attributes
    ----------
    image : float32 ndarray of shape (H, W)
        Pixel values with the DICOM rescale applied.
    i_mask, o_mask : bool ndarray of shape (H, W) or None
        Inside the i- and o-contour (None where the slice has no such contour).
    patient_id : str
    slice : int
    """

    image: np.ndarray
    i_mask: np.ndarray | None
    o_mask: np.ndarray | None
    patient_id: str
    slice: int

    def mask(self, target: Literal["i", "o"]) -> np.ndarray:
        """The i- or o-mask, raising ``ValueError`` where it is absent."""
        found = self.i_mask if target == "i" else self.o_mask
        if found is None:
            raise ValueError(
                f"patient {self.patient_id} slice {self.slice} has no {target}-contour"
            )
        return found


@contextmanager
def _opened(root: Location, relative: str, error: type[DicomError | ContourError]) -> Iterator[Any]:
    """Open a file of a remote root, turning storage errors into ``error`` naming it."""
    try:
        handle = root.open(relative)
    except OSError as exc:
        raise error(relative, f"cannot open ({type(exc).__name__}: {exc})") from exc
    with handle:
        yield handle


def read_header(root: Location, relative: str) -> DicomHeader:
    """The header of the DICOM file ``relative`` under ``root`` (a folder or a store)."""
    if root.is_local:
        return read_dicom_header(root.path(relative), name=relative)
    with _opened(root, relative, DicomError) as handle:
        return read_dicom_header(handle, name=relative)


def read_points(root: Location, relative: str) -> np.ndarray:
    """The (N, 2) (x, y) points of the contour file ``relative`` under ``root``."""
    if root.is_local:
        return read_contour(root.path(relative), name=relative)
    with _opened(root, relative, ContourError) as handle:
        return read_contour(handle, name=relative)


def read_polygon(root: Location, relative: str, shape: tuple[int, int]) -> np.ndarray:
    """The points of contour ``relative``, checked against its image of ``shape``.

    Every rule the scan applies to a contour is applied here, and the scan and
    the loaders both read contours through this function, so a file rewritten
    after a scan is refused when loaded, never silently clipped.

    Raises
    ------
    ContourError
        What :func:`dicontour.read_contour` refuses; ``out-of-bounds`` (see
        :func:`dicontour.contour.check_bounds`); ``too-many-crossings`` for a
        polygon over the rasteriser's :data:`dicontour.raster.MAX_CROSSINGS`.
    """
    points = read_points(root, relative)
    check_bounds(points, shape, name=relative)
    crossings = count_crossings(points, shape)
    if crossings > MAX_CROSSINGS:
        raise ContourError(
            relative,
            f"its edges cross {crossings} (edge, row) pairs of the {shape[0]}x{shape[1]} "
            f"image, more than MAX_CROSSINGS={MAX_CROSSINGS}: too costly to rasterise",
            code="too-many-crossings",
        )
    return points


def read_image(root: Location, record: SampleRecord) -> np.ndarray:
    """The float32 image of ``record``; the direct-offset fast path on local files."""
    if root.is_local:
        return read_dicom_pixels(root.path(record.dicom), record.header)
    with _opened(root, record.dicom, DicomError) as handle:
        image = read_dicom(handle, name=record.dicom).image
    if image.shape != record.shape:
        raise DicomError(record.dicom, f"image shape changed since the scan: {image.shape}")
    return image


def read_mask(root: Location, relative: str, shape: tuple[int, int]) -> np.ndarray:
    """Read the contour file ``relative``, check it (:func:`read_polygon`), rasterise it.

    Returns a (H, W) bool mask.
    """
    return polygon_to_mask(read_polygon(root, relative, shape), shape)


def load_sample(root: Location, record: SampleRecord) -> Sample:
    """Read one slice's image and rasterise its contours.

    Raises
    ------
    DicomError, ContourError
        A file that became unreadable since the scan, named with its reason.
    """
    image = read_image(root, record)
    i_mask = read_mask(root, record.i_contour, record.shape) if record.i_contour else None
    o_mask = read_mask(root, record.o_contour, record.shape) if record.o_contour else None
    return Sample(image, i_mask, o_mask, record.patient_id, record.slice)


class Index:
    """The labelled slices of a dataset, with every problem the scan found.

    Made by :func:`dicontour.scan`.  Indexing and iteration give
    :class:`SampleRecord` objects; :meth:`load` reads a :class:`Sample`.

    Examples
    --------
    >>> index = dicontour.scan("final_data")                # doctest: +SKIP
    >>> len(index), index.problems[:1]                      # doctest: +SKIP
    >>> for image, mask in index.pairs(target="i"):         # doctest: +SKIP
    ...     ...
    """

    def __init__(
        self,
        root: str | Location,
        samples: Sequence[SampleRecord],
        problems: Sequence[Problem],
        summary: dict[str, Any],
    ) -> None:
        self.location = location(root)
        self.samples: tuple[SampleRecord, ...] = tuple(samples)
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.summary = summary

    @property
    def root(self) -> str:
        """The dataset root as a path or URL."""
        return self.location.url

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, k: int) -> SampleRecord:
        return self.samples[k]

    def __iter__(self) -> Iterator[SampleRecord]:
        return iter(self.samples)

    def __repr__(self) -> str:
        errors = sum(p.severity == "error" for p in self.problems)
        return (
            f"Index({self.location.redacted()!r}, samples={len(self)}, "
            f"problems={len(self.problems)}, errors={errors})"
        )

    def load(self, k: int) -> Sample:
        """Read sample ``k``: its image and masks, from the files on disk."""
        if not -len(self.samples) <= k < len(self.samples):
            raise IndexError(f"sample {k} out of range: the index has {len(self.samples)} samples")
        return load_sample(self.location, self.samples[k])

    def select(self, target: Target) -> list[int]:
        """Positions of the samples that have the contour(s) ``target`` asks for."""
        return [k for k, record in enumerate(self.samples) if record.has(target)]

    def pairs(self, target: Literal["i", "o"] = "i") -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(image, mask)`` for every sample that has the ``target`` contour.

        The simple, single-process way to walk a dataset; for training, use
        :class:`dicontour.BatchLoader`.
        """
        for k in self.select(target):
            sample = self.load(k)
            yield sample.image, sample.mask(target)

    def errors(self) -> list[Problem]:
        """The problems of severity ``error``."""
        return [p for p in self.problems if p.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        """``{"samples": [...], "problems": [...], "summary": {...}}``, JSON-ready."""
        return {
            "root": self.location.redacted(),
            "samples": [record.to_dict() for record in self.samples],
            "problems": [p.to_dict() for p in self.problems],
            "summary": self.summary,
        }
