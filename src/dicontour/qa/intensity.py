"""Intensity study: blood pool (inside i) against myocardium (between i and o).

For every slice with both contours, and pooled per patient: the two
distributions' summaries and how much they overlap:

``auc``
    Probability that a random blood-pool pixel is brighter than a random
    myocardium pixel (ties count half); 1.0 means a threshold separates them.
``overlap``
    Overlap coefficient of the two normalised histograms (64 common bins):
    the shared area, 0 for disjoint, 1 for identical.
``oracle_dice``
    The best Dice against the i-mask that any single threshold inside the
    o-mask can reach, knowing the answer: the ceiling of pure thresholding.
``oracle_threshold``
    That threshold.
``otsu_dice``
    Dice of Otsu's threshold inside the o-mask, without any clean-up.

:func:`write_intensity_report` adds histograms (matplotlib, PNG) per
patient, one panel per slice and one pooled, and CSV/JSON tables.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._asdict import AsDict
from ._optional import new_figure, require, save_figure
from .metrics import dice
from .study import LabelledSlice, group_by_patient
from .threshold import otsu_threshold

HISTOGRAM_BINS = 64


@dataclass(frozen=True)
class IntensityStats(AsDict):
    """Blood pool against myocardium for one slice, or one patient pooled.

    Attributes
    ----------
    patient_id : str
    slice : int or None
        None for a patient's pooled row.
    blood_pixels, myo_pixels : int
    blood_mean, blood_sd, blood_median, myo_mean, myo_sd, myo_median : float
    auc, overlap : float
        See the module docs.
    oracle_dice, oracle_threshold, otsu_dice : float
        Per slice; for a pooled row, the means over the patient's slices.
    """

    patient_id: str
    slice: int | None
    blood_pixels: int
    myo_pixels: int
    blood_mean: float
    blood_sd: float
    blood_median: float
    myo_mean: float
    myo_sd: float
    myo_median: float
    auc: float
    overlap: float
    oracle_dice: float
    oracle_threshold: float
    otsu_dice: float


def separation_auc(bright: np.ndarray, dark: np.ndarray) -> float:
    """P(random ``bright`` value > random ``dark`` value), ties counting half.

    The Mann-Whitney U statistic over the product of the sizes.

    Examples
    --------
    >>> separation_auc(np.array([3.0, 4.0]), np.array([1.0, 3.0]))   # (1 + .5 + 1 + 1) / 4
    0.875
    """
    bright = np.asarray(bright, dtype=np.float64).ravel()
    dark = np.asarray(dark, dtype=np.float64).ravel()
    if bright.size == 0 or dark.size == 0:
        return float("nan")
    ranks = require("scipy.stats").rankdata(np.concatenate([bright, dark]))
    u = ranks[: bright.size].sum() - bright.size * (bright.size + 1) / 2
    return float(u / (bright.size * dark.size))


def histogram_overlap(a: np.ndarray, b: np.ndarray, bins: int = HISTOGRAM_BINS) -> float:
    """Shared area of the normalised histograms of ``a`` and ``b`` over common bins.

    Examples
    --------
    >>> histogram_overlap(np.array([0.0, 1.0]), np.array([2.0, 3.0]), bins=4)
    0.0
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return float("nan")
    low, high = min(a.min(), b.min()), max(a.max(), b.max())
    if high == low:
        return 1.0
    edges = np.linspace(low, high, bins + 1)
    pa = np.histogram(a, edges)[0] / a.size
    pb = np.histogram(b, edges)[0] / b.size
    return float(np.minimum(pa, pb).sum())


