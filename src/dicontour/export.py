"""Export an Index to the formats training pipelines and viewers read.

=========== ===============================================================
format      what OUT holds
=========== ===============================================================
nnunet      ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``,
            ``dataset.json``, ``splits_final.json`` (nnU-Net v2 raw dataset)
monai       the same NIfTI files and ``datalist.json`` (Decathlon style,
            ``training`` items ``{"image", "label", "fold"}``)
dicom-seg   ``<patient_id>/<case>_seg.dcm``: DICOM Segmentation objects
rtstruct    ``link.csv``, ``contourfiles/<original_id>/<case>_rtstruct.dcm``
            and ``dicoms/<patient_id>/<n>.dcm`` (copies of the labelled images): a
            dataset that ``scan(OUT, contours=RtstructContours())`` reads
=========== ===============================================================

One case per labelled slice, its id :attr:`SampleRecord.case_id`.  The label
map (:func:`label_map`): 0 background, 1 myocardium (inside o, outside i),
2 blood pool (inside i), 3 ``ignore`` where the class is unknown: outside the
i-contour of a slice without an o-contour (background or myocardium?) and
inside the o-contour of a slice without an i-contour (myocardium or blood?).
See docs/export.md for why.

Every file is written atomically (a temporary file renamed over it), and
``OUT/.dicontour-export.json`` records the settings.  An export into a folder
that is not empty is refused, unless ``resume=True`` and the folder holds an
export with the same settings: then the files already there are kept and the
missing ones written.  Nothing else is ever mixed in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from .errors import DicontourError
from .index import Index, SampleRecord, load_sample, read_points
from .nifti import nifti_slice
from .rtstruct import structure_set
from .seg import segmentation
from .splits import write_splits
from .storage import TEMP_MARK, Location, location

FORMATS = ("nnunet", "monai", "dicom-seg", "rtstruct")
#: The nnU-Net label values; ``ignore`` is the highest, as nnU-Net requires.
LABELS = {"background": 0, "myocardium": 1, "blood_pool": 2, "ignore": 3}
MANIFEST = ".dicontour-export.json"  # a dot: the scan of an rtstruct export skips it
_VERSION = 1


class ExportError(DicontourError):
    """An export refused: OUT holds something else, or another export's settings."""


def label_map(i_mask: np.ndarray | None, o_mask: np.ndarray | None) -> np.ndarray:
    """The uint8 (H, W) label map of one slice (values in :data:`LABELS`).

    Parameters
    ----------
    i_mask, o_mask : bool ndarray of shape (H, W) or None
        The slice's masks; at least one.

    Examples
    --------
    >>> i = np.zeros((1, 5), bool); i[0, 2] = True
    >>> o = np.zeros((1, 5), bool); o[0, 1:4] = True
    >>> label_map(i, o)
    array([[0, 1, 2, 1, 0]], dtype=uint8)
    >>> label_map(i, None)
    array([[3, 3, 2, 3, 3]], dtype=uint8)
    >>> label_map(None, o)
    array([[0, 3, 3, 3, 0]], dtype=uint8)
    """
    if i_mask is None and o_mask is None:
        raise ValueError("a label map needs an i- or an o-mask")
    shape = (i_mask if i_mask is not None else o_mask).shape  # type: ignore[union-attr]
    labels = np.full(shape, LABELS["ignore"], dtype=np.uint8)
    if o_mask is not None:
        labels[~o_mask] = LABELS["background"]
        labels[o_mask] = LABELS["ignore"] if i_mask is None else LABELS["myocardium"]
    if i_mask is not None:
        labels[i_mask] = LABELS["blood_pool"]  # the i-contour wins where it leaks out of o
    return labels


@dataclass
class ExportReport:
    """What an export did.

    Attributes
    ----------
    format : str
    out : str
    cases : int
        Labelled slices exported.
    written, kept : list of str
        Files written now, and files a resumed export found complete.
    """

    format: str
    out: str
    cases: int
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (file lists as counts)."""
        return {
            "format": self.format,
            "out": self.out,
            "cases": self.cases,
            "written": len(self.written),
            "kept": len(self.kept),
        }


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it appears complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    location(path.parent).write_atomic(path.name, data)


def _json_bytes(document: Any) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _dataset_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = pydicom.filebase.DicomBytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class _Plan:
    """The files of one export, each a name and a function making its bytes."""

    def __init__(self) -> None:
        self.files: dict[str, Any] = {}

    def add(self, name: str, make: Any) -> None:
        if name in self.files:
            raise ValueError(f"two files of the export are named {name}")
        self.files[name] = make


def _settings(index: Index, fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "dicontour_export": _VERSION,
        "format": fmt,
        "root": index.location.redacted(),
        "options": options,
        "cases": [[r.case_id, r.dicom, r.i_contour, r.o_contour] for r in index.samples],
    }


def _check_out(out: Path, settings: dict[str, Any], plan: _Plan, resume: bool) -> None:
    """Refuse an OUT that holds anything but (with ``resume``) this same export."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out}: not a folder")
    present = [p for p in out.rglob("*") if p.is_file() or p.is_symlink()]
    if not present:
        return
    manifest = out / MANIFEST
    if not manifest.is_file():
        raise ExportError(
            f"{out}: not empty and not a dicontour export; choose an empty or new folder"
        )
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{manifest}: unreadable export manifest ({exc})") from exc
    if recorded != settings:
        differ = sorted(
            k for k in set(recorded) | set(settings) if recorded.get(k) != settings.get(k)
        )
        raise ExportError(
            f"{out}: holds an export with other settings ({', '.join(differ)} differ); "
            "choose an empty or new folder",
        )
    if not resume:
        raise ExportError(
            f"{out}: already holds this export; pass resume=True (--resume) to complete it, "
            "or choose an empty or new folder",
        )
    expected = set(plan.files) | {MANIFEST}
    for path in present:
        name = path.relative_to(out).as_posix()
        if path.name.startswith(".") and TEMP_MARK in path.name:
            path.unlink()  # a temporary of an interrupted run of this export
        elif name not in expected or path.is_symlink():
            raise ExportError(f"{out}: holds {name}, which this export does not write; not mixing")


