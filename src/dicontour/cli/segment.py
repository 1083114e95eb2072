"""``dicontour segment ROOT``: heuristic blood-pool segmentation scored against the i-contours.

Predicts the blood pool inside each o-contour with a non-learned method and
reports Dice and IoU against the i-contour per slice and per patient.
``--json`` prints ``{"method", "patients": {id: {"dice", "iou", "slices"}},
"slices": [{"patient_id", "slice", "dice", "iou"}, ...]}``; ``--out DIR``
writes CSVs, a summary table and best/worst figures; ``--study`` tunes every
method (or ``--method``) leave-one-patient-out on the well-aligned patients.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DicontourError
from ._common import add_dataset_command, scan_root
from ._format import echo, print_json, printable, show_progress, table

if TYPE_CHECKING:
    from ..qa.study import Evaluation, LabelledSlice


class _Methods:
    """The registered method names, looked up only when argparse needs them.

    ``dicontour --help`` builds this parser; importing the segmentation
    methods there would load the QA stack for nothing.
    """

    def _names(self) -> list[str]:
        from ..qa.segment import METHODS

        return sorted(METHODS)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_dataset_command(
        sub,
        "segment",
        help="segment the blood pool inside each o-contour without learning; score vs i-contours",
    )
    parser.add_argument(
        "--method",
        choices=_Methods(),
        default=None,
        metavar="METHOD",  # a metavar, so that building the parser does not list the choices
        help="segmentation method: %(choices)s (default: hull, the best on the real data; "
        "with --study: all)",
    )
    parser.add_argument("--out", type=Path, help="write CSVs, summary table and figures here")
    parser.add_argument(
        "--study",
        action="store_true",
        help="tune each method leave-one-patient-out on the well-aligned patients; "
        "report held-out beside in-sample scores",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..qa.segment import DEFAULT_METHOD
    from ..qa.study import evaluate, load_labelled, well_aligned_patients

    index = scan_root(args)
    aligned = well_aligned_patients(index)
    if args.study:
        return _study(args, load_labelled(index, aligned), aligned)
    slices = load_labelled(index)
    method = args.method or DEFAULT_METHOD
    evaluation = evaluate(slices, method)
    if args.out:
        from ..qa.segment_report import write_segment_report

        write_segment_report(slices, evaluation, args.out, well_aligned=aligned)
        (args.out / "summary.txt").write_text(_summary(evaluation, aligned) + "\n")
    if args.json:
        print_json(evaluation.to_dict())
    else:
        echo(_summary(evaluation, aligned))
        if args.out:
            echo(
                f"\nwrote {printable(args.out)}/slices.csv, summary.csv, summary.txt, "
                "best.png, worst.png"
            )
    return 0


def _summary(evaluation: Evaluation, aligned: list[str]) -> str:
    from ..qa.segment_report import SUMMARY_HEADERS, summary_rows

    params = ", ".join(f"{k}={v}" for k, v in evaluation.params.items()) or "no parameters"
    return "\n".join(
        [
            f"method {evaluation.method} ({params}): predicted blood pool vs i-contour, "
            f"{len(evaluation.slices)} slices with both contours",
            table(SUMMARY_HEADERS, _fixed(summary_rows(evaluation, aligned))),
        ]
    )


def _fixed(rows: list[list[object]]) -> list[list[object]]:
    """Scores with three decimals, so that a column lines up (0.860, not 0.86)."""
    return [[f"{cell:.3f}" if isinstance(cell, float) else cell for cell in row] for row in rows]


def _study(args: argparse.Namespace, slices: list[LabelledSlice], aligned: list[str]) -> int:
    from ..qa.segment import METHODS
    from ..qa.study import leave_one_patient_out

    methods = [args.method] if args.method else list(METHODS)
    if len(aligned) < 2:
        raise DicontourError(
            f"segment --study needs at least 2 well-aligned patients, got {aligned}"
        )
    results = [
        leave_one_patient_out(slices, name, progress=show_progress(args)) for name in methods
    ]
    rows = []
    for result in results:
        for p in result.patients:
            rows.append(
                [
                    result.method,
                    p.patient_id,
                    p.slices,
                    round(p.in_sample_dice, 3),
                    round(p.held_out_dice, 3),
                    round(p.in_sample_iou, 3),
                    round(p.held_out_iou, 3),
                    ", ".join(f"{k}={v}" for k, v in p.held_out_params.items()) or "-",
                ]
            )
        rows.append(
            [
                result.method,
                "mean",
                sum(p.slices for p in result.patients),
                round(result.mean("in_sample_dice"), 3),
                round(result.mean("held_out_dice"), 3),
                round(result.mean("in_sample_iou"), 3),
                round(result.mean("held_out_iou"), 3),
                "in-sample: " + (", ".join(f"{k}={v}" for k, v in result.params.items()) or "-"),
            ]
        )
    headers = [
        "method",
        "patient",
        "slices",
        "dice in",
        "dice held-out",
        "iou in",
        "iou held-out",
        "held-out params (tuned on the others)",
    ]
    text = "\n".join(
        [
            f"leave-one-patient-out over the well-aligned patients: {', '.join(aligned)}",
            table(headers, _fixed(rows)),
        ]
    )
    document = {"well_aligned": aligned, "methods": [r.to_dict() for r in results]}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "study.txt").write_text(text + "\n")
        (args.out / "study.json").write_text(json.dumps(document, indent=2) + "\n")
    if args.json:
        print_json(document)
    else:
        echo(text)
    return 0
