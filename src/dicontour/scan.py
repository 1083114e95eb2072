"""Scan a dataset folder: link patients, pair slices with contours, report problems.

The layout::

    ROOT/link.csv                                   patient_id,original_id
    ROOT/dicoms/<patient_id>/<n>.dcm                one slice, n = InstanceNumber
    ROOT/contourfiles/<original_id>/i-contours/IM-0001-<nnnn>-icontour-manual.txt
    ROOT/contourfiles/<original_id>/o-contours/IM-0001-<nnnn>-ocontour-manual.txt

A scan never raises on bad data: every finding becomes a :class:`Problem`, and a
bad file drops only what depends on it.  Only a root that cannot be used at
all raises :class:`LayoutError`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .errors import ContourError, DicomError, LayoutError
from .index import Index, PatientCounts, SampleRecord, read_header, read_points
from .problems import Problem, problem
from .qa.checks import I_OUTSIDE_O_TOLERANCE as I_OUTSIDE_O_TOLERANCE  # re-exported
from .qa.checks import check_patient
from .storage import Location, location

_DICOM_NAME = re.compile(r"^(\d+)\.dcm$")
_CONTOUR_NAME = {
    "i": re.compile(r"^IM-\d+-(\d+)-icontour-manual\.txt$"),
    "o": re.compile(r"^IM-\d+-(\d+)-ocontour-manual\.txt$"),
}
_CONTOUR_DIRS = {"i": "i-contours", "o": "o-contours"}
#: How far (pixels) a contour may reach beyond the image's outer edge.  Pixel
#: centres run 0..W-1, so the image itself spans -0.5..W-0.5 in x (likewise y).
OUT_OF_BOUNDS_MARGIN = 1.0


@dataclass(frozen=True)
class Patient:
    """One row of link.csv."""

    patient_id: str
    original_id: str


@dataclass
class PatientScan:
    """What scanning one patient found; the unit of work of a scan."""

    patient_id: str
    records: list[SampleRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    dicoms: int = 0
    unlabelled: int = 0


def read_link_csv(root: str | Location) -> list[Patient]:
    """Read ``link.csv``.

    Raises
    ------
    LayoutError
        The root or link.csv is missing, or link.csv lacks the
        ``patient_id,original_id`` header or has a malformed row.
    """
    where = location(root)
    fs = where.fs
    link = where.path("link.csv")
    try:
        is_dir, is_file = fs.isdir(where.base), fs.isfile(link)
    except Exception as exc:  # object stores raise their own types (botocore, aiohttp, ...)
        raise LayoutError(
            f"{where.redacted()}: cannot reach the dataset root ({type(exc).__name__})"
        ) from exc
    if not is_dir:
        raise LayoutError(f"{where.redacted()}: dataset root does not exist or is not a folder")
    if not is_file:
        raise LayoutError(f"{where.redacted()}: no link.csv (patient_id,original_id) in the root")
    try:
        text = fs.cat_file(link).decode("utf-8-sig")
    except (UnicodeDecodeError, OSError) as exc:
        raise LayoutError(f"link.csv: cannot read as UTF-8 text ({exc})") from exc
    try:  # newline="": the csv module itself splits \n, \r\n and \r
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise LayoutError(f"link.csv: not a valid CSV file ({exc})") from exc
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if header[:2] != ["patient_id", "original_id"]:
        raise LayoutError(f"link.csv: first line must be 'patient_id,original_id', got {header}")
    patients = []
    for number, row in enumerate(rows[1:], start=2):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise LayoutError(
                f"link.csv line {number}: expected 'patient_id,original_id', got {row}"
            )
        if any("/" in cell or "\0" in cell or cell in (".", "..") for cell in cells[:2]):
            raise LayoutError(f"link.csv line {number}: ids must be plain folder names, got {row}")
        patients.append(Patient(cells[0], cells[1]))
    return patients


def _children(where: Location, relative: str) -> dict[str, bool]:
    """Names inside ``relative`` mapped to whether each is a folder ({} if absent)."""
    if where.is_local:
        # os.scandir answers from one directory read; fsspec's ls stats every entry.
        try:
            with os.scandir(where.path(relative)) as entries:
                return {entry.name: entry.is_dir() for entry in entries}
        except (FileNotFoundError, NotADirectoryError):
            return {}
    try:
        entries = where.fs.ls(where.path(relative), detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {
        entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry["type"] == "directory"
        for entry in entries
    }


def _contour_files(
    where: Location, patient: Patient, problems: list[Problem]
) -> dict[str, dict[int, str]]:
    """Slice number -> relative path, for the i- and o-contours of one patient."""
    folder = f"contourfiles/{patient.original_id}"
    found: dict[str, dict[int, str]] = {"i": {}, "o": {}}
    expected = set(_CONTOUR_DIRS.values())
    for name, is_dir in sorted(_children(where, folder).items()):
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
        for name, is_dir in sorted(_children(where, f"{folder}/{sub}").items()):
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


def _duplicate(path: str, kept: str, number: int, patient_id: str) -> Problem:
    """A second file for the same slice: reported, never silently dropped."""
    return problem(
        "stray-file",
        path,
        f"slice {number} is already given by {kept}; this file is ignored",
        patient_id=patient_id,
        slice=number,
    )


def _check_bounds(points: np.ndarray, shape: tuple[int, int]) -> str | None:
    """Say how a contour leaves the image, or None when it stays within the margin."""
    rows, columns = shape
    low = -0.5 - OUT_OF_BOUNDS_MARGIN
    x, y = points[:, 0], points[:, 1]
    if (
        x.min() < low
        or y.min() < low
        or x.max() > columns - 0.5 + OUT_OF_BOUNDS_MARGIN
        or (y.max() > rows - 0.5 + OUT_OF_BOUNDS_MARGIN)
    ):
        return (
            f"points span x {x.min():.1f}..{x.max():.1f}, y {y.min():.1f}..{y.max():.1f}, "
            f"more than {OUT_OF_BOUNDS_MARGIN:g} pixel beyond the image "
            f"({rows} rows x {columns} columns: x and y from -0.5 to {columns - 0.5:g} "
            f"and {rows - 0.5:g})"
        )
    return None


def scan_patient(root: str | Location, patient: Patient) -> PatientScan:
    """Scan one patient: pair slices with contours, read headers and contours.

    Never raises on bad data.  This is the unit of work the engines distribute.
    """
    where = location(root)
    result = PatientScan(patient.patient_id)
    polygons: dict[int, dict[str, np.ndarray]] = {}
    problems = result.problems
    pid = patient.patient_id
    dicom_folder = f"dicoms/{pid}"
    slices: dict[int, str] = {}
    for name, is_dir in sorted(_children(where, dicom_folder).items()):
        match = None if is_dir else _DICOM_NAME.match(name)
        if match is None:
            problems.append(
                problem(
                    "stray-file", f"{dicom_folder}/{name}", "not <n>.dcm; ignored", patient_id=pid
                )
            )
        elif int(match.group(1)) in slices:  # 7.dcm and 07.dcm: keep the first
            number = int(match.group(1))
            problems.append(_duplicate(f"{dicom_folder}/{name}", slices[number], number, pid))
        else:
            slices[int(match.group(1))] = f"{dicom_folder}/{name}"
    result.dicoms = len(slices)
    contours = _contour_files(where, patient, problems)
    labelled = sorted(set(contours["i"]) | set(contours["o"]))
    result.unlabelled = len(set(slices) - set(labelled))

    for number in labelled:
        files = {kind: contours[kind].get(number) for kind in ("i", "o")}
        names = " and ".join(f"{k}-contour" for k, path in files.items() if path)
        dicom = slices.get(number)
        if dicom is None:
            for path in filter(None, files.values()):
                problems.append(
                    problem(
                        "missing-dicom",
                        path,
                        f"no {dicom_folder}/{number}.dcm for this contour",
                        patient_id=pid,
                        slice=number,
                    )
                )
            continue
        try:
            header = read_header(where, dicom)
        except DicomError as exc:
            problems.append(
                problem(
                    exc.code,
                    dicom,
                    f"{exc.reason}; its {names} not used",
                    patient_id=pid,
                    slice=number,
                )
            )
            continue
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
                polygon = read_points(where, path)
            except ContourError as exc:
                problems.append(
                    problem(
                        exc.code,
                        path,
                        exc.reason if exc.line is None else f"line {exc.line}: {exc.reason}",
                        patient_id=pid,
                        slice=number,
                    )
                )
                continue
            outside = _check_bounds(polygon, header.shape)
            if outside:
                problems.append(
                    problem("out-of-bounds", path, outside, patient_id=pid, slice=number)
                )
                continue
            points[kind] = polygon
        if not points:
            continue
        record = SampleRecord(
            pid,
            patient.original_id,
            number,
            dicom,
            files["i"] if "i" in points else None,
            files["o"] if "o" in points else None,
            header,
        )
        result.records.append(record)
        polygons[number] = points
    # Consistency checks (qa/checks.py): slice by slice and across the patient.
    problems.extend(check_patient(result.records, polygons))
    return result


def _layout_problems(
    where: Location, patients: list[Patient]
) -> tuple[list[Patient], list[Problem]]:
    """Check link.csv against the folders; return the usable patients and the findings."""
    problems: list[Problem] = []
    dicom_entries = _children(where, "dicoms")
    contour_entries = _children(where, "contourfiles")
    dicom_dirs = {name for name, is_dir in dicom_entries.items() if is_dir}
    contour_dirs = {name for name, is_dir in contour_entries.items() if is_dir}
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
        if not has_contours:
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
    for top in sorted(_children(where, "")):
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


def scan(root: str | Location, *, progress: bool = False, mapper: Mapper | None = None) -> Index:
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

    Returns
    -------
    Index
        ``samples``: one record per slice with at least one valid contour;
        ``problems``: every finding, sorted by path; ``summary``: counts.

    Raises
    ------
    LayoutError
        Only when the root is unusable: missing, no link.csv, malformed link.csv.

    Examples
    --------
    >>> index = scan("final_data")                  # doctest: +SKIP
    >>> index.summary["i_contours"]                 # doctest: +SKIP
    96
    """
    where = location(root)
    patients, problems = _layout_problems(where, read_link_csv(where))
    worker = _PatientScanner(where)
    results: Iterable[PatientScan] = (mapper or map)(worker, patients)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(patients), desc="scan", unit="patient", leave=False)
    scans = list(results)
    records = [record for result in scans for record in result.records]
    problems += [found for result in scans for found in result.problems]
    problems.sort(key=lambda p: (p.path, p.code))
    counts = {
        result.patient_id: PatientCounts(result.dicoms, result.unlabelled) for result in scans
    }
    return Index(where, records, problems, counts=counts)


@dataclass(frozen=True)
class _PatientScanner:
    """A picklable ``scan_patient`` bound to a root, for process and cluster maps."""

    root: Location

    def __call__(self, patient: Patient) -> PatientScan:
        return scan_patient(self.root, patient)
