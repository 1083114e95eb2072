"""Patient-level splits: k folds, a hold-out, and nnU-Net's ``splits_final.json``.

Slices of one patient are near copies of each other (same heart, same scanner,
neighbouring phases), so a split that puts one patient on both sides leaks:
every split here assigns whole patients.  The functions take the number of
samples of each patient and return patient ids; :meth:`dicontour.Index.folds`
and :meth:`dicontour.Index.holdout` turn them into sub-indexes.

The k-fold assignment
---------------------
1. Sort the patient ids, then shuffle them with ``numpy.random.default_rng(seed)``
   (sorting first makes the result independent of link.csv's row order).
2. Walk the shuffled list and give each patient to the fold holding the fewest
   samples so far (ties: the fold with fewer patients, then the lower number).
3. Then, while moving one patient from the fold with the most samples to the
   one with the fewest, or swapping one patient between them, narrows their
   gap, make the change that narrows it most.  (Step 2 alone can leave a large
   patient drawn late on top of an already full fold.)

Every patient lands in exactly one validation fold; the first k patients go
to k different (empty) folds and step 3 never empties one, so no fold is
empty; and the largest fold exceeds the smallest by at most the largest
patient's sample count.  The seed decides the starting order, hence which
patients share a fold.

Splits files
------------
The format of nnU-Net's ``splits_final.json``: a JSON list with one
``{"train": [case ids], "val": [case ids]}`` per fold, a case id being
``<patient_id>_<slice:04d>`` (:attr:`dicontour.SampleRecord.case_id`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SplitsError
from .storage import location


def _shuffled(sizes: Mapping[str, int], seed: int) -> list[str]:
    """The patients with at least one sample, sorted then shuffled by ``seed``."""
    patients = sorted(p for p, n in sizes.items() if n > 0)
    order = np.random.default_rng(seed).permutation(len(patients))
    return [patients[k] for k in order]


def assign_folds(sizes: Mapping[str, int], k: int, *, seed: int = 0) -> list[list[str]]:
    """Give each patient one of ``k`` validation folds, balancing sample counts.

    Parameters
    ----------
    sizes : mapping of str to int
        Patient id -> number of samples; patients with none are left out.
    k : int
        Number of folds, at least 2 and at most the number of patients.
    seed : int
        Seeds the shuffle (see the module docstring for the algorithm).

    Returns
    -------
    list of list of str
        Fold f's validation patients, in the order they were assigned.

    Raises
    ------
    ValueError
        ``k`` < 2, or more folds than patients with samples.

    Examples
    --------
    >>> assign_folds({"A": 10, "B": 10, "C": 5, "D": 5}, 2, seed=0)
    [['C', 'B'], ['A', 'D']]
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"k must be an integer of at least 2; got {k!r}")
    patients = _shuffled(sizes, seed)
    if k > len(patients):
        raise ValueError(
            f"cannot make {k} folds from {len(patients)} patients with samples: "
            "every fold needs at least one patient of its own"
        )
    folds: list[list[str]] = [[] for _ in range(k)]
    totals = [0] * k
    for patient in patients:
        f = min(range(k), key=lambda j: (totals[j], len(folds[j]), j))
        folds[f].append(patient)
        totals[f] += sizes[patient]
    while _rebalance(folds, totals, sizes):
        pass
    return folds


def _rebalance(folds: list[list[str]], totals: list[int], sizes: Mapping[str, int]) -> bool:
    """Narrow the gap between the heaviest and lightest fold by one move or swap, if any does.

    Moving samples worth d from the heavy fold to the light one narrows a gap g
    when 0 < d < g, most when d is nearest g / 2.  Each change lowers the sum of
    squared fold totals, so the loop calling this ends.
    """
    heavy = max(range(len(folds)), key=lambda j: (totals[j], -j))
    light = min(range(len(folds)), key=lambda j: (totals[j], j))
    gap = totals[heavy] - totals[light]
    best: tuple[float, int, int] | None = None  # (distance from gap / 2, i in heavy, j in light)
    for i, patient in enumerate(folds[heavy]):
        moves = [(sizes[patient], -1)] if len(folds[heavy]) > 1 else []
        moves += [(sizes[patient] - sizes[other], j) for j, other in enumerate(folds[light])]
        for d, j in moves:
            if 0 < d < gap and (best is None or abs(d - gap / 2) < best[0]):
                best = (abs(d - gap / 2), i, j)
    if best is None:
        return False
    _, i, j = best
    patient = folds[heavy].pop(i)
    folds[light].append(patient)
    totals[heavy] -= sizes[patient]
    totals[light] += sizes[patient]
    if j >= 0:
        other = folds[light].pop(j)
        folds[heavy].append(other)
        totals[light] -= sizes[other]
        totals[heavy] += sizes[other]
    return True


