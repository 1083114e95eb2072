"""``IndexSource``: the samples of an :class:`~dicontour.Index`, for the loader.

It holds the root URL and the index's own column store
(:class:`dicontour._table.RecordTable`, about 60 bytes a sample), shared with
the index rather than copied: the loader adds no per-sample bytes to the
training process, and each worker receives the columns once.  A sample's
record is rebuilt from the columns when it is read.
"""

from __future__ import annotations

import numpy as np

from .._table import RecordTable
from ..batch import BatchMeta, case_id, out_of_range
from ..errors import DicomError
from ..index import Index, SampleRecord, read_image, read_mask
from ..storage import Location, location
from ..targets import Target, check_target


class IndexSource:
    """A :class:`~dicontour.loader.SampleSource` over the samples an Index found.

    Parameters
    ----------
    index : Index
        The result of :func:`dicontour.scan`.

    Notes
    -----
    :meth:`read` takes the direct pixel path of
    :func:`dicontour.dicom.read_dicom_pixels` for local uncompressed files
    whose size and mtime match the scan, and decodes with pydicom otherwise
    (other transfer syntaxes, changed files, fsspec URLs).  Contours are read
    again from disk and rasterised with :func:`dicontour.polygon_to_mask`.
    Errors name the file relative to the root, like the scan's problems.

    Examples
    --------
    >>> source = IndexSource(dicontour.scan("final_data"))     # doctest: +SKIP
    >>> image, mask = source.read(0, "i")                      # doctest: +SKIP
    >>> image.dtype, mask.shape                                # doctest: +SKIP
    (dtype('float32'), (256, 256))
    """

    def __init__(self, index: Index) -> None:
        samples = index.samples
        self._table = samples if isinstance(samples, RecordTable) else RecordTable(samples)
        self.root = index.root
        self._location: Location | None = None

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_location"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)

    @property
    def location(self) -> Location:
        if self._location is None:
            self._location = location(self.root)
        return self._location

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays: what each worker receives, apart from the root."""
        return self._table.nbytes

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"IndexSource({self.location.redacted()!r}, samples={len(self)})"

    def shapes(self) -> np.ndarray:
        """int64 array (N, 2): (H, W) of each sample's image."""
        return self._table.shapes()

    def has(self, target: Target) -> np.ndarray:
        """bool array (N,): whether each sample has the contour(s) ``target`` needs."""
        target = check_target(target)
        has = self._table.has_contours()
        if target == "i":
            return has[:, 0]
        if target == "o":
            return has[:, 1]
        return has[:, 0] & has[:, 1]

    def describe(self, k: int) -> str:
        """``dicoms/P/n.dcm (i: ..., o: ...) in ROOT``: where sample k comes from."""
        record = self.record(k)
        contours = [
            f"{kind}: {path}"
            for kind, path in (("i", record.i_contour), ("o", record.o_contour))
            if path is not None
        ]
        extra = f" ({', '.join(contours)})" if contours else ""
        return f"{record.dicom}{extra} in {self.location.redacted()}"

    def meta(self, indices: np.ndarray) -> BatchMeta:
        """Patient, slice, pixel spacing and case id of the samples at ``indices``.

        Computed from the columns held here (no file is read, no record
        rebuilt), paid by the training process for each batch it receives.

        Examples
        --------
        >>> source.meta(np.array([0, 1])).case_id                    # doctest: +SKIP
        ('SCD0000101_0048', 'SCD0000101_0068')
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = out_of_range(indices, len(self))
        if bad is not None:
            raise IndexError(f"sample {bad} out of range: the index has {len(self)} samples")
        slices = self._table.slices(indices)
        patients = tuple(self._table.patient_ids(indices))
        return BatchMeta(
            patient_id=patients,
            slice=slices,
            pixel_spacing=self._table.spacings(indices),
            case_id=tuple(map(case_id, patients, slices.tolist())),
            index=indices,
        )

    def record(self, k: int) -> SampleRecord:
        """Sample k rebuilt as a :class:`~dicontour.SampleRecord` (for the readers)."""
        return self._table[k]  # type: ignore[return-value]

    def _contours(self, record: SampleRecord, k: int, target: Target) -> list[str]:
        """The contour paths ``target`` needs of sample k; ValueError if one is missing."""
        target = check_target(target)
        if not record.has(target):
            raise ValueError(f"sample {k} ({self.describe(k)}) has no {target}-contour")
        if target == "both":
            return [record.i_contour, record.o_contour]  # type: ignore[list-item]
        return [record.i_contour if target == "i" else record.o_contour]  # type: ignore[list-item]

    def _image(self, record: SampleRecord, out: np.ndarray | None = None) -> np.ndarray:
        try:
            return read_image(self.location, record, out=out)
        except DicomError as exc:
            if exc.path == record.dicom:
                raise
            raise DicomError(record.dicom, exc.reason, code=exc.code) from exc

    def read(self, k: int, target: Target) -> tuple[np.ndarray, np.ndarray]:
        """Sample k's image and its ``target`` mask(s), read from the files.

        Returns
        -------
        image : float32 ndarray of shape (H, W)
        mask : bool ndarray of shape (H, W), or (2, H, W) [i, o] for ``"both"``

        Raises
        ------
        DicomError, ContourError
            A file that became unreadable since the scan (named relative to the root).
        ValueError
            The sample lacks the contour ``target`` needs, or ``target`` is unknown.
        """
        record: SampleRecord = self._table.for_reading(k)  # type: ignore[assignment]
        both = check_target(target) == "both"
        image = np.empty(record.shape, np.float32)
        mask = np.empty((2, *record.shape) if both else record.shape, bool)
        self._read_into(k, record, target, image, mask)
        return image, mask

    def read_into(self, k: int, target: Target, image: np.ndarray, mask: np.ndarray) -> None:
        """What :meth:`read` returns, written into ``image`` and ``mask`` (a loader's slot).

        Raises
        ------
        DicomError, ContourError
            As :meth:`read`.
        ValueError
            As :meth:`read`; or ``image`` (float32) or ``mask`` (bool, (H, W) or
            (2, H, W) for ``"both"``) do not have sample k's shape.
        """
        record: SampleRecord = self._table.for_reading(k)  # type: ignore[assignment]
        self._read_into(k, record, target, image, mask)

    def _read_into(
        self, k: int, record: SampleRecord, target: Target, image: np.ndarray, mask: np.ndarray
    ) -> None:
        paths = self._contours(record, k, target)
        shape = record.shape
        planes = [mask] if len(paths) == 1 else list(mask)
        if (
            image.shape != shape
            or image.dtype != np.float32
            or mask.shape != ((2, *shape) if len(paths) == 2 else shape)
            or mask.dtype != np.bool_
        ):
            raise ValueError(
                f"sample {k} ({self.describe(k)}) is {shape}: it does not fit an image "
                f"{image.dtype} {image.shape} and a mask {mask.dtype} {mask.shape}"
            )
        self._image(record, out=image)
        for path, plane in zip(paths, planes, strict=True):
            read_mask(self.location, path, shape, out=plane)
