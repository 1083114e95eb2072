"""Scan a dataset folder: link patients, pair slices with contours, report problems.

The layout::

    ROOT/link.csv                                   patient_id,original_id
    ROOT/dicoms/<patient_id>/<n>.dcm                one slice, n = InstanceNumber
    ROOT/contourfiles/<original_id>/i-contours/IM-0001-<nnnn>-icontour-manual.txt
    ROOT/contourfiles/<original_id>/o-contours/IM-0001-<nnnn>-ocontour-manual.txt

The contours come from a *contour source* (:class:`ContourSource`): the text
files above by default (:class:`TextContours`), or RT Structure Sets in
``contourfiles/<original_id>/`` (:class:`dicontour.rtstruct.RtstructContours`).
A source lists a patient's contours as slice -> reference; the scan then reads
every reference through :func:`dicontour.index.read_points`, and the same
checks and problems apply whatever the source.

A scan never raises on bad data: every finding becomes a :class:`Problem`, and a
bad file drops only what depends on it.  Only a root that cannot be used at
all raises :class:`LayoutError`.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ._table import RecordTable
from .consistency import I_OUTSIDE_O_TOLERANCE as I_OUTSIDE_O_TOLERANCE  # re-exported
from .consistency import check_patient
from .contour import OUT_OF_BOUNDS_MARGIN as OUT_OF_BOUNDS_MARGIN  # re-exported
from .errors import ContourError, DicomError, LayoutError, RefusedFileError
from .index import Index, PatientCounts, SampleRecord, read_header, read_polygon
from .problems import Problem, problem
from .storage import Location, location

_DICOM_NAME = re.compile(r"^(\d+)\.dcm$")
_CONTOUR_NAME = {
    "i": re.compile(r"^IM-\d+-(\d+)-icontour-manual\.txt$"),
    "o": re.compile(r"^IM-\d+-(\d+)-ocontour-manual\.txt$"),
}
_CONTOUR_DIRS = {"i": "i-contours", "o": "o-contours"}


@dataclass(frozen=True)
class Patient:
    """One row of link.csv."""

    patient_id: str
    original_id: str

    @property
    def label(self) -> str:
        """How an engine error names this patient's task."""
        return f"patient {self.patient_id}"


