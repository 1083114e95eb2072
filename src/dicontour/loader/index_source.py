"""``IndexSource``: the samples of an :class:`~dicontour.Index` as compact arrays.

Workers receive this object once.  It holds the root URL and numpy arrays
only: the relative paths as one UTF-8 blob with offsets, and the header
fields a fast read needs (shape, raw pixel offset and dtype, file size and
mtime, rescale) and the pixel spacing (for :meth:`IndexSource.meta`) as
numeric columns.  A million samples cost about 200 bytes each, whatever
Python would spend on a million ``SampleRecord`` objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from ..batch import BatchMeta, case_id
from ..dicom import DicomHeader, RawPixels
from ..errors import DicomError
from ..index import Index, SampleRecord, read_mask, read_pixels
from ..storage import Location, location
from ..targets import Target, check_target


class PackedStrings:
    """Many strings in two arrays: UTF-8 bytes back to back, and where each ends.

    Examples
    --------
    >>> packed = PackedStrings(["a", "", "héllo"])
    >>> len(packed), packed[2], packed[1]
    (3, 'héllo', '')
    """

    def __init__(self, strings: Iterable[str]) -> None:
        encoded = [s.encode("utf-8") for s in strings]
        self.ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, k: int) -> str:
        start = int(self.ends[k - 1]) if k else 0
        return self.blob[start : int(self.ends[k])].tobytes().decode("utf-8")

    def lengths(self) -> np.ndarray:
        """int64 array: the byte length of each string."""
        return np.diff(self.ends, prepend=0)

    @property
    def nbytes(self) -> int:
        return self.ends.nbytes + self.blob.nbytes


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
        # Rebuilt once here: the index holds its records as columns (see Index).
        records: Sequence[SampleRecord] = list(index.samples)
        self.root = index.root
        self._dicom = PackedStrings(r.dicom for r in records)
        self._i = PackedStrings(r.i_contour or "" for r in records)
        self._o = PackedStrings(r.o_contour or "" for r in records)
        self._slice = np.array([r.slice for r in records], dtype=np.int64)
        self._rows = np.array([r.header.rows for r in records], dtype=np.int64)
        self._columns = np.array([r.header.columns for r in records], dtype=np.int64)
        self._slope = np.array([r.header.slope for r in records], dtype=np.float64)
        self._intercept = np.array([r.header.intercept for r in records], dtype=np.float64)
        # (row, column) mm; NaN where the DICOM has no PixelSpacing.
        self._spacing = np.array(
            [r.header.pixel_spacing or (np.nan, np.nan) for r in records], dtype=np.float64
        ).reshape(len(records), 2)
        raws = [r.header.raw for r in records]
        dtypes = sorted({raw.dtype for raw in raws if raw is not None})
        self._dtypes = tuple(dtypes)
        # -1 marks a file without a recorded raw layout: always decoded by pydicom.
        self._offset = np.array([raw.offset if raw else -1 for raw in raws], dtype=np.int64)
        self._dtype = np.array(
            [dtypes.index(raw.dtype) if raw else -1 for raw in raws], dtype=np.int8
        )
        self._size = np.array([raw.size if raw else -1 for raw in raws], dtype=np.int64)
        self._mtime = np.array([raw.mtime_ns if raw else -1 for raw in raws], dtype=np.int64)
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
        arrays = [v for v in self.__dict__.values() if isinstance(v, np.ndarray)]
        strings = [v for v in self.__dict__.values() if isinstance(v, PackedStrings)]
        return sum(a.nbytes for a in arrays) + sum(s.nbytes for s in strings)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"IndexSource({self.location.redacted()!r}, samples={len(self)})"

    def shapes(self) -> np.ndarray:
        """int64 array (N, 2): (H, W) of each sample's image."""
        return np.stack([self._rows, self._columns], axis=1)

    def has(self, target: Target) -> np.ndarray:
        """bool array (N,): whether each sample has the contour(s) ``target`` needs."""
        target = check_target(target)
        if target == "i":
            return self._i.lengths() > 0
        if target == "o":
            return self._o.lengths() > 0
        return (self._i.lengths() > 0) & (self._o.lengths() > 0)

    def describe(self, k: int) -> str:
        """``dicoms/P/n.dcm (i: ..., o: ...) in ROOT``: where sample k comes from."""
        contours = [f"{kind}: {path}" for kind, path in (("i", self._i[k]), ("o", self._o[k]))]
        contours = [text for text in contours if not text.endswith(": ")]
        extra = f" ({', '.join(contours)})" if contours else ""
        return f"{self._dicom[k]}{extra} in {self.location.redacted()}"

    def _patient(self, k: int) -> str:
        # The layout is dicoms/<patient_id>/<n>.dcm: the id is the folder's name.
        dicom = self._dicom[k]
        return dicom.split("/")[1] if dicom.count("/") >= 2 else ""

    def meta(self, indices: np.ndarray) -> BatchMeta:
        """Patient, slice, pixel spacing and case id of the samples at ``indices``.

        Computed from the columns held here (no file is read): about 1 us per
        sample, paid by the training process for each batch it receives.

        Examples
        --------
        >>> source.meta(np.array([0, 1])).case_id                    # doctest: +SKIP
        ('SCD0000101_0048', 'SCD0000101_0068')
        """
        indices = np.asarray(indices, dtype=np.int64)
        slices = self._slice[indices]
        patients = tuple(self._patient(k) for k in indices.tolist())
        return BatchMeta(
            patient_id=patients,
            slice=slices,
            pixel_spacing=self._spacing[indices],
            case_id=tuple(map(case_id, patients, slices.tolist())),
            index=indices,
        )

    def _header(self, k: int) -> DicomHeader:
        """What a pixel read needs of sample k's DICOM header (no pixel spacing)."""
        raw = None
        if self._offset[k] >= 0:
            raw = RawPixels(
                offset=int(self._offset[k]),
                dtype=self._dtypes[self._dtype[k]],
                size=int(self._size[k]),
                mtime_ns=int(self._mtime[k]),
            )
        return DicomHeader(
            rows=int(self._rows[k]),
            columns=int(self._columns[k]),
            pixel_spacing=None,
            instance_number=None,
            sop_instance_uid=None,
            slope=float(self._slope[k]),
            intercept=float(self._intercept[k]),
            transfer_syntax="",
            raw=raw,
        )

    def record(self, k: int) -> SampleRecord:
        """Sample k rebuilt as a :class:`~dicontour.SampleRecord` (for the readers)."""
        spacing = self._spacing[k]
        return SampleRecord(
            patient_id=self._patient(k),
            original_id="",
            slice=int(self._slice[k]),
            dicom=self._dicom[k],
            i_contour=self._i[k] or None,
            o_contour=self._o[k] or None,
            header=replace(
                self._header(k),
                pixel_spacing=(
                    None if np.isnan(spacing).any() else (float(spacing[0]), float(spacing[1]))
                ),
            ),
        )

    def _contours(self, k: int, target: Target) -> list[str]:
        """The contour paths ``target`` needs of sample k; ValueError if one is missing."""
        if target == "both":
            paths = [self._i[k], self._o[k]]
        else:
            paths = [self._i[k] if target == "i" else self._o[k]]
        if not all(paths):
            raise ValueError(f"sample {k} ({self.describe(k)}) has no {target}-contour")
        return paths

    def _image(self, k: int, out: np.ndarray | None = None) -> np.ndarray:
        dicom = self._dicom[k]
        try:
            return read_pixels(self.location, dicom, self._header(k), out=out)
        except DicomError as exc:
            if exc.path == dicom:
                raise
            raise DicomError(dicom, exc.reason, code=exc.code) from exc

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
        paths = self._contours(k, check_target(target))
        image = self._image(k)
        shape = image.shape
        masks = [read_mask(self.location, path, shape) for path in paths]
        return image, masks[0] if len(masks) == 1 else np.stack(masks)

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
        paths = self._contours(k, check_target(target))
        shape = (int(self._rows[k]), int(self._columns[k]))
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
        self._image(k, out=image)
        for path, plane in zip(paths, planes, strict=True):
            read_mask(self.location, path, shape, out=plane)
