"""``RecordTable``: an index's sample records held column-wise in numpy arrays.

A million :class:`~dicontour.SampleRecord` objects, each with its
:class:`~dicontour.dicom.DicomHeader` and :class:`~dicontour.dicom.RawPixels`,
cost about 1 KB apiece in Python objects.  Held as columns they cost about
60 bytes (measured on the real data and the phantom):

* what repeats per patient is kept once per distinct value: the ids and the
  paths as templates (``dicoms/P/{n}.dcm``: the slice number, zero-padded as
  found, between a head and a tail); per series, the header fields a series
  shares (shape, spacing, orientation, transfer syntax, UIDs of series and study);
* numbers in the narrowest exact dtype, or as small codes into their distinct
  rows (told apart by their bits) when that is cheaper (rescale, positions of
  hard-linked copies);
* per-slice UIDs as a shared root (up to the last dot) and a tail of decimal
  digits packed two a byte.

A record is rebuilt, equal in every field, when it is asked for; the table is
a read-only sequence of them.  A record whose values do not fit the columns
exactly (a hand-built record with an int outside int64, a position given as
ints, ...) is kept as it is, so nothing is ever changed by the packing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np

from .dicom import DicomHeader, RawPixels
from .record import SampleRecord

# Records packed per chunk while streaming, so the Python objects of at most
# one chunk are alive beside the columns.  Small: the objects of a chunk leave
# Python's allocator arenas fragmented, and what a chunk spans stays resident.
_CHUNK = 256
_INT64 = (-(2**63), 2**63 - 1)
_UINT16 = (0, 2**16 - 1)  # DICOM Rows and Columns are US
# Bits of the flags column.
_INSTANCE, _UID, _FRAME, _RAW, _POSITION, _I, _O = 1, 2, 4, 8, 16, 32, 64
_INTS = tuple(map(np.dtype, ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64")))


def _is_int(value: object, bounds: tuple[int, int] = _INT64) -> bool:
    return type(value) is int and bounds[0] <= value <= bounds[1]


def _is_str(value: object) -> bool:
    return type(value) is str


def _is_floats(value: object, n: int) -> bool:
    return type(value) is tuple and len(value) == n and all(type(v) is float for v in value)


def _fits(record: object) -> bool:
    """Whether ``record`` is rebuilt exactly from the columns (exact types, in range)."""
    if type(record) is not SampleRecord:
        return False
    header = record.header
    if type(header) is not DicomHeader:
        return False
    raw = header.raw
    return (
        _is_str(record.patient_id)
        and _is_str(record.original_id)
        and _is_int(record.slice)
        and _is_str(record.dicom)
        and all(p is None or _is_str(p) for p in (record.i_contour, record.o_contour))
        and _is_int(header.rows, _UINT16)
        and _is_int(header.columns, _UINT16)
        and (header.instance_number is None or _is_int(header.instance_number))
        and all(
            u is None or _is_str(u)
            for u in (header.sop_instance_uid, header.frame_of_reference_uid)
        )
        and type(header.slope) is float
        and type(header.intercept) is float
        and (header.image_position is None or _is_floats(header.image_position, 3))
        and _hashable(_series(header))
        and (
            raw is None
            or (
                type(raw) is RawPixels
                and _is_int(raw.offset)
                and _is_str(raw.dtype)
                and _is_int(raw.size)
                and _is_int(raw.mtime_ns)
            )
        )
    )


def _series(header: DicomHeader) -> tuple[object, ...]:
    """What a header shares with its series: kept once per distinct value, exactly."""
    return (
        header.rows,
        header.columns,
        header.pixel_spacing,
        header.transfer_syntax,
        header.modality_lut,
        None if header.raw is None else header.raw.dtype,
        header.image_orientation,
        header.slice_thickness,
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


_TEXT = b"\xfe"  # leads a UID tail that is not all digits (a digit pair never starts with f)


def _pack_digits(tail: str) -> bytes:
    """A UID's tail, two decimal digits a byte (as hex digits, ``f``-padded); else marked text.

    Example: ``"12345"`` -> bytes 12 34 5f; ``"1a"`` -> bytes fe 31 61.
    """
    if tail.isascii() and tail.isdigit():
        return bytes.fromhex(tail + "f" * (len(tail) % 2))
    return _TEXT + _encode(tail)


def _unpack_digits(data: bytes) -> str:
    if data[:1] == _TEXT:
        return _decode(data[1:])
    return data.hex().rstrip("f")


def _template(path: str, number: int) -> tuple[str, int, str]:
    """``path`` as (head, width, tail) around the last digit run that spells ``number``.

    So that the paths of one patient's slices share one template: the slice
    number goes between head and tail, as is (width 0: ``7.dcm``, ``48.dcm``)
    or zero-padded to ``width`` (``IM-0001-0048``); width -1 when no run spells
    it (the path is the head).
    """
    text = str(number)
    for match in reversed(list(re.finditer(r"[0-9]+", path))):
        start, end = match.span()
        run = match.group()
        if run == text:
            return path[:start], 0, path[end:]
        if run.lstrip("0") == text.lstrip("0") and run[:1] == "0" and len(run) > len(text):
            found = path[:start], end - start, path[end:]
            if _fill(found, number) == path:  # never a template that rebuilds another path
                return found
    return path, -1, ""


def _fill(template: tuple[str, int, str] | None, number: int) -> str | None:
    if template is None:
        return None
    head, width, tail = template
    if width < 0:
        return head
    return f"{head}{number if width == 0 else format(number, f'0{width}d')}{tail}"


def _narrow(data: np.ndarray) -> np.ndarray:
    """``data`` in the narrowest dtype that holds every value exactly."""
    if data.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            single = data.astype(np.float32)
        # Compared as bits: NaN payloads and -0.0 must survive too.
        if np.array_equal(single.astype(np.float64).view(np.uint64), data.view(np.uint64)):
            return single
        return data
    low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
    for dtype in _INTS:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return data.astype(dtype)
    return data


class _Column:
    """A numeric column (int64 or float64, rows of one or more values), stored compactly.

    Either the values narrowed (:func:`_narrow`), or, when cheaper, codes into
    the distinct rows (told apart by their bits): a value that repeats per
    patient or series (rescale, an mtime shared by hard links) costs a byte
    or two a row.  Both are exact.
    """

    def __init__(self, data: np.ndarray) -> None:
        self.codes = _narrow(data)
        self.values: np.ndarray | None = None
        if len(data) > 1:
            bits = data.view(np.uint64) if data.dtype.kind == "f" else data
            _, first, inverse = np.unique(bits, axis=0, return_index=True, return_inverse=True)
            values = _narrow(data[first])
            codes = _narrow(inverse.reshape(-1))
            if values.nbytes + codes.nbytes < self.codes.nbytes:
                self.codes, self.values = codes, values

    def __getitem__(self, k: int) -> Any:
        return self.codes[k] if self.values is None else self.values[self.codes[k]]

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + (0 if self.values is None else self.values.nbytes)


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

    def freeze(self) -> None:
        """Drop the lookup, keep fresh copies of the values (nothing more is added).

        The values were made while a scan's temporaries were alive and lie
        scattered among them in the allocator's arenas, each keeping its arena
        resident; copies made now, the temporaries gone, lie together.
        """
        self._code = {}
        self.values = [_fresh(value) for value in self.values]


def _fresh(value: Any) -> Any:
    """A new object equal to ``value`` (strings and tuples copied; anything else as is)."""
    if type(value) is str:
        return _decode(_encode(value)) if value else value
    if type(value) is tuple:
        return tuple(_fresh(v) for v in value)
    return value


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
        # Dictionaries of what repeats per patient or series: a layout is a
        # patient's ids and path templates, a series its shared header fields,
        # a prefix a UID's root (up to its last dot).
        self._layouts, self._series, self._prefixes = _Codes(), _Codes(), _Codes()
        self._odd: dict[int, object] = {}
        self._length = 0
        chunks: list[dict[str, Any]] = []
        batch: list[object] = []
        for record in records:
            batch.append(record)
            if len(batch) == _CHUNK:
                chunks.append(self._pack(batch))
                batch = []
        if batch or not chunks:
            chunks.append(self._pack(batch))
        self._columns: dict[str, _Column] = {}
        for name in list(chunks[0]):
            parts = [chunk.pop(name) for chunk in chunks]
            if name.endswith("_blob"):
                self._columns[name] = _Column(np.frombuffer(b"".join(parts), np.uint8).copy())
                continue
            column = np.concatenate(parts)
            if name.endswith("_ends"):  # lengths -> where each value ends
                column = np.cumsum(column, dtype=np.int64)
            self._columns[name] = _Column(column)
        del chunks, batch
        for codes in (self._layouts, self._series, self._prefixes):
            codes.freeze()

    def _pack(self, batch: list[object]) -> dict[str, Any]:
        """Full-width columns of one chunk of records (odd records get placeholder rows)."""
        start = self._length
        self._length += len(batch)
        n = len(batch)
        ints = np.zeros((n, 8), np.int64)  # layout, series, slice, instance, flags, raw x3
        floats = np.zeros((n, 5), np.float64)  # slope, intercept, position
        prefixes = np.zeros((n, 2), np.int64)
        uids: dict[str, list[bytes]] = {"uid": [], "frame": []}
        for j, record in enumerate(batch):
            if not _fits(record):
                self._odd[start + j] = record
                for values in uids.values():
                    values.append(b"")
                continue
            header: DicomHeader = record.header  # type: ignore[attr-defined]
            number: int = record.slice  # type: ignore[attr-defined]
            i, o = record.i_contour, record.o_contour  # type: ignore[attr-defined]
            layout = (
                record.patient_id,  # type: ignore[attr-defined]
                record.original_id,  # type: ignore[attr-defined]
                _template(record.dicom, number),  # type: ignore[attr-defined]
                None if i is None else _template(i, number),
                None if o is None else _template(o, number),
            )
            shared = _series(header)
            bits = (0 if i is None else _I) | (0 if o is None else _O)
            if header.instance_number is not None:
                ints[j, 3] = header.instance_number
                bits |= _INSTANCE
            if header.raw is not None:
                ints[j, 5:] = header.raw.offset, header.raw.size, header.raw.mtime_ns
                bits |= _RAW
            floats[j, :2] = header.slope, header.intercept
            if header.image_position is not None:
                floats[j, 2:] = header.image_position
                bits |= _POSITION
            for column, (kind, uid, bit) in enumerate(
                (
                    ("uid", header.sop_instance_uid, _UID),
                    ("frame", header.frame_of_reference_uid, _FRAME),
                )
            ):
                if uid is None:
                    uids[kind].append(b"")
                    continue
                bits |= bit
                head, dot, tail = uid.rpartition(".")
                prefixes[j, column] = self._prefixes(head + dot)
                uids[kind].append(_pack_digits(tail))
            ints[j, 0] = self._layouts(layout)
            # Keyed by repr, so that -0.0 and 0.0 (equal, same hash) stay apart.
            ints[j, 1] = self._series(shared, key=repr(shared))
            ints[j, 2] = number
            ints[j, 4] = bits
        names = ("layout", "series", "slice", "instance", "flags", "offset", "size", "mtime")
        packed: dict[str, Any] = {name: ints[:, j].copy() for j, name in enumerate(names)}
        packed["rescale"] = floats[:, :2].copy()
        packed["position"] = floats[:, 2:].copy()
        packed["prefix"] = prefixes
        for kind, values in uids.items():
            packed[f"{kind}_ends"] = np.array([len(v) for v in values], np.int64)
            packed[f"{kind}_blob"] = b"".join(values)
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
        return self._at(int(k), full=True)

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

    def patient_ids(self, indices: np.ndarray | None = None) -> list[str]:
        """Each record's patient id (or those at ``indices``), without rebuilding the records."""
        if indices is None:
            indices = np.arange(self._length)
        pids = [values[0] for values in self._layouts.values]
        codes = self._take("layout", indices).tolist()
        if not self._odd:
            return [pids[code] for code in codes]
        odd = self._odd
        return [
            odd[k].patient_id if k in odd else pids[code]  # type: ignore[attr-defined]
            for k, code in zip(indices.tolist(), codes, strict=True)
        ]

    def has_contours(self) -> np.ndarray:
        """bool (N, 2): whether each record has an [i, o] contour, without rebuilding them."""
        flags = self._take("flags", np.arange(self._length))
        has = np.stack([(flags & _I) != 0, (flags & _O) != 0], axis=1).reshape(len(flags), 2)
        for k, record in self._odd.items():
            has[k] = record.i_contour is not None, record.o_contour is not None  # type: ignore[attr-defined]
        return has

    # ----------------------------------------------------------------- rebuild

    def _uid(self, kind: str, column: int, k: int) -> str:
        ends = self._columns[f"{kind}_ends"]
        start = int(ends[k - 1]) if k else 0
        data = self._columns[f"{kind}_blob"].codes[start : int(ends[k])].tobytes()
        prefix = self._prefixes.values[int(self._columns["prefix"][k][column])]
        return prefix + _unpack_digits(data)

    def for_reading(self, k: int) -> object:
        """Record ``k`` with what reading its files needs, for the loader's hot path.

        Paths, shape, pixel spacing, rescale, modality LUT flag, transfer syntax
        and the direct-read pixel layout are those of ``self[k]``; the UIDs,
        instance number, position and orientation are None (rebuilding them
        costs about half of ``self[k]``, for every sample served).
        """
        return self._at(int(k), full=False)

    def _at(self, k: int, *, full: bool) -> object:
        if k < 0:
            k += self._length
        if not 0 <= k < self._length:
            raise IndexError(f"record {k} out of range: the table has {self._length} records")
        odd = self._odd.get(k)
        return odd if odd is not None else self._record(k, full=full)

    def _record(self, k: int, *, full: bool = True) -> object:
        c = self._columns
        bits = int(c["flags"][k])
        number = int(c["slice"][k])
        (rows, columns, spacing, syntax, lut, dtype, orientation, thickness, series, study) = (
            self._series.values[int(c["series"][k])]
        )
        raw = None
        if bits & _RAW:
            raw = RawPixels(int(c["offset"][k]), dtype, int(c["size"][k]), int(c["mtime"][k]))
        rescale = c["rescale"][k]
        if not full:
            bits &= ~(_INSTANCE | _UID | _FRAME | _POSITION)
            orientation = series = study = None
        position = c["position"][k]
        header = DicomHeader(
            rows=rows,
            columns=columns,
            pixel_spacing=spacing,
            instance_number=int(c["instance"][k]) if bits & _INSTANCE else None,
            sop_instance_uid=self._uid("uid", 0, k) if bits & _UID else None,
            slope=float(rescale[0]),
            intercept=float(rescale[1]),
            transfer_syntax=syntax,
            raw=raw,
            modality_lut=lut,
            image_position=(
                (float(position[0]), float(position[1]), float(position[2]))
                if bits & _POSITION
                else None
            ),
            image_orientation=orientation,
            slice_thickness=thickness,
            frame_of_reference_uid=self._uid("frame", 1, k) if bits & _FRAME else None,
            series_instance_uid=series,
            study_instance_uid=study,
        )
        patient_id, original_id, dicom, i, o = self._layouts.values[int(c["layout"][k])]
        return SampleRecord(
            patient_id=patient_id,
            original_id=original_id,
            slice=number,
            dicom=_fill(dicom, number),  # type: ignore[arg-type]
            i_contour=_fill(i, number),
            o_contour=_fill(o, number),
            header=header,
        )

    # ----------------------------------------------------------------- columns

    def _take(self, name: str, indices: np.ndarray) -> np.ndarray:
        column = self._columns[name]
        codes = column.codes[indices]
        return codes if column.values is None else column.values[codes]

    def _per_series(self, field: int, empty: object, dtype: type) -> np.ndarray:
        """One field of every series dictionary entry, as an array (row per entry)."""
        values = [empty if v[field] is None else v[field] for v in self._series.values]
        return np.array(values or [empty], dtype=dtype)

    def shapes(self) -> np.ndarray:
        """int64 (N, 2): each record's (rows, columns), without rebuilding the records."""
        rows = self._per_series(0, 0, np.int64)
        columns = self._per_series(1, 0, np.int64)
        codes = self._take("series", np.arange(self._length))
        shapes = np.stack([rows[codes], columns[codes]], axis=1).reshape(self._length, 2)
        for k, record in self._odd.items():
            shapes[k] = record.header.rows, record.header.columns  # type: ignore[attr-defined]
        return shapes

    def slices(self, indices: np.ndarray) -> np.ndarray:
        """int64: the slice numbers of the records at ``indices`` (a 1-D int array)."""
        slices = self._take("slice", indices).astype(np.int64)
        for at, k in enumerate(indices.tolist()):
            if k in self._odd:
                slices[at] = self._odd[k].slice  # type: ignore[attr-defined]
        return slices

    def spacings(self, indices: np.ndarray) -> np.ndarray:
        """float64 (len(indices), 2): pixel spacing of those records, NaN where none."""
        table = self._per_series(2, (np.nan, np.nan), np.float64).reshape(-1, 2)
        spacing = table[self._take("series", indices)]
        for at, k in enumerate(indices.tolist()):
            if k in self._odd:
                found = self._odd[k].header.pixel_spacing  # type: ignore[attr-defined]
                spacing[at] = (np.nan, np.nan) if found is None else found
        return spacing
