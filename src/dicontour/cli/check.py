"""``dicontour check ROOT``: the scan plus the checks that read pixels.

The scan reads headers only; ``check`` also reads every labelled slice to
find contours lying mostly on dark background (``contour-on-background``)
and contour files repeating another's points (``duplicate-contour``), then
prints the scan's report with every problem.
"""

from __future__ import annotations

import argparse

from ._common import add_dataset_command, scan_output, scan_root
from ._format import show_progress


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_dataset_command(
        sub, "check", help="scan, then run the pixel checks; report every problem", strict=True
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..qa.checks import check_index, with_problems

    index = scan_root(args)
    return scan_output(args, with_problems(index, check_index(index, progress=show_progress(args))))
