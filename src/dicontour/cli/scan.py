"""``dicontour scan ROOT``: the per-patient table and the problems, or ``--json``."""

from __future__ import annotations

import argparse

from ._common import add_dataset_command, scan_root
from ._common import scan_output as output
from ._common import scan_report as report

__all__ = ["output", "register", "report", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_dataset_command(
        sub, "scan", help="scan a dataset and report its samples and problems", strict=True
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return output(args, scan_root(args))
