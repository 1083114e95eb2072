"""``dicontour scan ROOT``: the per-patient table and the problems, or ``--json``."""

from __future__ import annotations

import argparse

from ._common import IN_PROCESS, options, scan_root
from ._common import scan_output as output
from ._common import scan_report as report

__all__ = ["output", "register", "report", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "scan",
        parents=options(strict=True, engine=IN_PROCESS, contours=True),
        help="scan a dataset and report its samples and problems",
    ).set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return output(args, scan_root(args))
