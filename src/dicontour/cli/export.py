"""``dicontour export ROOT OUT --format F``: nnU-Net, MONAI, DICOM-SEG or RTSTRUCT files."""

from __future__ import annotations

import argparse

from ..export import FORMATS, export
from ..problems import EXCLUDES
from ..scan import scan
from ._contours import add_contour_options, contour_source
from ._engine import add_engine_options, engine_from_args
from ._format import echo, print_json, printable, show_progress
from ._options import count


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="export the labelled slices (nnunet, monai, dicom-seg, rtstruct)",
        description="Write the labelled slices of ROOT to OUT. OUT must be new or empty; "
        "--resume completes an interrupted export of the same settings.",
    )
    parser.add_argument("root", help="dataset root")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument(
        "--exclude",
        action="extend",
        nargs="+",
        default=[],
        choices=list(EXCLUDES),
        metavar="CODE",
        help="leave out the contours these problem codes flag: " + ", ".join(EXCLUDES),
    )
    parser.add_argument(
        "--folds", type=count(0), default=5, help="patient folds for nnunet/monai (5; 0: none)"
    )
    parser.add_argument("--seed", type=count(0), default=0, help="folds' shuffle seed (0)")
    parser.add_argument("--resume", action="store_true", help="complete an unfinished export")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_contour_options(parser)
    add_engine_options(parser, default_workers="default: 1, this process")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    contours = contour_source(args)
    with engine_from_args(args, workers=1, root=args.root) as engine:
        index = scan(args.root, progress=show_progress(args), mapper=engine.map, contours=contours)
    report = export(
        index,
        args.out,
        args.format,
        folds=args.folds or None,
        seed=args.seed,
        exclude=args.exclude,
        resume=args.resume,
    )
    if args.json:
        print_json(report.to_dict())
    else:
        echo(
            f"{report.format}: {report.cases} cases to {printable(report.out)}; "
            f"{len(report.written)} files written, {len(report.kept)} kept"
        )
    return 0
