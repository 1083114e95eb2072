"""``RecordTable``: an index's sample records held column-wise in numpy arrays.

A million :class:`~dicontour.SampleRecord` objects, each with its
:class:`~dicontour.dicom.DicomHeader` and :class:`~dicontour.dicom.RawPixels`,
cost about 1 KB apiece in Python objects.  Held as columns they cost about
200 bytes: numbers in typed arrays, patient ids and folders once per distinct
value, file names as UTF-8 bytes back to back.  A record is rebuilt, equal in
every field, when it is asked for; the table is a read-only sequence of them.

A record whose values do not fit the columns exactly (a hand-built record
with an int outside int64, a spacing given as ints, ...) is kept as it is,
so nothing is ever changed by the packing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np

from .dicom import DicomHeader, RawPixels
from .record import SampleRecord

# Records packed per chunk while streaming, so the Python objects of at most
# one chunk are alive beside the columns.
_CHUNK = 4096
_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)
_UINT16 = (0, 2**16 - 1)  # DICOM Rows and Columns are US
# Bits of the flags column.
_SPACING, _INSTANCE, _UID, _LUT, _RAW, _POSITION = 1, 2, 4, 8, 16, 32


def _is_int(value: object, bounds: tuple[int, int]) -> bool:
    return type(value) is int and bounds[0] <= value <= bounds[1]


def _is_str(value: object) -> bool:
    return type(value) is str


def _fits(record: object) -> bool:
    """Whether ``record`` is rebuilt exactly from the columns (exact types, in range)."""
    if type(record) is not SampleRecord:
        return False
    header = record.header
    if type(header) is not DicomHeader:
        return False
    spacing, raw = header.pixel_spacing, header.raw
    return (
        _is_str(record.patient_id)
        and _is_str(record.original_id)
        and _is_int(record.slice, _INT32)
        and _is_str(record.dicom)
        and all(p is None or _is_str(p) for p in (record.i_contour, record.o_contour))
        and _is_int(header.rows, _UINT16)
        and _is_int(header.columns, _UINT16)
        and (
            spacing is None
            or (
                type(spacing) is tuple
                and len(spacing) == 2
                and all(type(v) is float for v in spacing)
            )
        )
        and (header.instance_number is None or _is_int(header.instance_number, _INT32))
        and (header.sop_instance_uid is None or _is_str(header.sop_instance_uid))
        and type(header.slope) is float
        and type(header.intercept) is float
        and _is_str(header.transfer_syntax)
        and type(header.modality_lut) is bool
        and (
            header.image_position is None
            or (
                type(header.image_position) is tuple
                and len(header.image_position) == 3
                and all(type(v) is float for v in header.image_position)
            )
        )
        and _hashable(_series(header))
        and (
            raw is None
            or (
                type(raw) is RawPixels
                and _is_int(raw.offset, _INT64)
                and _is_str(raw.dtype)
                and _is_int(raw.size, _INT64)
                and _is_int(raw.mtime_ns, _INT64)
            )
        )
    )


def _series(header: DicomHeader) -> tuple[object, ...]:
    """What a header shares with its series: kept once per distinct value, exactly."""
    return (
        header.image_orientation,
        header.slice_thickness,
        header.frame_of_reference_uid,
        header.series_instance_uid,
        header.study_instance_uid,
    )


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # names from os.fsdecode may hold surrogates


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


class _Codes:
    """Distinct values and the code of each (a categorical column's dictionary)."""

    def __init__(self) -> None:
        # Heterogeneous by design (id pairs, series tuples, dtype strings): each
        # column's reader knows what its own dictionary holds.
        self.values: list[Any] = []
        self._code: dict[object, int] = {}

    def __call__(self, value: object, key: object = None) -> int:
        """The code of ``value``, looked up by ``key`` (default: the value itself)."""
        key = value if key is None else key
        code = self._code.get(key)
        if code is None:
            code = self._code[key] = len(self.values)
            self.values.append(value)
        return code


class RecordTable(Sequence):
    """A read-only sequence of :class:`~dicontour.SampleRecord`, stored as columns.

    Parameters
    ----------
    records : iterable of SampleRecord
        Consumed once, in chunks: a generator is never held in memory whole.

    Examples
    --------
    >>> table = RecordTable(dicontour.scan("final_data"))          # doctest: +SKIP
    >>> table[0] == dicontour.scan("final_data")[0]                # doctest: +SKIP
    True
    >>> table.nbytes / len(table) < 250                            # doctest: +SKIP
    True
    """

    def __init__(self, records: Iterable[object] = ()) -> None:
        self._pairs, self._folders = _Codes(), _Codes()
        self._syntaxes, self._dtypes, self._series = _Codes(), _Codes(), _Codes()
        self._odd: dict[int, object] = {}
        self._length = 0
        chunks: list[dict[str, np.ndarray]] = []
        batch: list[object] = []
        for record in records:
            batch.append(record)
            if len(batch) == _CHUNK:
                chunks.append(self._pack(batch))
                batch = []
        if batch or not chunks:
            chunks.append(self._pack(batch))
        self._columns = {
            name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]
        }
        for name in ("dicom", "i", "o", "uid"):  # chunk-local ends -> global ends
            ends = [chunk[f"{name}_ends"] for chunk in chunks]
            offsets = np.cumsum([0] + [len(chunk[f"{name}_blob"]) for chunk in chunks[:-1]])
            self._columns[f"{name}_ends"] = np.concatenate(
                [e + o for e, o in zip(ends, offsets, strict=True)]
            ).astype(np.uint32 if int(ends[-1][-1:].sum() + offsets[-1]) < 2**32 else np.int64)

    def _pack(self, batch: list[object]) -> dict[str, np.ndarray]:
        """Columns of one chunk of records (odd records get placeholder rows)."""
        start = self._length
        self._length += len(batch)
        n = len(batch)
        pair = np.zeros(n, np.int32)
        slices = np.zeros(n, np.int32)
        rows = np.zeros(n, np.uint16)
        columns = np.zeros(n, np.uint16)
        spacing = np.zeros((n, 2), np.float64)
        position = np.zeros((n, 3), np.float64)
        series = np.zeros(n, np.int32)
        instance = np.zeros(n, np.int32)
        rescale = np.zeros((n, 2), np.float64)
        syntax = np.zeros(n, np.int32)
        flags = np.zeros(n, np.uint8)
        raw = np.zeros((n, 3), np.int64)
        dtype = np.zeros(n, np.int32)
        folders = np.full((n, 3), -1, np.int32)
        names: dict[str, list[bytes]] = {"dicom": [], "i": [], "o": [], "uid": []}
        for j, record in enumerate(batch):
            if not _fits(record):
                self._odd[start + j] = record
                for values in names.values():
                    values.append(b"")
                continue
            header = record.header  # type: ignore[attr-defined]
            pair[j] = self._pairs((record.patient_id, record.original_id))  # type: ignore[attr-defined]
            slices[j] = record.slice  # type: ignore[attr-defined]
            for column, (kind, path) in enumerate(
                (("dicom", record.dicom), ("i", record.i_contour), ("o", record.o_contour))  # type: ignore[attr-defined]
            ):
                if path is None:
                    names[kind].append(b"")
                    continue
                folder, _, name = path.rpartition("/")
                folders[j, column] = self._folders(folder if "/" in path else None)
                names[kind].append(_encode(name))
            rows[j], columns[j] = header.rows, header.columns
            rescale[j] = header.slope, header.intercept
            syntax[j] = self._syntaxes(header.transfer_syntax)
            bits = _LUT if header.modality_lut else 0
            if header.pixel_spacing is not None:
                spacing[j] = header.pixel_spacing
                bits |= _SPACING
            if header.image_position is not None:
                position[j] = header.image_position
                bits |= _POSITION
            shared = _series(header)
            # Keyed by repr, so that -0.0 and 0.0 (equal, same hash) stay apart.
            series[j] = self._series(shared, key=repr(shared))
            if header.instance_number is not None:
                instance[j] = header.instance_number
                bits |= _INSTANCE
            uid = header.sop_instance_uid
            names["uid"].append(b"" if uid is None else _encode(uid))
            bits |= 0 if uid is None else _UID
            if header.raw is not None:
                raw[j] = header.raw.offset, header.raw.size, header.raw.mtime_ns
                dtype[j] = self._dtypes(header.raw.dtype)
                bits |= _RAW
            flags[j] = bits
        packed: dict[str, np.ndarray] = {
            "pair": pair,
            "slice": slices,
            "rows": rows,
            "columns": columns,
            "spacing": spacing,
            "position": position,
            "series": series,
            "instance": instance,
            "rescale": rescale,
            "syntax": syntax.astype(np.int16) if len(self._syntaxes.values) < 2**15 else syntax,
            "flags": flags,
            "raw": raw,
            "dtype": dtype.astype(np.int8) if len(self._dtypes.values) <= 127 else dtype,
            "folders": folders,
        }
        for kind, values in names.items():
            packed[f"{kind}_ends"] = np.cumsum([len(v) for v in values], dtype=np.int64)
            packed[f"{kind}_blob"] = np.frombuffer(b"".join(values), np.uint8).copy()
        return packed

    # ----------------------------------------------------------------- sequence

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, k: int) -> object: ...
    @overload
    def __getitem__(self, k: slice) -> tuple[object, ...]: ...
    def __getitem__(self, k: int | slice) -> object:
        if isinstance(k, slice):
            return tuple(self[j] for j in range(*k.indices(self._length)))
        k = int(k)
        if k < 0:
            k += self._length
        if not 0 <= k < self._length:
            raise IndexError(f"record {k} out of range: the table has {self._length} records")
        odd = self._odd.get(k)
        return odd if odd is not None else self._record(k)

    def __iter__(self) -> Iterator[object]:
        return (self[k] for k in range(self._length))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordTable | tuple | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecordTable({self._length} records, {self.nbytes:,} bytes)"

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (the dictionaries of distinct values excluded)."""
        return sum(column.nbytes for column in self._columns.values())

    def patient_ids(self) -> list[str]:
        """Each record's patient id, without rebuilding the records."""
        pids = [pair[0] for pair in self._pairs.values]
        codes = self._columns["pair"].tolist()
        if not self._odd:
            return [pids[code] for code in codes]
        odd = self._odd
        return [
            odd[k].patient_id if k in odd else pids[code]  # type: ignore[attr-defined]
            for k, code in enumerate(codes)
        ]

    def has_contours(self) -> np.ndarray:
        """bool (N, 2): whether each record has an [i, o] contour, without rebuilding them."""
        has = self._columns["folders"][:, 1:] >= 0
        for k, record in self._odd.items():
            has[k] = record.i_contour is not None, record.o_contour is not None  # type: ignore[attr-defined]
        return has

    # ----------------------------------------------------------------- rebuild

    def _text(self, kind: str, k: int) -> str:
        ends = self._columns[f"{kind}_ends"]
        start = int(ends[k - 1]) if k else 0
        return _decode(self._columns[f"{kind}_blob"][start : int(ends[k])].tobytes())

    def _path(self, kind: str, column: int, k: int) -> str | None:
        folder = int(self._columns["folders"][k, column])
        if folder < 0:
            return None
        name = self._text(kind, k)
        parent = self._folders.values[folder]
        return name if parent is None else f"{parent}/{name}"

    def _record(self, k: int) -> object:
        c = self._columns
        bits = int(c["flags"][k])
        raw = None
        if bits & _RAW:
            offset, size, mtime = (int(v) for v in c["raw"][k])
            raw = RawPixels(offset, str(self._dtypes.values[int(c["dtype"][k])]), size, mtime)
        spacing = c["spacing"][k]
        orientation, thickness, frame, series, study = self._series.values[int(c["series"][k])]
        position = c["position"][k]
        header = DicomHeader(
            rows=int(c["rows"][k]),
            columns=int(c["columns"][k]),
            pixel_spacing=(float(spacing[0]), float(spacing[1])) if bits & _SPACING else None,
            instance_number=int(c["instance"][k]) if bits & _INSTANCE else None,
            sop_instance_uid=self._text("uid", k) if bits & _UID else None,
            slope=float(c["rescale"][k, 0]),
            intercept=float(c["rescale"][k, 1]),
            transfer_syntax=str(self._syntaxes.values[int(c["syntax"][k])]),
            raw=raw,
            modality_lut=bool(bits & _LUT),
            image_position=(
                (float(position[0]), float(position[1]), float(position[2]))
                if bits & _POSITION
                else None
            ),
            image_orientation=orientation,
            slice_thickness=thickness,
            frame_of_reference_uid=frame,
            series_instance_uid=series,
            study_instance_uid=study,
        )
        patient_id, original_id = self._pairs.values[int(c["pair"][k])]
        return SampleRecord(
            patient_id=patient_id,
            original_id=original_id,
            slice=int(c["slice"][k]),
            dicom=self._path("dicom", 0, k),  # type: ignore[arg-type]
            i_contour=self._path("i", 1, k),
            o_contour=self._path("o", 2, k),
            header=header,
        )