def oracle_threshold(
    image: np.ndarray, i_mask: np.ndarray, o_mask: np.ndarray
) -> tuple[float, float]:
    """The threshold inside the o-mask whose bright pixels best match the i-mask.

    Parameters
    ----------
    image : float ndarray of shape (H, W)
    i_mask, o_mask : bool ndarray of shape (H, W)

    Returns
    -------
    (dice, threshold) : (float, float)
        The best Dice of ``o_mask & (image > threshold)`` against ``i_mask``
        over every threshold, and the threshold (halfway between the two
        intensities it separates).

    Examples
    --------
    >>> image = np.array([[1.0, 5.0, 9.0, 9.0]])
    >>> i_mask = np.array([[False, False, True, True]])
    >>> oracle_threshold(image, i_mask, np.ones((1, 4), bool))
    (1.0, 7.0)
    """
    values = np.asarray(image, dtype=np.float64)[o_mask]
    truth = np.asarray(i_mask, dtype=bool)[o_mask]
    total_truth = int(np.asarray(i_mask, dtype=bool).sum())
    if values.size == 0:
        return (1.0 if total_truth == 0 else 0.0), float("nan")
    order = np.argsort(-values, kind="stable")
    ranked, hits = values[order], np.cumsum(truth[order])
    # Only cuts between two different values are thresholds: the last index of each run.
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    predicted = ends + 1
    scores = 2.0 * hits[ends] / (predicted + total_truth)
    best = int(np.argmax(scores))
    cut = ends[best]
    below = ranked[cut + 1] if cut + 1 < ranked.size else ranked[cut] - 1.0
    return float(scores[best]), float((ranked[cut] + below) / 2)


def _describe(values: np.ndarray) -> tuple[float, float, float]:
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    return float(values.mean()), float(values.std()), float(np.median(values))


def _regions(item: LabelledSlice) -> tuple[np.ndarray, np.ndarray]:
    """(blood pool, myocardium) intensities of a slice, float64: inside i, and in o but not i."""
    image = item.image
    return (
        image[item.i_mask].astype(np.float64),
        image[item.o_mask & ~item.i_mask].astype(np.float64),
    )


def slice_stats(item: LabelledSlice) -> IntensityStats:
    """:class:`IntensityStats` of one slice with both contours."""
    image = item.image.astype(np.float64)
    blood, myo = _regions(item)
    inside = image[item.o_mask]
    best, threshold = oracle_threshold(image, item.i_mask, item.o_mask)
    otsu_mask = item.o_mask & (image > otsu_threshold(inside)) if inside.size else item.o_mask
    return IntensityStats(
        item.patient_id,
        item.slice,
        int(blood.size),
        int(myo.size),
        *_describe(blood),
        *_describe(myo),
        separation_auc(blood, myo),
        histogram_overlap(blood, myo),
        best,
        threshold,
        dice(otsu_mask, item.i_mask),
    )


def patient_stats(
    items: Sequence[LabelledSlice], per_slice: Sequence[IntensityStats]
) -> IntensityStats:
    """Pooled :class:`IntensityStats` of one patient's slices (raw intensities pooled)."""
    regions = [_regions(item) for item in items]
    blood = np.concatenate([b for b, _ in regions])
    myo = np.concatenate([m for _, m in regions])
    return IntensityStats(
        items[0].patient_id,
        None,
        int(blood.size),
        int(myo.size),
        *_describe(blood),
        *_describe(myo),
        separation_auc(blood, myo),
        histogram_overlap(blood, myo),
        float(np.mean([s.oracle_dice for s in per_slice])),
        float(np.mean([s.oracle_threshold for s in per_slice])),
        float(np.mean([s.otsu_dice for s in per_slice])),
    )


