"""Score the heuristic segmentation methods, and tune them leave-one-patient-out.

Nouns
-----
``LabelledSlice``
    One slice with both contours, loaded: image, i-mask, o-mask.
``Evaluation``
    One method with fixed parameters scored on slices: Dice and IoU per slice
    and per patient; :meth:`Evaluation.to_dict` is the document that
    ``dicontour segment --json`` prints.
``StudyResult``
    For one method: the parameters tuned on all tuning patients and the
    in-sample scores, beside the held-out scores of leave-one-patient-out
    (tune on all patients but one, score that one).

Which patients are tuned on is decided from the data: the *well-aligned*
patients are those with slices carrying both contours and no
``contours-misaligned`` problem in the scan (see :mod:`dicontour.qa.checks`).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from ..index import Index
from .metrics import dice, iou
from .segment import DEFAULT_METHOD, MethodSpec, get_method


class _OfPatient(Protocol):
    @property
    def patient_id(self) -> str: ...


P = TypeVar("P", bound=_OfPatient)


def group_by_patient(items: Iterable[P]) -> dict[str, list[P]]:
    """``items`` by their ``patient_id``: patients in order of first appearance, items in order.

    Examples
    --------
    >>> from types import SimpleNamespace as S
    >>> groups = group_by_patient([S(patient_id="b"), S(patient_id="a"), S(patient_id="b")])
    >>> {pid: len(items) for pid, items in groups.items()}
    {'b': 2, 'a': 1}
    """
    groups: dict[str, list[P]] = defaultdict(list)
    for item in items:
        groups[item.patient_id].append(item)
    return dict(groups)


@dataclass(frozen=True)
class LabelledSlice:
    """One slice with both contours, loaded.

    Attributes
    ----------
    patient_id : str
    slice : int
    image : float32 ndarray of shape (H, W)
    i_mask, o_mask : bool ndarray of shape (H, W)
    """

    patient_id: str
    slice: int
    image: np.ndarray
    i_mask: np.ndarray
    o_mask: np.ndarray


def load_labelled(index: Index, patients: Iterable[str] | None = None) -> list[LabelledSlice]:
    """Load every slice with both contours (of ``patients``, or of all patients).

    Examples
    --------
    >>> slices = load_labelled(dicontour.scan("final_data"))    # doctest: +SKIP
    >>> len(slices)                                             # doctest: +SKIP
    46
    """
    wanted = None if patients is None else set(patients)
    found = []
    for k in index.select("both"):
        if wanted is not None and index[k].patient_id not in wanted:
            continue
        sample = index.load(k)
        found.append(
            LabelledSlice(
                sample.patient_id,
                sample.slice,
                sample.image,
                sample.mask("i"),
                sample.mask("o"),
            )
        )
    return found


def well_aligned_patients(index: Index) -> list[str]:
    """Patients with both-contour slices and no ``contours-misaligned`` problem, in order.

    The rule is the scan's own (most of a patient's slices with the i-contour
    poking out of the o-contour), so no patient is named in code.
    """
    misaligned = {p.patient_id for p in index.problems if p.code == "contours-misaligned"}
    order = dict.fromkeys(index[k].patient_id for k in index.select("both"))
    return [pid for pid in order if pid not in misaligned]


@dataclass(frozen=True)
class SliceScore:
    """Dice and IoU of one slice's prediction against its i-mask."""

    patient_id: str
    slice: int
    dice: float
    iou: float
    predicted_area: int
    true_area: int

    def to_dict(self) -> dict[str, Any]:
        """The four keys of the ``--json`` document's ``slices`` entries (not the areas)."""
        return {key: getattr(self, key) for key in ("patient_id", "slice", "dice", "iou")}


@dataclass(frozen=True)
class Evaluation:
    """One method, fixed parameters, scored slice by slice."""

    method: str
    params: dict[str, Any]
    slices: tuple[SliceScore, ...]

    def patients(self) -> dict[str, dict[str, Any]]:
        """patient_id -> ``{"dice": mean, "iou": mean, "slices": n}``, in slice order."""
        return {
            pid: {
                "dice": float(np.mean([s.dice for s in scores])),
                "iou": float(np.mean([s.iou for s in scores])),
                "slices": len(scores),
            }
            for pid, scores in group_by_patient(self.slices).items()
        }

    def to_dict(self) -> dict[str, Any]:
        """``{"method", "patients": {pid: {"dice", "iou", "slices"}}, "slices": [...]}``."""
        return {
            "method": self.method,
            "patients": self.patients(),
            "slices": [score.to_dict() for score in self.slices],
        }


def score_slice(item: LabelledSlice, prediction: np.ndarray) -> SliceScore:
    """Dice and IoU of ``prediction`` against the slice's i-mask."""
    return SliceScore(
        item.patient_id,
        item.slice,
        dice(prediction, item.i_mask),
        iou(prediction, item.i_mask),
        int(prediction.sum()),
        int(item.i_mask.sum()),
    )


def evaluate(
    slices: Sequence[LabelledSlice], method: str = DEFAULT_METHOD, **params: Any
) -> Evaluation:
    """Segment every slice with ``method`` and score it against its i-contour.

    Parameters
    ----------
    slices : sequence of LabelledSlice
    method : str
        A name in :data:`dicontour.qa.segment.METHODS`.
    **params
        Overrides of the method's defaults.

    Returns
    -------
    Evaluation

    Examples
    --------
    >>> result = evaluate(load_labelled(index), "otsu")        # doctest: +SKIP
    >>> result.patients()["SCD0000101"]["dice"]                # doctest: +SKIP
    0.83...
    """
    spec = get_method(method)
    scores = tuple(score_slice(item, spec(item.image, item.o_mask, **params)) for item in slices)
    return Evaluation(spec.name, {**spec.defaults, **params}, scores)


