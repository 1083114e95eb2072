"""``dicontour check ROOT``: the scan plus the checks that read pixels.

The scan reads headers only; ``check`` also reads every labelled slice to
find contours lying mostly on dark background (``contour-on-background``)
and contour files repeating another's points (``duplicate-contour``), then
prints the scan's report with every problem.
"""

from __future__ import annotations

import argparse

from ._format import show_progress


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("check", help="scan, then run the pixel checks; report every problem")
    parser.add_argument("root", help="dataset root: a folder or an fsspec URL (s3://...)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any problem of severity error exists"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..qa.checks import check_index, with_problems
    from ..scan import scan
    from .scan import output

    index = scan(args.root, progress=show_progress(args))
    return output(args, with_problems(index, check_index(index, progress=show_progress(args))))
