"""``dicontour preview ROOT OUT``: per-slice PNGs, contact sheets and OUT/index.html."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_dataset_command, scan_root
from ._format import echo, printable, show_progress
from ._options import count


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_dataset_command(
        sub,
        "preview",
        json=None,
        help="draw every labelled slice with its contours; contact sheets and an HTML index",
    )
    parser.add_argument("out", type=Path, help="output folder (index.html goes here)")
    parser.add_argument(
        "--patient",
        action="append",
        metavar="ID",
        help="only this patient (repeat for several)",
    )
    parser.add_argument(
        "--limit", type=count(1), metavar="N", help="at most N labelled slices per patient"
    )
    parser.add_argument(
        "--no-checks",
        action="store_true",
        help="skip the pixel checks (contour-on-background, duplicate-contour)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import DicontourError
    from ..qa.preview import write_preview

    index = scan_root(args)
    unknown = sorted(set(args.patient or ()) - {record.patient_id for record in index})
    if unknown:
        raise DicontourError(
            f"no labelled slices for patient {', '.join(unknown)} in {index.location.redacted()}"
        )
    result = write_preview(
        index,
        args.out,
        patients=args.patient,
        limit=args.limit,
        checks=not args.no_checks,
        progress=show_progress(args),
    )
    slices = sum(1 for path in result.images if path.name != "sheet.png")
    echo(
        f"wrote {printable(result.html)}: {slices} slices of {len(result.patients)} patients, "
        f"{len(result.problems)} problems shown"
    )
    return 0
