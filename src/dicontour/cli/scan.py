"""``dicontour scan ROOT``: the per-patient table and the problems, or ``--json``."""

from __future__ import annotations

import argparse

from ._common import add_scan_command, scan_root
from ._common import scan_output as output
from ._common import scan_report as report

__all__ = ["output", "register", "report", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    add_scan_command(sub, "scan", "scan a dataset and report its samples and problems", run)


def run(args: argparse.Namespace) -> int:
    return output(args, scan_root(args))