@dataclass(frozen=True)
class IntensityStudy:
    """Per-slice and pooled per-patient statistics."""

    slices: tuple[IntensityStats, ...]
    patients: tuple[IntensityStats, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{"patients": {id: {...}}, "slices": [{...}, ...]}``, JSON-ready."""
        return {
            "patients": {p.patient_id: p.to_dict() for p in self.patients},
            "slices": [s.to_dict() for s in self.slices],
        }


def intensity_study(slices: Sequence[LabelledSlice]) -> IntensityStudy:
    """Blood pool against myocardium for every slice, and pooled per patient.

    Examples
    --------
    >>> study = intensity_study(load_labelled(index))         # doctest: +SKIP
    >>> study.patients[0].auc                                 # doctest: +SKIP
    0.97...
    """
    per_slice = []
    pooled = []
    for items in group_by_patient(slices).values():
        mine = [slice_stats(item) for item in items]
        per_slice.extend(mine)
        pooled.append(patient_stats(items, mine))
    return IntensityStudy(tuple(per_slice), tuple(pooled))


_COLUMNS = [
    "patient_id",
    "slice",
    "blood_pixels",
    "myo_pixels",
    "blood_mean",
    "blood_sd",
    "blood_median",
    "myo_mean",
    "myo_sd",
    "myo_median",
    "auc",
    "overlap",
    "oracle_dice",
    "oracle_threshold",
    "otsu_dice",
]


def _write_csv(path: Path, rows: Sequence[IntensityStats]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_COLUMNS)
        for row in rows:
            values = row.to_dict()
            writer.writerow(
                [
                    f"{values[c]:.6g}" if isinstance(values[c], float) else values[c]
                    for c in _COLUMNS
                ]
            )
    return path


def _histogram_panel(
    axes: Any, blood: np.ndarray, myo: np.ndarray, title: str, cut: float | None = None
) -> None:
    low = min(blood.min(initial=np.inf), myo.min(initial=np.inf))
    high = max(blood.max(initial=-np.inf), myo.max(initial=-np.inf))
    if not np.isfinite(low) or high <= low:
        low, high = 0.0, 1.0
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    for values, colour, label in ((blood, "#d62728", "blood pool"), (myo, "#1f77b4", "myocardium")):
        if values.size:
            axes.hist(
                values,
                bins=edges,
                density=True,
                histtype="stepfilled",
                alpha=0.45,
                color=colour,
                label=label,
            )
    if cut is not None and np.isfinite(cut):
        axes.axvline(cut, color="k", linewidth=0.8, linestyle="--")
    axes.set_title(title, fontsize=7)
    axes.tick_params(labelsize=6)
    axes.set_yticks([])


def histogram_figure(
    items: Sequence[LabelledSlice],
    per_slice: Sequence[IntensityStats],
    pooled: IntensityStats,
    path: Path,
) -> Path:
    """One patient's histograms: a panel per slice (oracle threshold dashed) and a pooled one."""
    count = len(items) + 1
    columns = min(5, count)
    rows = (count + columns - 1) // columns
    figure = new_figure(2.2 * columns, 1.8 * rows)
    for n, (item, stats) in enumerate(zip(items, per_slice, strict=True)):
        axes = figure.add_subplot(rows, columns, n + 1)
        _histogram_panel(
            axes,
            *_regions(item),
            f"slice {item.slice}: AUC {stats.auc:.2f}, overlap {stats.overlap:.2f}\n"
            f"oracle Dice {stats.oracle_dice:.2f}",
            stats.oracle_threshold,
        )
    axes = figure.add_subplot(rows, columns, count)
    regions = [_regions(item) for item in items]
    _histogram_panel(
        axes,
        np.concatenate([b for b, _ in regions]),
        np.concatenate([m for _, m in regions]),
        f"pooled: AUC {pooled.auc:.2f}, overlap {pooled.overlap:.2f}",
    )
    axes.legend(fontsize=6)
    figure.suptitle(
        f"{pooled.patient_id}: intensity inside i (blood pool) vs between i and o (myocardium)",
        fontsize=8,
    )
    return save_figure(figure, path, dpi=90)


def write_intensity_report(
    slices: Sequence[LabelledSlice],
    out: str | Path,
    *,
    well_aligned: Collection[str] = (),
) -> tuple[IntensityStudy, list[Path]]:
    """Run :func:`intensity_study` and write its tables and histograms to ``out``.

    Writes ``slices.csv``, ``patients.csv``, ``intensity.json`` (with the
    well-aligned patients listed) and ``histograms/<patient_id>.png``.

    Returns
    -------
    (IntensityStudy, list of Path)
        The study and the files written.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    study = intensity_study(slices)
    written = [
        _write_csv(folder / "slices.csv", study.slices),
        _write_csv(folder / "patients.csv", study.patients),
    ]
    path = folder / "intensity.json"
    path.write_text(
        json.dumps({"well_aligned": list(well_aligned), **study.to_dict()}, indent=2) + "\n"
    )
    written.append(path)
    groups = group_by_patient(slices)
    for pooled in study.patients:
        pid = pooled.patient_id
        mine = [s for s in study.slices if s.patient_id == pid]
        written.append(
            histogram_figure(groups[pid], mine, pooled, folder / "histograms" / f"{pid}.png")
        )
    return study, written