def choose_holdout(sizes: Mapping[str, int], fraction: float, *, seed: int = 0) -> list[str]:
    """The validation patients of a hold-out split holding about ``fraction`` of the samples.

    Walks the shuffled patients (sorted, then shuffled by ``seed``) and takes
    each one whose samples bring the validation side closer to
    ``fraction`` x the total; both sides always keep at least one patient.

    Raises
    ------
    ValueError
        ``fraction`` not strictly between 0 and 1, or fewer than 2 patients with samples.

    Examples
    --------
    >>> choose_holdout({"A": 10, "B": 10, "C": 5, "D": 5}, 0.2, seed=0)
    ['C']
    """
    if not isinstance(fraction, int | float | np.floating) or not 0 < fraction < 1:
        raise ValueError(f"fraction must be a number between 0 and 1 (exclusive); got {fraction!r}")
    patients = _shuffled(sizes, seed)
    if len(patients) < 2:
        raise ValueError(
            f"a hold-out split needs at least 2 patients with samples; got {len(patients)}"
        )
    target = fraction * sum(sizes[p] for p in patients)
    val: list[str] = []
    taken = 0
    for patient in patients:
        if abs(taken + sizes[patient] - target) < abs(taken - target):
            val.append(patient)
            taken += sizes[patient]
    if not val:
        val.append(patients[0])
    if len(val) == len(patients):
        val.pop()
    return val


def _check_splits(document: Any, name: str) -> list[dict[str, list[str]]]:
    """``document`` as a list of {"train": [...], "val": [...]}, or SplitsError naming ``name``."""
    if not isinstance(document, list):
        raise SplitsError(f"{name}: expected a JSON list of folds; got {type(document).__name__}")
    folds = []
    for f, fold in enumerate(document):
        if not isinstance(fold, dict) or set(fold) != {"train", "val"}:
            keys = sorted(fold) if isinstance(fold, dict) else type(fold).__name__
            raise SplitsError(f"{name}: fold {f} must have exactly 'train' and 'val'; got {keys}")
        for side in ("train", "val"):
            cases = fold[side]
            if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
                raise SplitsError(f"{name}: fold {f} {side!r} must be a list of case id strings")
        overlap = sorted(set(fold["train"]) & set(fold["val"]))
        if overlap:
            raise SplitsError(
                f"{name}: fold {f} has {len(overlap)} case(s) on both sides, e.g. {overlap[:3]}"
            )
        folds.append({"train": list(fold["train"]), "val": list(fold["val"])})
    return folds


def write_splits(path: str | os.PathLike[str], splits: Sequence[Any]) -> list[dict[str, list[str]]]:
    """Write ``splits`` as a ``splits_final.json`` file, atomically.

    Parameters
    ----------
    path : path
        The file to write; it appears complete or not at all (a temporary file
        in the same folder is renamed over it).
    splits : sequence
        :class:`dicontour.Split` objects or ``{"train": [...], "val": [...]}`` dicts.

    Returns
    -------
    list of dict
        What was written.

    Examples
    --------
    >>> index = dicontour.scan("final_data")                          # doctest: +SKIP
    >>> dicontour.write_splits("splits_final.json", index.folds(5))   # doctest: +SKIP
    """
    target = Path(path)
    document = _check_splits(
        [s.to_dict() if hasattr(s, "to_dict") else s for s in splits], str(target)
    )
    text = json.dumps(document, indent=2) + "\n"
    location(target.parent).write_atomic(target.name, text.encode("utf-8"))
    return document


def read_splits(path: str | os.PathLike[str]) -> list[dict[str, list[str]]]:
    """Read a ``splits_final.json`` file: one ``{"train": [...], "val": [...]}`` per fold.

    Raises
    ------
    SplitsError
        The file is not JSON or not in that shape (the message names the file).
    OSError
        The file cannot be read.

    Examples
    --------
    >>> splits = dicontour.read_splits("splits_final.json")     # doctest: +SKIP
    >>> train = index.subset(cases=splits[0]["train"])           # doctest: +SKIP
    """
    name = os.fspath(path)
    text = Path(path).read_bytes()
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SplitsError(f"{name}: not a JSON file ({exc})") from exc
    return _check_splits(document, name)