@dataclass(frozen=True)
class PatientStudy:
    """One patient's scores in a leave-one-patient-out study.

    Attributes
    ----------
    patient_id : str
    slices : int
    in_sample_dice, in_sample_iou : float
        Mean scores with the parameters tuned on every tuning patient, this one included.
    held_out_dice, held_out_iou : float
        Mean scores with the parameters tuned on the other patients only.
    held_out_params : dict
        The parameters the other patients chose.
    """

    patient_id: str
    slices: int
    in_sample_dice: float
    in_sample_iou: float
    held_out_dice: float
    held_out_iou: float
    held_out_params: dict[str, Any]


@dataclass(frozen=True)
class StudyResult:
    """A method tuned leave-one-patient-out; see :func:`leave_one_patient_out`."""

    method: str
    params: dict[str, Any]
    patients: tuple[PatientStudy, ...]
    grid_size: int

    def mean(self, column: str) -> float:
        """Mean over patients of ``in_sample_dice``, ``held_out_dice``, ... (each patient once)."""
        return float(np.mean([getattr(p, column) for p in self.patients]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the method, its tuned parameters and the per-patient rows."""
        return {
            "method": self.method,
            "params": self.params,
            "grid_size": self.grid_size,
            "patients": {
                p.patient_id: {
                    "slices": p.slices,
                    "in_sample": {"dice": p.in_sample_dice, "iou": p.in_sample_iou},
                    "held_out": {"dice": p.held_out_dice, "iou": p.held_out_iou},
                    "held_out_params": p.held_out_params,
                }
                for p in self.patients
            },
        }


def _grid_scores(
    spec: MethodSpec, slices: Sequence[LabelledSlice], *, progress: bool = False
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Dice and IoU of every slice for every grid point: arrays (combos, slices)."""
    combos = spec.combinations()
    dices = np.empty((len(combos), len(slices)))
    ious = np.empty_like(dices)
    steps: Iterable[tuple[int, int]] = itertools.product(range(len(combos)), range(len(slices)))
    if progress:
        from tqdm import tqdm  # not a cycle: only when a bar is shown (slow to import)

        steps = tqdm(steps, total=dices.size, desc=f"study {spec.name}", unit="slice", leave=False)
    for c, s in steps:
        item = slices[s]
        prediction = spec(item.image, item.o_mask, **combos[c])
        dices[c, s] = dice(prediction, item.i_mask)
        ious[c, s] = iou(prediction, item.i_mask)
    return combos, dices, ious


def _choose(dices: np.ndarray, groups: dict[str, np.ndarray], patients: Iterable[str]) -> int:
    """The grid point with the best mean over ``patients`` of each patient's mean Dice.

    Each patient weighs the same whatever its slice count; the first grid
    point wins ties, so the choice is deterministic.
    """
    per_patient = np.stack([dices[:, groups[pid]].mean(axis=1) for pid in patients], axis=1)
    return int(np.argmax(per_patient.mean(axis=1)))


def leave_one_patient_out(
    slices: Sequence[LabelledSlice], method: str, *, progress: bool = False
) -> StudyResult:
    """Tune ``method``'s parameters on all patients but one, score that one, for each.

    Every grid point of the method is scored once on every slice; then, for
    each patient, the point with the best patient-balanced mean Dice on the
    *other* patients is applied to it (held-out score), and the point best on
    *all* patients gives the in-sample scores and :attr:`StudyResult.params`.

    Parameters
    ----------
    slices : sequence of LabelledSlice
        The tuning slices, from at least two patients (usually the
        well-aligned ones: :func:`well_aligned_patients`).
    method : str
    progress : bool
        Show a tqdm progress bar on stderr over the grid (every parameter
        combination on every slice), the study's slow part.

    Returns
    -------
    StudyResult

    Raises
    ------
    ValueError
        Fewer than two patients.

    Examples
    --------
    >>> index = dicontour.scan("final_data")                           # doctest: +SKIP
    >>> slices = load_labelled(index, well_aligned_patients(index))    # doctest: +SKIP
    >>> leave_one_patient_out(slices, "hull").mean("held_out_dice")    # doctest: +SKIP
    0.93...
    """
    spec = get_method(method)
    groups_list: dict[str, list[int]] = defaultdict(list)
    for s, item in enumerate(slices):
        groups_list[item.patient_id].append(s)
    if len(groups_list) < 2:
        raise ValueError(
            f"leave-one-patient-out needs slices of at least 2 patients; got {sorted(groups_list)}"
        )
    groups = {pid: np.array(members) for pid, members in groups_list.items()}
    combos, dices, ious = _grid_scores(spec, slices, progress=progress)
    everyone = list(groups)
    best = _choose(dices, groups, everyone)
    rows = []
    for pid, members in groups.items():
        chosen = _choose(dices, groups, [other for other in everyone if other != pid])
        rows.append(
            PatientStudy(
                patient_id=pid,
                slices=len(members),
                in_sample_dice=float(dices[best, members].mean()),
                in_sample_iou=float(ious[best, members].mean()),
                held_out_dice=float(dices[chosen, members].mean()),
                held_out_iou=float(ious[chosen, members].mean()),
                held_out_params={**spec.defaults, **combos[chosen]},
            )
        )
    return StudyResult(spec.name, {**spec.defaults, **combos[best]}, tuple(rows), len(combos))