def export(
    index: Index,
    out: str | os.PathLike[str],
    format: str,
    *,
    folds: int | None = 5,
    seed: int = 0,
    exclude: Iterable[str] = (),
    resume: bool = False,
) -> ExportReport:
    """Export the labelled slices of ``index`` to ``out`` in ``format``.

    Parameters
    ----------
    index : Index
        From :func:`dicontour.scan`.
    out : path
        The output folder: new, empty, or (``resume``) an unfinished export
        with the same settings.
    format : {"nnunet", "monai", "dicom-seg", "rtstruct"}
        See the module docstring.
    folds : int or None
        Patient folds for ``splits_final.json`` (nnunet) and the datalist's
        ``fold`` key (monai), by :meth:`Index.folds`; None for none.
    seed : int
        The folds' seed.
    exclude : iterable of str
        Problem codes whose contours to leave out (:meth:`Index.subset`).
    resume : bool
        Complete an export of the same settings in ``out``.

    Returns
    -------
    ExportReport

    Raises
    ------
    ExportError
        ``out`` is not empty and not this export (or not ``resume``).
    ValueError
        An unknown format or excluded code, more folds than patients.
    DicomError, ContourError
        A file that became unreadable since the scan.

    Examples
    --------
    >>> index = dicontour.scan("final_data")                        # doctest: +SKIP
    >>> export(index, "Dataset501_Sunnybrook", "nnunet")            # doctest: +SKIP
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; formats: {', '.join(FORMATS)}")
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    index = index.subset(exclude=exclude)
    if not len(index):
        raise ValueError("nothing to export: the index has no labelled slice")
    options: dict[str, Any] = {"exclude": exclude}
    splits = None
    if format in ("nnunet", "monai") and folds is not None:
        splits = index.folds(folds, seed=seed)
        options.update(folds=folds, seed=seed)
    plan = _Plan()
    if format in ("nnunet", "monai"):
        _plan_nifti(plan, index, format, splits)
    elif format == "dicom-seg":
        _plan_seg(plan, index)
    else:
        _plan_rtstruct(plan, index)
    settings = _settings(index, format, options)
    target = Path(out)
    _check_out(target, settings, plan, resume)
    report = ExportReport(format, str(target), len(index))
    manifest = {"settings": settings, "complete": False}
    write_atomic(target / MANIFEST, _json_bytes(manifest))
    for name, make in plan.files.items():
        path = target / name
        if path.is_file():
            report.kept.append(name)
            continue
        data = make()
        if isinstance(data, _Copied):  # an image to place beside the contours
            _copy(data, path)
        else:
            write_atomic(path, data)
        report.written.append(name)
    manifest["complete"] = True
    manifest["files"] = sorted(plan.files)
    write_atomic(target / MANIFEST, _json_bytes(manifest))
    return report


@dataclass(frozen=True)
class _Copied:
    """A file of the dataset copied unchanged into the export (streamed, not held)."""

    where: Location
    relative: str


def _copy(source: _Copied, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically (a copy, not a link: editing the
    exported dataset must never change the source).  Read through the root's
    :class:`~dicontour.storage.Location`: its rules on links and non-regular
    files apply, and a remote root works as a local one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        location(target.parent).staged(target.name) as out,
        source.where.open(source.relative) as read,
    ):
        shutil.copyfileobj(read, out)


# ------------------------------------------------------------------ nnU-Net and MONAI


def _plan_nifti(plan: _Plan, index: Index, fmt: str, splits: Sequence[Any] | None) -> None:
    where = index.location
    for record in index.samples:

        def image(record: SampleRecord = record) -> bytes:
            loaded = load_sample(where, record)
            return nifti_slice(loaded.image, record.header, dtype=np.float32)

        def label(record: SampleRecord = record) -> bytes:
            loaded = load_sample(where, record)
            labels = label_map(loaded.i_mask, loaded.o_mask)
            return nifti_slice(labels, record.header, dtype=np.uint8)

        plan.add(f"imagesTr/{record.case_id}_0000.nii.gz", image)
        plan.add(f"labelsTr/{record.case_id}.nii.gz", label)
    fold_of = {}
    for k, split in enumerate(splits or []):
        for record in split.val:
            fold_of[record.case_id] = k
    if fmt == "nnunet":
        dataset = {
            "channel_names": {"0": "MRI"},
            "labels": dict(LABELS),
            "numTraining": len(index),
            "file_ending": ".nii.gz",
            "name": "dicontour export",
            "description": "LV blood pool and myocardium from dicontour; label 3 marks "
            "pixels whose class is unknown (nnU-Net's ignore label)",
        }
        plan.add("dataset.json", lambda: _json_bytes(dataset))
        if splits is not None:
            plan.add("splits_final.json", lambda: _splits_bytes(splits))
    else:
        datalist = {
            "name": "dicontour export",
            "labels": {str(v): k for k, v in LABELS.items()},
            "training": [
                {
                    "image": f"imagesTr/{r.case_id}_0000.nii.gz",
                    "label": f"labelsTr/{r.case_id}.nii.gz",
                    "fold": fold_of.get(r.case_id, -1),
                    "case_id": r.case_id,
                    "patient_id": r.patient_id,
                }
                for r in index.samples
            ],
        }
        plan.add("datalist.json", lambda: _json_bytes(datalist))


def _splits_bytes(splits: Sequence[Any]) -> bytes:
    # write_splits validates the document and writes it; reuse its validation here.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "splits_final.json"
        write_splits(path, splits)
        return path.read_bytes()


# ------------------------------------------------------------------ DICOM-SEG, RTSTRUCT


def _groups(index: Index, key: Any) -> list[list[SampleRecord]]:
    """Records grouped by ``key(record)``, in index order, per patient."""
    groups: dict[Any, list[SampleRecord]] = {}
    for record in index.samples:
        groups.setdefault((record.patient_id, key(record)), []).append(record)
    return list(groups.values())


def _kinds(record: SampleRecord) -> tuple[str, ...]:
    return tuple(k for k, p in (("i", record.i_contour), ("o", record.o_contour)) if p)


def _source(index: Index, record: SampleRecord) -> pydicom.Dataset:
    with index.location.open(record.dicom) as handle:
        return pydicom.dcmread(handle, stop_before_pixels=True)


def _one_per_plane(group: list[SampleRecord]) -> list[list[SampleRecord]]:
    """Split a group so that no part holds two images at one position (cine phases).

    highdicom refuses a SEG with two frames at the same plane position.
    """
    parts: list[tuple[set[Any], list[SampleRecord]]] = []
    for record in group:
        position = record.header.image_position
        for seen, part in parts:
            if position is None or position not in seen:
                seen.add(position)
                part.append(record)
                break
        else:
            parts.append(({position}, [record]))
    return [part for _, part in parts]


def _plan_seg(plan: _Plan, index: Index) -> None:
    def key(record: SampleRecord) -> tuple[Any, ...]:
        h = record.header
        return (h.series_instance_uid, h.frame_of_reference_uid, _kinds(record))

    for group in (part for whole in _groups(index, key) for part in _one_per_plane(whole)):

        def make(group: list[SampleRecord] = group) -> bytes:
            sources = [_source(index, r) for r in group]
            masks = []
            for record in group:
                sample = load_sample(index.location, record)
                masks.append({k: getattr(sample, f"{k}_mask") for k in _kinds(record)})
            return _dataset_bytes(segmentation(sources, masks))

        plan.add(f"{group[0].patient_id}/{group[0].case_id}_seg.dcm", make)


def _plan_rtstruct(plan: _Plan, index: Index) -> None:
    originals = {r.patient_id: r.original_id for r in index.samples}
    rows = "patient_id,original_id\n" + "".join(f"{p},{o}\n" for p, o in originals.items())
    plan.add("link.csv", lambda: rows.encode("utf-8"))

    def key(record: SampleRecord) -> tuple[Any, ...]:
        return (record.header.study_instance_uid, record.header.frame_of_reference_uid)

    for group in _groups(index, key):

        def make(group: list[SampleRecord] = group) -> bytes:
            sources = [_source(index, r) for r in group]
            contours = [
                {k: read_points(index.location, getattr(r, f"{k}_contour")) for k in _kinds(r)}
                for r in group
            ]
            return _dataset_bytes(structure_set(sources, [r.header for r in group], contours))

        first = group[0]
        plan.add(f"contourfiles/{first.original_id}/{first.case_id}_rtstruct.dcm", make)
    for record in index.samples:
        plan.add(record.dicom, lambda record=record: _Copied(index.location, record.dicom))