@dataclass
class PatientScan:
    """What scanning one patient found; the unit of work of a scan."""

    patient_id: str
    records: list[SampleRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    dicoms: int = 0
    unlabelled: int = 0
    #: Each record's checked points (``{"i": points, "o": points}`` for its
    #: valid contours, in record order), kept only when asked for
    #: (``scan(..., keep_polygons=True)``): the cache build rasterises them instead
    #: of reading the contours again.
    polygons: list[dict[str, np.ndarray]] | None = None


#: Largest link.csv accepted, in bytes (checked before reading it): a real one is
#: a few bytes per patient, so this is over 100,000 patients.
MAX_LINK_CSV_BYTES = 16 * 2**20
_LINE_END = re.compile(rb"\r\n|\r|\n")  # the csv module's own line ends, split as bytes
_HEADER = ["patient_id", "original_id"]


def read_link_csv(root: str | Location, *, strict: bool = True) -> list[Patient]:
    """Read ``link.csv``: one :class:`Patient` per row.

    Blank lines are skipped, before the header too.  :func:`scan` reports a bad
    row as a ``bad-link-row`` problem and uses the others; called directly,
    this function raises on it, or with ``strict=False`` leaves it out as the
    scan does.

    Raises
    ------
    LayoutError
        The root or link.csv is missing or not a regular file, link.csv is over
        :data:`MAX_LINK_CSV_BYTES`, lacks the ``patient_id,original_id``
        header, or (``strict``) has a bad row.
    """
    patients, problems = _read_links(location(root))
    if problems and strict:
        raise LayoutError(f"link.csv {problems[0].message}")
    return patients


def _read_links(where: Location) -> tuple[list[Patient], list[Problem]]:
    """The usable rows of link.csv, and a ``bad-link-row`` problem for each other row."""
    data = _link_bytes(where)
    lines = _LINE_END.split(data.removeprefix(b"\xef\xbb\xbf"))
    rows = iter(enumerate(lines, start=1))
    header: list[str] = []
    for number, line in rows:
        if not line.strip():
            continue
        cells = _parse_line(line)
        header = [cell.strip().lower() for cell in cells] if isinstance(cells, list) else []
        if header[:2] != _HEADER:
            shown = cells if isinstance(cells, list) else f"line {number}: {cells}"
            raise LayoutError(
                f"link.csv: first line must be 'patient_id,original_id' (blank lines before "
                f"it are skipped), got {shown}"
            )
        break
    if header[:2] != _HEADER:
        raise LayoutError("link.csv: first line must be 'patient_id,original_id', got []")
    patients: list[Patient] = []
    problems: list[Problem] = []
    for number, line in rows:
        cells = _parse_line(line)
        why: str | None
        if isinstance(cells, str):
            why = cells
        else:
            cells = [cell.strip() for cell in cells]
            if not any(cells):
                continue
            why = _bad_ids(cells)
        if why is None:
            patients.append(Patient(cells[0], cells[1]))
            continue
        shown = repr(line[:80].decode("utf-8", "backslashreplace"))
        problems.append(
            problem("bad-link-row", "link.csv", f"line {number}: {why}, got {shown}; row not used")
        )
    return patients, problems


def _link_bytes(where: Location) -> bytes:
    """The bytes of link.csv, refused before reading when over the limit or not a file."""
    try:
        is_dir = where.fs.isdir(where.base)
        is_file = not where.lacks_file("link.csv")
    except LayoutError:  # no package for the scheme, or an unknown scheme: already in words
        raise
    except Exception as exc:  # object stores raise their own types (botocore, aiohttp, ...)
        raise LayoutError(
            f"{where.redacted()}: cannot reach the dataset root ({type(exc).__name__})"
        ) from exc
    if not is_dir:
        raise LayoutError(f"{where.redacted()}: dataset root does not exist or is not a folder")
    missing = f"{where.redacted()}: no link.csv (patient_id,original_id) in the root"
    if not is_file:
        raise LayoutError(missing)
    limit = f"over the limit of {MAX_LINK_CSV_BYTES} bytes (dicontour.scan.MAX_LINK_CSV_BYTES)"
    try:
        with where.open("link.csv") as handle:
            # The size comes from the opened file, so nothing is read beyond the limit.
            size = _open_size(handle)
            if size is not None and size > MAX_LINK_CSV_BYTES:
                raise LayoutError(f"link.csv: {size} bytes, {limit}; not read")
            data = handle.read(MAX_LINK_CSV_BYTES + 1)
    except FileNotFoundError as exc:
        raise LayoutError(missing) from exc
    except RefusedFileError as exc:
        raise LayoutError(f"link.csv: {exc.reason}") from exc
    except OSError as exc:
        raise LayoutError(f"link.csv: cannot read ({exc})") from exc
    if len(data) > MAX_LINK_CSV_BYTES:  # a size the store did not tell
        raise LayoutError(f"link.csv: more than {MAX_LINK_CSV_BYTES} bytes, {limit}")
    return data


def _open_size(handle: Any) -> int | None:
    try:
        return os.fstat(handle.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        size = getattr(handle, "size", None)  # fsspec's remote files
        return size if isinstance(size, int) else None


def _parse_line(line: bytes) -> list[str] | str:
    """The cells of one line, or why they cannot be had."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    try:
        return next(csv.reader([text]), [])
    except csv.Error as exc:
        return f"not valid CSV ({exc})"


def _bad_ids(cells: list[str]) -> str | None:
    """Why a row's two ids cannot name folders, or None when they can."""
    if len(cells) < 2 or not cells[0] or not cells[1]:
        return "expected 'patient_id,original_id'"
    for cell in cells[:2]:
        if "/" in cell or "\\" in cell or cell in (".", ".."):
            return "ids must be plain folder names (no '/', '\\', '.' or '..')"
        if any(unicodedata.category(char) == "Cc" for char in cell):
            return "ids must be plain folder names (a control character)"
    return None


def _children(
    where: Location, relative: str, problems: list[Problem], patient_id: str | None = None
) -> dict[str, bool]:
    """Names inside ``relative`` that may be read, mapped to whether each is a folder.

    Everything else is reported in ``problems`` (one problem per refused entry,
    or one for the whole folder when it cannot be listed) and left out.
    """
    try:
        entries = where.entries(relative)
    except RefusedFileError as exc:
        problems.append(Problem.from_error(exc, path=relative or ".", patient_id=patient_id))
        return {}
    found = {}
    for entry in entries:
        if entry.kind == "refused":
            path = f"{relative}/{entry.name}" if relative else entry.name
            problems.append(
                problem(
                    entry.code or "not-a-regular-file",
                    path,
                    entry.reason or "not read",
                    patient_id=patient_id,
                )
            )
        else:
            found[entry.name] = entry.kind == "folder"
    return found


def _contour_files(
    where: Location, patient: Patient, problems: list[Problem]
) -> dict[str, dict[int, str]]:
    """Slice number -> relative path, for the i- and o-contours of one patient."""
    folder = f"contourfiles/{patient.original_id}"
    found: dict[str, dict[int, str]] = {"i": {}, "o": {}}
    expected = set(_CONTOUR_DIRS.values())
    listed = _children(where, folder, problems, patient.patient_id)
    for name, is_dir in sorted(listed.items()):
        if name not in expected or not is_dir:
            problems.append(
                problem(
                    "stray-file",
                    f"{folder}/{name}",
                    "not part of the layout; ignored",
                    patient_id=patient.patient_id,
                )
            )
    for kind, sub in _CONTOUR_DIRS.items():
        if not listed.get(sub):  # absent, a file (reported above) or refused (reported)
            continue
        contents = _children(where, f"{folder}/{sub}", problems, patient.patient_id)
        for name, is_dir in sorted(contents.items()):
            match = None if is_dir else _CONTOUR_NAME[kind].match(name)
            path = f"{folder}/{sub}/{name}"
            if match is None:
                problems.append(
                    problem(
                        "stray-file",
                        path,
                        "name is not IM-0001-<nnnn>-" + kind + "contour-manual.txt; ignored",
                        patient_id=patient.patient_id,
                    )
                )
                continue
            number = int(match.group(1))
            if number in found[kind]:  # e.g. IM-0001-0007 and IM-0002-0007: keep the first
                problems.append(_duplicate(path, found[kind][number], number, patient.patient_id))
                continue
            found[kind][number] = path
    return found


class ContourSource(Protocol):
    """Where a patient's contours come from: lists them, slice by slice.

    ``find`` returns ``{"i": {slice: reference}, "o": {...}}`` for one patient,
    appending a :class:`Problem` for whatever cannot be used.  ``slices`` maps
    the patient's slice numbers to their DICOM paths.  A reference is a string
    that :func:`dicontour.index.read_points` reads into (x, y) points.  Must be
    picklable (the engines send it to worker processes).
    """

    def find(
        self, where: Location, patient: Patient, slices: Mapping[int, str], problems: list[Problem]
    ) -> dict[str, dict[int, str]]: ...


@dataclass(frozen=True)
class TextContours:
    """The contour source of the challenge layout: one text file per contour.

    ``contourfiles/<original_id>/{i,o}-contours/IM-0001-<nnnn>-{i,o}contour-manual.txt``;
    the reference is the file's path.
    """

    def find(
        self, where: Location, patient: Patient, slices: Mapping[int, str], problems: list[Problem]
    ) -> dict[str, dict[int, str]]:
        """Slice number -> relative path, for the i- and o-contours of ``patient``."""
        return _contour_files(where, patient, problems)


def _duplicate(path: str, kept: str, number: int, patient_id: str) -> Problem:
    """A second file for the same slice: reported, never silently dropped."""
    return problem(
        "stray-file",
        path,
        f"slice {number} is already given by {kept}; this file is ignored",
        patient_id=patient_id,
        slice=number,
    )


def scan_patient(
    root: str | Location,
    patient: Patient,
    contours: ContourSource | None = None,
    *,
    keep_polygons: bool = False,
) -> PatientScan:
    """Scan one patient: pair slices with contours, read headers and contours.

    Never raises on bad data.  This is the unit of work the engines distribute.
    Its steps: list the DICOM slices, list the contours (``contours``, the
    contour source: :class:`TextContours` by default), read each labelled
    slice (:func:`_scan_slice`), then the patient's geometry checks.  With
    ``keep_polygons``, the records' checked points are kept in
    :attr:`PatientScan.polygons`.
    """
    where = location(root)
    result = PatientScan(patient.patient_id)
    pid = patient.patient_id
    listed = _children(where, f"dicoms/{pid}", result.problems, pid)
    if not listed and not result.problems:
        unseen = _unseen(where, f"dicoms/{pid}", pid)
        if unseen is not None:
            # Not an empty patient: the folder was listed when the scan began.
            result.problems.append(unseen)
            return result
    slices = _dicom_slices(pid, listed, result.problems)
    result.dicoms = len(slices)
    source: ContourSource = contours or TextContours()
    found = source.find(where, patient, slices, result.problems)
    labelled = sorted(set(found["i"]) | set(found["o"]))
    result.unlabelled = len(set(slices) - set(labelled))
    polygons: dict[int, dict[str, np.ndarray]] = {}
    for number in labelled:
        files = {kind: found[kind].get(number) for kind in ("i", "o")}
        read = _scan_slice(where, patient, number, slices.get(number), files, result.problems)
        if read is not None:
            result.records.append(read[0])
            polygons[number] = read[1]
    # The geometry checks (consistency.py): slice by slice and across the patient.
    result.problems.extend(check_patient(result.records, polygons))
    if keep_polygons:
        result.polygons = [polygons[record.slice] for record in result.records]
    return result


def _dicom_slices(pid: str, listed: dict[str, bool], problems: list[Problem]) -> dict[int, str]:
    """``{slice number: path}`` of the patient's ``<n>.dcm`` files; others are problems."""
    folder = f"dicoms/{pid}"
    slices: dict[int, str] = {}
    for name, is_dir in sorted(listed.items()):
        match = None if is_dir else _DICOM_NAME.match(name)
        if match is None:
            problems.append(
                problem("stray-file", f"{folder}/{name}", "not <n>.dcm; ignored", patient_id=pid)
            )
        elif int(match.group(1)) in slices:  # 7.dcm and 07.dcm: keep the first
            number = int(match.group(1))
            problems.append(_duplicate(f"{folder}/{name}", slices[number], number, pid))
        else:
            slices[int(match.group(1))] = f"{folder}/{name}"
    return slices


def _scan_slice(
    where: Location,
    patient: Patient,
    number: int,
    dicom: str | None,
    files: dict[str, str | None],
    problems: list[Problem],
) -> tuple[SampleRecord, dict[str, np.ndarray]] | None:
    """One labelled slice: its header and valid polygons, or None (its problems recorded)."""
    pid = patient.patient_id
    if dicom is None:
        for contour in filter(None, files.values()):
            problems.append(
                problem(
                    "missing-dicom",
                    contour,
                    f"no dicoms/{pid}/{number}.dcm for this contour",
                    patient_id=pid,
                    slice=number,
                )
            )
        return None
    try:
        header = read_header(where, dicom)
    except DicomError as exc:
        names = " and ".join(f"{k}-contour" for k, path in files.items() if path)
        problems.append(
            Problem.from_error(
                exc, path=dicom, note=f"; its {names} not used", patient_id=pid, slice=number
            )
        )
        return None
    if header.instance_number is not None and header.instance_number != number:
        problems.append(
            problem(
                "instance-number-mismatch",
                dicom,
                f"file name says slice {number}, InstanceNumber is {header.instance_number}",
                patient_id=pid,
                slice=number,
            )
        )
    points: dict[str, np.ndarray] = {}
    for kind, path in files.items():
        if path is None:
            continue
        try:
            # The same reading and checks as every load (out-of-bounds etc.).
            points[kind] = read_polygon(where, path, header.shape)
        except ContourError as exc:
            problems.append(Problem.from_error(exc, path=path, patient_id=pid, slice=number))
    if not points:
        return None
    record = SampleRecord(
        pid,
        patient.original_id,
        number,
        dicom,
        files["i"] if "i" in points else None,
        files["o"] if "o" in points else None,
        header,
    )
    return record, points


def _unseen(where: Location, folder: str, patient_id: str) -> Problem | None:
    """Why an empty listing of ``folder`` is not an empty patient, or None when it is one."""
    try:
        root_seen = where.fs.isdir(where.base)
        folder_seen = root_seen and where.fs.isdir(where.path(folder))
    except Exception as exc:  # object stores raise their own types (botocore, aiohttp, ...)
        root_seen = folder_seen = False
        why = f"{type(exc).__name__}: {exc}"
    else:
        why = "no such folder"
    if not root_seen:
        return problem(
            "root-unreachable",
            folder,
            f"the dataset root {where.redacted()} cannot be seen where this patient was scanned "
            f"({why}; a cluster worker without the same mount or credentials?); "
            "the patient's files are not used",
            patient_id=patient_id,
        )
    if not folder_seen:
        return problem(
            "missing-patient-folder",
            folder,
            "the folder was there when the scan began and is gone now (or cannot be seen "
            "where this patient was scanned); the patient's files are not used",
            patient_id=patient_id,
        )
    return None


def _layout_problems(
    where: Location, patients: list[Patient]
) -> tuple[list[Patient], list[Problem]]:
    """Check link.csv against the folders; return the usable patients and the findings."""
    problems: list[Problem] = []
    top_entries = _children(where, "", problems)
    # A top folder that is refused (reported above) is not listed, so never read.
    dicom_entries = _children(where, "dicoms", problems) if top_entries.get("dicoms") else {}
    contour_entries = (
        _children(where, "contourfiles", problems) if top_entries.get("contourfiles") else {}
    )
    dicom_dirs = {name for name, is_dir in dicom_entries.items() if is_dir}
    contour_dirs = {name for name, is_dir in contour_entries.items() if is_dir}
    refused = {found.path for found in problems}  # reported already: not "missing" too
    usable, seen_pid, seen_oid = [], set(), set()
    for patient in patients:
        if patient.patient_id in seen_pid or patient.original_id in seen_oid:
            problems.append(
                problem(
                    "duplicate-link",
                    "link.csv",
                    f"{patient.patient_id},{patient.original_id} repeats an id of an earlier row; "
                    "the earlier row is used, this row's folders are not",
                    patient_id=patient.patient_id,
                )
            )
            continue
        seen_pid.add(patient.patient_id)
        seen_oid.add(patient.original_id)
        has_contours = patient.original_id in contour_dirs
        if patient.patient_id not in dicom_dirs:
            if f"dicoms/{patient.patient_id}" in refused:
                continue
            problems.append(
                problem(
                    "missing-patient-folder",
                    f"dicoms/{patient.patient_id}",
                    "named in link.csv but the folder is missing"
                    + (
                        f"; the contours in contourfiles/{patient.original_id} are not used"
                        if has_contours
                        else ""
                    ),
                    patient_id=patient.patient_id,
                )
            )
            continue
        if not has_contours and f"contourfiles/{patient.original_id}" not in refused:
            problems.append(
                problem(
                    "missing-contour-folder",
                    f"contourfiles/{patient.original_id}",
                    "named in link.csv but the folder is missing; the patient has no labels",
                    patient_id=patient.patient_id,
                )
            )
        usable.append(patient)
    # A folder named only by a duplicate row is reported as duplicate-link, not here.
    for name in sorted(dicom_dirs - {patient.patient_id for patient in patients}):
        problems.append(
            problem(
                "not-in-link-csv",
                f"dicoms/{name}",
                "no link.csv row names this patient; its slices are not used",
            )
        )
    for name in sorted(contour_dirs - {patient.original_id for patient in patients}):
        problems.append(
            problem(
                "not-in-link-csv",
                f"contourfiles/{name}",
                "no link.csv row names this folder; its contours are not used",
            )
        )
    for top in sorted(top_entries):
        if top not in {"link.csv", "dicoms", "contourfiles"} and not top.startswith("."):
            problems.append(problem("stray-file", top, "not part of the layout; ignored"))
    for folder, entries in (("dicoms", dicom_entries), ("contourfiles", contour_entries)):
        for name in sorted(n for n, is_dir in entries.items() if not is_dir):
            if not name.startswith("."):
                problems.append(
                    problem(
                        "stray-file",
                        f"{folder}/{name}",
                        "a file where patient folders belong; ignored",
                    )
                )
    return usable, problems


Mapper = Callable[[Callable[[Patient], PatientScan], list[Patient]], Iterable[PatientScan]]


def scan(
    root: str | Location,
    *,
    progress: bool = False,
    mapper: Mapper | None = None,
    contours: ContourSource | None = None,
    keep_polygons: bool = False,
) -> Index:
    """Scan a dataset folder and return its :class:`Index`.

    Parameters
    ----------
    root : str or path
        The dataset root, a local folder or an fsspec URL (``s3://bucket/data``).
    progress : bool
        Show a progress bar (one step per patient) on stderr.
    mapper : callable, optional
        ``mapper(function, patients)`` running :func:`scan_patient` for each patient
        and yielding the results in order; the built-in ``map`` by default.  The
        engines pass one that spreads patients over processes or a Dask cluster.
    contours : ContourSource, optional
        Where the contours come from: :class:`TextContours` (the layout above)
        by default; :class:`dicontour.rtstruct.RtstructContours` for RT
        Structure Sets in ``contourfiles/<original_id>/``.
    keep_polygons : bool
        Have each :class:`PatientScan` the mapper yields carry its records'
        checked points (:attr:`PatientScan.polygons`), for a mapper that uses
        them (the cache build rasterises them instead of reading the contours
        again).  The index never holds them: they are dropped as each patient's
        records are packed.

    Returns
    -------
    Index
        ``samples``: one record per slice with at least one valid contour;
        ``problems``: every finding, sorted by path; ``summary``: counts.

    Raises
    ------
    LayoutError
        Only when the root is unusable: missing, no link.csv, a link.csv that is
        not a regular file, over :data:`MAX_LINK_CSV_BYTES` or without its header
        line.  A bad row of link.csv is a ``bad-link-row`` problem.

    Examples
    --------
    >>> index = scan("final_data")                  # doctest: +SKIP
    >>> index.summary["i_contours"]                 # doctest: +SKIP
    96
    """
    where = location(root)
    links, bad_rows = _read_links(where)
    patients, problems = _layout_problems(where, links)
    problems += bad_rows
    worker = _PatientScanner(where, contours, keep_polygons)
    results: Iterable[PatientScan] = (mapper or map)(worker, patients)
    if progress:
        from tqdm import tqdm  # not a cycle: only when a bar is shown (slow to import)

        results = tqdm(results, total=len(patients), desc="scan", unit="patient", leave=False)
    found: list[Problem] = []
    counts: dict[str, PatientCounts] = {}

    def stream() -> Iterator[SampleRecord]:
        """Each patient's records in turn; its scan result is dropped once packed."""
        for result in results:
            counts[result.patient_id] = PatientCounts(result.dicoms, result.unlabelled)
            found.extend(result.problems)
            result.polygons = None
            yield from result.records

    records = RecordTable(stream())  # column-wise as the patients arrive
    problems += _not_in(problems, found)
    problems.sort(key=lambda p: (p.path, p.code))
    return Index(where, records, problems, counts=counts)


def _not_in(layout: list[Problem], found: list[Problem]) -> list[Problem]:
    """The patients' ``found`` problems that the layout's listing has not reported already.

    A refused patient folder is found by the layout's listing and again by the
    patient's own (which cannot know): it is reported once.
    """
    known = {(p.code, p.path, p.message) for p in layout}
    return [p for p in found if (p.code, p.path, p.message) not in known]


@dataclass(frozen=True)
class _PatientScanner:
    """A picklable ``scan_patient`` bound to a root, for process and cluster maps."""

    root: Location
    contours: ContourSource | None = None
    keep_polygons: bool = False

    def __call__(self, patient: Patient) -> PatientScan:
        return scan_patient(self.root, patient, self.contours, keep_polygons=self.keep_polygons)
