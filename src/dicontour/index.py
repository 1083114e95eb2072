"""The result of a scan: which slices have contours, what went wrong, how to load them.

Nouns
-----
``SampleRecord``
    One labelled slice as the scan found it: who, which slice, which files
    (paths relative to the root), and the DICOM header.  No pixels.
``Sample``
    One loaded slice: the float32 image and its boolean masks.
``Index``
    The records, the problems and a summary, plus :meth:`Index.load`; a
    sub-``Index`` by patient, case or problem code (:meth:`Index.subset`) and
    patient-level splits (:meth:`Index.folds`, :meth:`Index.holdout`).
``Exclusion``
    One contour that :meth:`Index.subset` left out because of a problem code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, TypedDict

import numpy as np

from ._asdict import AsDict
from ._table import RecordTable
from .contour import check_bounds, read_contour
from .dicom import DicomHeader, read_dicom_header, read_dicom_pixels
from .errors import ContourError, DicomError
from .problems import CODES, EXCLUDES, Problem
from .raster import MAX_CROSSINGS, count_crossings, polygon_to_mask
from .record import SampleRecord as SampleRecord  # re-exported: defined here before
from .rtstruct import is_reference as is_rtstruct_reference
from .rtstruct import read_reference as read_rtstruct_reference
from .splits import assign_folds, choose_holdout
from .storage import Location, location, opened_as
from .targets import Target as Target  # re-exported: index.Target predates targets.py
from .targets import check_target


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

    def mask(self, target: Target) -> np.ndarray:
        """The mask(s) ``target`` asks for, as :class:`dicontour.BatchLoader` serves them.

        ``"i"`` and ``"o"`` give a (H, W) mask, ``"both"`` a (2, H, W) stack
        [i, o].  Raises ``ValueError`` where a needed contour is absent or for
        an unknown target.
        """
        target = check_target(target)
        if target == "both":
            if self.i_mask is None or self.o_mask is None:
                raise ValueError(
                    f"patient {self.patient_id} slice {self.slice} does not have both contours"
                )
            return np.stack([self.i_mask, self.o_mask])
        found = self.i_mask if target == "i" else self.o_mask
        if found is None:
            raise ValueError(
                f"patient {self.patient_id} slice {self.slice} has no {target}-contour"
            )
        return found


def _opened(
    root: Location, relative: str, error: type[DicomError | ContourError]
) -> AbstractContextManager[BinaryIO]:
    """Open a dataset file through ``root`` (the one gate, see :mod:`dicontour.storage`).

    Storage errors and refusals (a FIFO, a link out of the root) become ``error``
    naming the file, with the refusal's problem code.
    """
    missing = "missing-dicom" if error is DicomError else "missing-contour"
    return opened_as(root, relative, error, missing=missing)


def read_header(root: Location, relative: str) -> DicomHeader:
    """The header of the DICOM file ``relative`` under ``root`` (a folder or a store)."""
    with _opened(root, relative, DicomError) as handle:
        return read_dicom_header(handle, name=relative)


def read_points(root: Location, relative: str) -> np.ndarray:
    """The (N, 2) (x, y) points of the contour ``relative`` names under ``root``.

    ``relative`` is a contour reference as a contour source lists it: the path
    of a text contour file, or a contour inside an RT Structure Set
    (:func:`dicontour.rtstruct.is_reference`), read by its own reader.
    """
    if is_rtstruct_reference(relative):
        return read_rtstruct_reference(root, relative)
    with _opened(root, relative, ContourError) as handle:
        return read_contour(handle, name=relative)


def read_polygon(root: Location, relative: str, shape: tuple[int, int]) -> np.ndarray:
    """The points of contour ``relative``, checked against its image of ``shape``.

    Every rule the scan applies to a contour is applied here, and the scan and
    the loaders both read contours through this function (or :func:`read_mask`,
    which applies the same rules), so a file rewritten after a scan is refused
    when loaded, never silently clipped.

    Raises
    ------
    ContourError
        What :func:`dicontour.read_contour` refuses; ``out-of-bounds`` (see
        :func:`dicontour.contour.check_bounds`); ``too-many-crossings`` for a
        polygon over the rasteriser's :data:`dicontour.raster.MAX_CROSSINGS`.
    """
    points = read_points(root, relative)
    check_bounds(points, shape, name=relative)
    _check_crossings(points, shape, relative)
    return points


def _check_crossings(points: np.ndarray, shape: tuple[int, int], relative: str) -> None:
    """Raise ``too-many-crossings`` for a polygon over :data:`~dicontour.raster.MAX_CROSSINGS`."""
    crossings = count_crossings(points, shape)
    if crossings > MAX_CROSSINGS:
        raise ContourError(
            relative,
            f"its edges cross {crossings} (edge, row) pairs of the {shape[0]}x{shape[1]} "
            f"image, more than MAX_CROSSINGS={MAX_CROSSINGS}: too costly to rasterise",
            code="too-many-crossings",
        )


def read_image(
    root: Location, record: SampleRecord, *, out: np.ndarray | None = None
) -> np.ndarray:
    """The float32 image of ``record``; the direct-offset fast path on local files.

    :func:`dicontour.dicom.read_dicom_pixels` on the file opened through
    ``root``; ``out`` (float32, the record's shape) receives the image instead
    of a new array.
    """
    with _opened(root, record.dicom, DicomError) as handle:
        return read_dicom_pixels(handle, record.header, name=record.dicom, out=out)


def read_mask(
    root: Location, relative: str, shape: tuple[int, int], *, out: np.ndarray | None = None
) -> np.ndarray:
    """Read the contour file ``relative``, check it (:func:`read_polygon`), rasterise it.

    Returns a (H, W) bool mask: ``out`` when given (a bool (H, W) array).
    """
    points = read_points(root, relative)
    check_bounds(points, shape, name=relative)
    try:
        # The rasteriser counts the crossings before it allocates anything and
        # refuses too many; counted again only to name that refusal.
        return polygon_to_mask(points, shape, out=out)
    except ValueError:
        _check_crossings(points, shape, relative)
        raise


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


@dataclass(frozen=True)
class PatientCounts:
    """What a scan counted for one patient besides its records.

    Attributes
    ----------
    dicoms : int
        ``<n>.dcm`` files in ``dicoms/<patient_id>``.
    unlabelled : int
        Of those, slices without any contour file.
    """

    dicoms: int
    unlabelled: int


@dataclass(frozen=True)
class Exclusion(AsDict):
    """One contour that :meth:`Index.subset` left out, and why.

    Attributes
    ----------
    case_id : str
        The slice (:attr:`SampleRecord.case_id`).
    contour : {"i", "o"}
        Which of its contours was left out.
    code : str
        The problem code that was excluded.
    reason : str
        The problem's path and message.
    """

    case_id: str
    contour: str
    code: str
    reason: str


class PatientSummary(TypedDict):
    """One patient's counts in :class:`Summary` (``per_patient``)."""

    dicoms: int
    labelled_slices: int
    unlabelled_slices: int
    i_contours: int
    o_contours: int
    #: Problem code -> count, in the order first found.
    problems: dict[str, int]


class Summary(TypedDict):
    """An index's summary (:attr:`Index.summary`, ``"summary"`` of ``scan --json``).

    Keys in this order.  ``problems`` maps each code to its count, sorted by
    code; ``per_patient`` holds every patient, in the scan's order.
    """

    patients: int
    dicoms: int
    labelled_slices: int
    unlabelled_slices: int
    i_contours: int
    o_contours: int
    both_contours: int
    problems: dict[str, int]
    #: ``error``, ``warning`` and ``info`` counts, in this order.  A plain dict:
    #: callers copy it as ``dict[str, int]`` (a TypedDict would copy as
    #: ``dict[str, object]``).
    severity: dict[str, int]
    per_patient: dict[str, PatientSummary]


def summarize(
    records: Sequence[SampleRecord],
    problems: Sequence[Problem],
    counts: Mapping[str, PatientCounts],
) -> Summary:
    """The summary of an index: totals and per-patient counts.

    The one computation behind :func:`dicontour.scan`'s summary and
    :meth:`Index.subset`'s.  ``counts`` gives the patients, in order, with their
    DICOM and unlabelled-slice counts; ``records`` and ``problems`` are counted
    per patient and in total.
    """
    pids, has = _labels(records)
    mine: dict[str, list[int]] = {pid: [0, 0, 0] for pid in counts}  # slices, i, o
    for pid, (i, o) in zip(pids, has.tolist(), strict=True):
        tally = mine.setdefault(pid, [0, 0, 0])
        tally[0] += 1
        tally[1] += i
        tally[2] += o
    per_patient: dict[str, PatientSummary] = {}
    for pid, count in counts.items():
        per_patient[pid] = {
            "dicoms": count.dicoms,
            "labelled_slices": mine[pid][0],
            "unlabelled_slices": count.unlabelled,
            "i_contours": mine[pid][1],
            "o_contours": mine[pid][2],
            "problems": dict(Counter(p.code for p in problems if p.patient_id == pid)),
        }
    return {
        "patients": len(counts),
        "dicoms": sum(count.dicoms for count in counts.values()),
        "labelled_slices": len(records),
        "unlabelled_slices": sum(count.unlabelled for count in counts.values()),
        "i_contours": int(has[:, 0].sum()),
        "o_contours": int(has[:, 1].sum()),
        "both_contours": int(has.all(axis=1).sum()),
        "problems": dict(sorted(Counter(p.code for p in problems).items())),
        "severity": {
            s: sum(p.severity == s for p in problems) for s in ("error", "warning", "info")
        },
        "per_patient": per_patient,
    }


def _labels(records: Sequence[SampleRecord]) -> tuple[list[str], np.ndarray]:
    """Each record's patient id, and bool (N, 2) whether it has an [i, o] contour.

    Read from the columns of a :class:`~dicontour._table.RecordTable` without
    rebuilding a record (a million of them would take seconds).
    """
    if isinstance(records, RecordTable):
        return records.patient_ids(), records.has_contours()
    has = [(r.i_contour is not None, r.o_contour is not None) for r in records]
    return [r.patient_id for r in records], np.array(has, dtype=bool).reshape(len(has), 2)


def _check_excludes(exclude: Iterable[str]) -> tuple[str, ...]:
    """``exclude`` as a tuple of excludable codes, or ValueError listing the valid ones."""
    if isinstance(exclude, str):  # exclude="i-outside-o" would iterate its letters
        exclude = (exclude,)
    codes = tuple(dict.fromkeys(exclude))
    for code in codes:
        if code not in EXCLUDES:
            why = (
                "it is not a problem code"
                if code not in CODES
                else "its problems remove no contour (an error already removed its file "
                "at the scan; an info concerns files that are not used)"
            )
            raise ValueError(
                f"cannot exclude {code!r}: {why}; excludable codes: {', '.join(EXCLUDES)}"
            )
    return codes


def _names(kind: str, missing: Collection[str]) -> str:
    listed = ", ".join(sorted(missing)[:10]) + (", ..." if len(missing) > 10 else "")
    return f"{len(missing)} {kind} not in the index: {listed}"


@dataclass(frozen=True)
class Split:
    """A train / validation split by patient: no patient is on both sides.

    Attributes
    ----------
    train, val : Index
        The two sides, each a real :class:`Index` with its own summary.
    """

    train: Index
    val: Index

    def to_dict(self) -> dict[str, list[str]]:
        """``{"train": [case ids], "val": [case ids]}``: one fold of ``splits_final.json``."""
        return {
            "train": [record.case_id for record in self.train],
            "val": [record.case_id for record in self.val],
        }


class Index:
    """The labelled slices of a dataset, with every problem the scan found.

    Made by :func:`dicontour.scan`.  Indexing and iteration give
    :class:`SampleRecord` objects; :meth:`load` reads a :class:`Sample`.
    :meth:`subset`, :meth:`folds` and :meth:`holdout` select by patient.

    Parameters
    ----------
    root : str or Location
        The dataset root the records' paths are relative to.
    samples : sequence of SampleRecord
        Held column-wise (:class:`dicontour._table.RecordTable`, about 200
        bytes a record instead of about 1 KB of objects); ``index.samples[k]``
        rebuilds record k, equal in every field to what the scan found.
    problems : sequence of Problem
    summary : Summary, optional
        Computed by :func:`summarize` when omitted.
    counts : mapping of str to PatientCounts, optional
        The patients, in order, with their DICOM and unlabelled-slice counts;
        without it (an index built by hand) each patient of ``samples`` counts
        only its labelled slices.
    excluded : sequence of Exclusion
        The contours a :meth:`subset` left out.

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
        summary: Summary | None = None,
        *,
        counts: Mapping[str, PatientCounts] | None = None,
        excluded: Sequence[Exclusion] = (),
    ) -> None:
        self.location = location(root)
        # Held column-wise (about 200 bytes a record); records are rebuilt on access.
        self.samples: Sequence[SampleRecord] = (
            samples if isinstance(samples, RecordTable) else RecordTable(samples)
        )
        self.problems: tuple[Problem, ...] = tuple(problems)
        if counts is None:
            labelled = Counter(_labels(self.samples)[0])
            counts = {pid: PatientCounts(n, 0) for pid, n in labelled.items()}
        self.counts: dict[str, PatientCounts] = dict(counts)
        self.excluded: tuple[Exclusion, ...] = tuple(excluded)
        self.summary: Summary = (
            summary if summary is not None else summarize(self.samples, self.problems, self.counts)
        )

    @property
    def root(self) -> str:
        """The dataset root as a path or URL."""
        return self.location.url

    @property
    def patients(self) -> tuple[str, ...]:
        """The patient ids of the index, in scan order (including any without samples)."""
        return tuple(self.counts)

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
        target = check_target(target)
        has = _labels(self.samples)[1]
        chosen = {"i": has[:, 0], "o": has[:, 1], "both": has.all(axis=1)}[target]
        return np.flatnonzero(chosen).tolist()

    def pairs(self, target: Target = "i") -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(image, mask)`` for every sample that has the ``target`` contour(s).

        ``image`` is float32 (H, W); ``mask`` is bool (H, W) for ``"i"`` and
        ``"o"``, (2, H, W) [i, o] for ``"both"`` (as :meth:`Sample.mask`).  The
        simple, single-process way to walk a dataset; for training, use
        :class:`dicontour.BatchLoader`.
        """
        positions = self.select(target)  # here, not in the generator: a bad target raises now
        return self._pairs(positions, check_target(target))

    def _pairs(
        self, positions: list[int], target: Target
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for k in positions:
            sample = self.load(k)
            yield sample.image, sample.mask(target)

    def errors(self) -> list[Problem]:
        """The problems of severity ``error``."""
        return [p for p in self.problems if p.severity == "error"]

    def subset(
        self,
        *,
        patients: Iterable[str] | None = None,
        cases: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
    ) -> Index:
        """A sub-index: some patients or cases, without the contours of some problem codes.

        Parameters
        ----------
        patients : iterable of str, optional
            Keep these patients (all by default).
        cases : iterable of str, optional
            Keep these case ids (:attr:`SampleRecord.case_id`), e.g. one side of
            a fold read with :func:`dicontour.read_splits`; their patients are
            the kept patients.  With ``patients`` too, both must hold.
        exclude : iterable of str
            Problem codes whose contours to leave out, as
            :data:`dicontour.problems.EXCLUDES` says: ``"contours-misaligned"``
            drops the patient's o-contours (its i-contours stay); a slice-level
            code such as ``"i-outside-o"`` drops both contours of that slice; a
            slice left with no contour leaves the index.

        Returns
        -------
        Index
            Same root; the kept records in the same order; the problems of the
            kept patients and those of the whole dataset (no patient); a summary
            computed afresh; :attr:`excluded` listing this and earlier
            exclusions of the kept patients.

        Raises
        ------
        ValueError
            A patient or case id not in this index (naming them), or a code
            that cannot be excluded (listing those that can).

        Examples
        --------
        >>> index = dicontour.scan("final_data")                          # doctest: +SKIP
        >>> clean = index.subset(exclude=["contours-misaligned"])         # doctest: +SKIP
        >>> clean.summary["o_contours"], len(clean.excluded)              # doctest: +SKIP
        (37, 9)
        """
        codes = _check_excludes(exclude)
        keep = set(self.counts)
        if patients is not None:
            wanted = {patients} if isinstance(patients, str) else set(patients)
            missing = wanted - keep
            if missing:
                raise ValueError(_names("patient(s)", missing))
            keep = wanted
        records = [r for r in self.samples if r.patient_id in keep]
        if cases is not None:
            wanted_cases = {cases} if isinstance(cases, str) else set(cases)
            known = {r.case_id for r in self.samples}
            missing = wanted_cases - known
            if missing:
                raise ValueError(_names("case(s)", missing))
            records = [r for r in records if r.case_id in wanted_cases]
            keep &= {r.patient_id for r in records}
        problems = [p for p in self.problems if p.patient_id is None or p.patient_id in keep]
        kept, excluded = _exclude(records, problems, codes)
        return Index(
            self.location,
            kept,
            problems,
            counts={pid: count for pid, count in self.counts.items() if pid in keep},
            excluded=[e for e in self.excluded if e.case_id.rpartition("_")[0] in keep] + excluded,
        )

    def _sizes(self) -> dict[str, int]:
        return dict(Counter(record.patient_id for record in self.samples))

    def _split(self, val: Iterable[str]) -> Split:
        val = set(val)
        train = [pid for pid in self.patients if pid not in val]
        return Split(train=self.subset(patients=train), val=self.subset(patients=val))

    def folds(self, k: int, *, seed: int = 0) -> list[Split]:
        """``k`` train / validation splits by patient, for cross-validation.

        Each patient with samples is in exactly one fold's ``val`` (and in every
        other fold's ``train``); fold sizes are balanced by sample count
        (shuffle by ``seed``, then greedy; see :mod:`dicontour.splits`).
        Patients without samples go to ``train``.  Exclude flagged contours
        first: ``index.subset(exclude=[...]).folds(k)``.

        Raises
        ------
        ValueError
            ``k`` < 2 or more than the patients with samples.

        Examples
        --------
        >>> folds = dicontour.scan("final_data").folds(5, seed=0)      # doctest: +SKIP
        >>> [len(split.val) for split in folds]                        # doctest: +SKIP
        [20, 22, 18, 18, 18]
        """
        return [self._split(val) for val in assign_folds(self._sizes(), k, seed=seed)]

    def holdout(self, fraction: float, *, seed: int = 0) -> Split:
        """One train / validation split by patient, ``val`` holding about ``fraction`` of samples.

        Raises
        ------
        ValueError
            ``fraction`` not in (0, 1), or fewer than 2 patients with samples.

        Examples
        --------
        >>> split = dicontour.scan("final_data").holdout(0.2, seed=0)   # doctest: +SKIP
        >>> split.val.patients                                         # doctest: +SKIP
        """
        return self._split(choose_holdout(self._sizes(), fraction, seed=seed))

    def to_dict(self) -> dict[str, Any]:
        """``{"samples": [...], "problems": [...], "summary": {...}}``, JSON-ready."""
        return {
            "root": self.location.redacted(),
            "samples": [record.to_dict() for record in self.samples],
            "problems": [p.to_dict() for p in self.problems],
            "summary": self.summary,
        }


def _exclude(
    records: Sequence[SampleRecord], problems: Sequence[Problem], codes: Sequence[str]
) -> tuple[list[SampleRecord], list[Exclusion]]:
    """Drop the contours the problems of ``codes`` disqualify (see ``EXCLUDES``)."""
    drop: dict[tuple[str, int, str], tuple[str, str]] = {}  # (pid, slice, contour) -> why
    by_patient: dict[str, list[SampleRecord]] = {}
    for record in records:
        by_patient.setdefault(record.patient_id, []).append(record)
    for code in codes:
        removes = EXCLUDES[code][0]
        for found in problems:
            if found.code != code or found.patient_id not in by_patient:
                continue
            why = (code, f"{found.path}: {found.message}")
            for record in by_patient[found.patient_id]:
                if removes == "patient-o":
                    hits = ["o"]
                elif record.slice != found.slice:
                    continue
                elif removes == "slice":
                    hits = ["i", "o"]
                else:  # "contour": the file the problem names
                    hits = [
                        k
                        for k, p in (("i", record.i_contour), ("o", record.o_contour))
                        if p == found.path
                    ]
                for contour in hits:
                    drop.setdefault((record.patient_id, record.slice, contour), why)
    kept: list[SampleRecord] = []
    excluded: list[Exclusion] = []
    for record in records:
        paths = {"i": record.i_contour, "o": record.o_contour}
        for contour in ("i", "o"):
            dropped = drop.get((record.patient_id, record.slice, contour))
            if dropped is not None and paths[contour] is not None:
                paths[contour] = None
                excluded.append(Exclusion(record.case_id, contour, *dropped))
        if paths["i"] is None and paths["o"] is None:
            continue
        kept.append(replace(record, i_contour=paths["i"], o_contour=paths["o"]))
    return kept, excluded
