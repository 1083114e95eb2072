"""Write what ``dicontour segment --out DIR`` writes: CSVs, a summary table, figures.

Files
-----
``slices.csv``
    patient_id, slice, dice, iou, predicted_area, true_area, well_aligned.
``summary.csv``
    One row per patient: slices, mean Dice, mean IoU, worst Dice, well-aligned.
``evaluation.json``
    The document ``dicontour segment --json`` prints.
``best.png``, ``worst.png``
    The slices with the highest and lowest Dice: image, i-contour (truth),
    prediction and o-contour.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from ._optional import new_figure, save_figure
from .segment import get_method
from .study import Evaluation, LabelledSlice, SliceScore

#: Colours of the overlays, shared with the preview: truth, prediction, o-contour.
TRUTH_COLOUR = "#00e000"
PREDICTION_COLOUR = "#ff00ff"
O_COLOUR = "#ffd700"


def summary_rows(evaluation: Evaluation, well_aligned: Collection[str]) -> list[list[object]]:
    """Rows ``[patient, slices, dice, iou, worst dice, well-aligned]`` and a mean row.

    The mean row averages the well-aligned patients, each patient once.
    """
    rows: list[list[object]] = []
    worst: dict[str, float] = {}
    for score in evaluation.slices:
        worst[score.patient_id] = min(worst.get(score.patient_id, 1.0), score.dice)
    for pid, stats in evaluation.patients().items():
        rows.append(
            [
                pid,
                stats["slices"],
                round(stats["dice"], 3),
                round(stats["iou"], 3),
                round(worst[pid], 3),
                "yes" if pid in well_aligned else "no",
            ]
        )
    chosen = [row for row in rows if row[5] == "yes"]
    if chosen:
        rows.append(
            [
                "mean (well-aligned)",
                sum(int(row[1]) for row in chosen),  # type: ignore[call-overload]
                round(float(np.mean([row[2] for row in chosen])), 3),
                round(float(np.mean([row[3] for row in chosen])), 3),
                round(min(float(row[4]) for row in chosen), 3),  # type: ignore[arg-type]
                "",
            ]
        )
    return rows


SUMMARY_HEADERS = ["patient", "slices", "dice", "iou", "worst dice", "well-aligned"]


def _crop_box(*masks: np.ndarray, pad: int = 8) -> tuple[slice, slice]:
    union = np.logical_or.reduce([m for m in masks if m is not None])
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    if rows.size == 0:
        return slice(None), slice(None)
    h, w = union.shape
    return (
        slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, h)),
        slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, w)),
    )


def slice_figure(
    items: Sequence[tuple[LabelledSlice, np.ndarray, SliceScore]], path: Path, title: str
) -> Path:
    """A row of panels: each slice cropped to its contours, truth vs prediction.

    Parameters
    ----------
    items : sequence of (LabelledSlice, prediction, SliceScore)
    path : Path
        The PNG to write.
    title : str
    """
    count = max(len(items), 1)
    figure = new_figure(2.2 * count, 2.6)
    for n, (item, prediction, score) in enumerate(items):
        axes = figure.add_subplot(1, count, n + 1)
        box = _crop_box(item.o_mask, item.i_mask, prediction)
        image = item.image[box]
        low, high = np.percentile(image, [1, 99.5]) if image.size else (0, 1)
        axes.imshow(image, cmap="gray", vmin=low, vmax=max(high, low + 1e-6))
        for mask, colour, style in (
            (item.o_mask, O_COLOUR, "dashed"),
            (item.i_mask, TRUTH_COLOUR, "solid"),
            (prediction, PREDICTION_COLOUR, "solid"),
        ):
            crop = mask[box].astype(float)
            if crop.any() and not crop.all():
                axes.contour(crop, levels=[0.5], colors=colour, linewidths=1.0, linestyles=style)
        axes.set_title(f"{score.patient_id} {score.slice}\nDice {score.dice:.3f}", fontsize=7)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(
        f"{title} (green: i-contour, magenta: prediction, yellow dashed: o-contour)", fontsize=7
    )
    return save_figure(figure, path, dpi=100)


def write_segment_report(
    slices: Sequence[LabelledSlice],
    evaluation: Evaluation,
    out: str | Path,
    *,
    well_aligned: Collection[str] = (),
    figures: int = 6,
) -> list[Path]:
    """Write the CSVs, summary table, JSON document and best/worst figures to ``out``.

    Parameters
    ----------
    slices : sequence of LabelledSlice
        The slices ``evaluation`` scored, in the same order.
    evaluation : Evaluation
    out : str or Path
        Output folder (created).
    well_aligned : collection of str
        Patients marked well-aligned in the tables.
    figures : int
        Slices in each of best.png and worst.png (0: no figures); the
        ranking uses the well-aligned patients when any are given, since the
        others' scores measure their contours' misalignment, not the method.

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    path = folder / "slices.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["patient_id", "slice", "dice", "iou", "predicted_area", "true_area", "well_aligned"]
        )
        for score in evaluation.slices:
            writer.writerow(
                [
                    score.patient_id,
                    score.slice,
                    f"{score.dice:.6f}",
                    f"{score.iou:.6f}",
                    score.predicted_area,
                    score.true_area,
                    int(score.patient_id in well_aligned),
                ]
            )
    written.append(path)
    rows = summary_rows(evaluation, well_aligned)
    path = folder / "summary.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([SUMMARY_HEADERS, *rows])
    written.append(path)
    path = folder / "evaluation.json"
    path.write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n")
    written.append(path)
    if figures > 0 and evaluation.slices:
        spec = get_method(evaluation.method)
        ranked = [
            n
            for n in np.argsort([s.dice for s in evaluation.slices], kind="stable")
            if not well_aligned or evaluation.slices[n].patient_id in well_aligned
        ]
        for name, chosen in (("worst", ranked[:figures]), ("best", ranked[::-1][:figures])):
            items = []
            for n in chosen:
                item = slices[n]
                prediction = spec(item.image, item.o_mask, **evaluation.params)
                items.append((item, prediction, evaluation.slices[n]))
            title = f"{evaluation.method}: {name} {len(items)} slices by Dice"
            written.append(slice_figure(items, folder / f"{name}.png", title))
    return written
