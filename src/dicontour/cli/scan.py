"""``dicontour scan ROOT``: the per-patient table and the problems, or ``--json``."""

from __future__ import annotations

import argparse

from ..index import Index
from ..scan import scan
from ._engine import add_engine_options, engine_from_args
from ._format import echo, print_json, printable, problem_section, show_progress, table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("scan", help="scan a dataset and report its samples and problems")
    parser.add_argument("root", help="dataset root: a folder or an fsspec URL (s3://...)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any problem of severity error exists"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_options(parser, default_workers="default: 1, this process")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with engine_from_args(args, workers=1, root=args.root) as engine:
        index = scan(args.root, progress=show_progress(args), mapper=engine.map)
    return output(args, index)


def output(args: argparse.Namespace, index: Index) -> int:
    """Print ``index`` as ``--json`` or the report; the exit code ``--strict`` asks for."""
    if args.json:
        print_json(index.to_dict())
    else:
        echo(report(index))
    return 1 if args.strict and index.errors() else 0


def report(index: Index) -> str:
    """The human-readable scan report: per-patient table, totals, problems."""
    summary = index.summary
    rows = []
    for pid, stats in summary["per_patient"].items():
        codes = ", ".join(f"{code} {n}" for code, n in sorted(stats["problems"].items()))
        rows.append(
            [
                pid,
                stats["dicoms"],
                stats["labelled_slices"],
                stats["i_contours"],
                stats["o_contours"],
                codes or "-",
            ]
        )
    rows.append(
        [
            "total",
            summary["dicoms"],
            summary["labelled_slices"],
            summary["i_contours"],
            summary["o_contours"],
            f"{len(index.problems)}",
        ]
    )
    lines = [
        f"dataset {printable(index.location.redacted())}",
        table(["patient", "DICOMs", "labelled", "i-pairs", "o-pairs", "problems"], rows),
        "",
        f"{summary['unlabelled_slices']} unlabelled slices; problems: "
        + ", ".join(f"{n} {sev}" for sev, n in summary["severity"].items()),
    ]
    lines += problem_section([p.to_dict() for p in index.problems])
    return "\n".join(lines)
