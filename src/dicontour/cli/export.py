"""``dicontour export ROOT OUT --format F``: nnU-Net, MONAI, DICOM-SEG or RTSTRUCT files."""

from __future__ import annotations

import argparse

from ._common import add_dataset_command, add_exclude_option, scan_root
from ._format import echo, print_json, printable
from ._options import count

#: :data:`dicontour.export.FORMATS`, spelled out: importing the exporters (numpy,
#: pydicom) to build the parser would slow ``dicontour --help`` (a test keeps them equal).
FORMATS = ("nnunet", "monai", "dicom-seg", "rtstruct")


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_dataset_command(
        sub,
        "export",
        help="export the labelled slices (nnunet, monai, dicom-seg, rtstruct)",
        description="Write the labelled slices of ROOT to OUT. OUT must be new or empty; "
        "--resume completes an interrupted export of the same settings.",
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--format", required=True, choices=FORMATS)
    add_exclude_option(parser)
    parser.add_argument(
        "--folds", type=count(0), default=5, help="patient folds for nnunet/monai (5; 0: none)"
    )
    parser.add_argument("--seed", type=count(0), default=0, help="folds' shuffle seed (0)")
    parser.add_argument("--resume", action="store_true", help="complete an unfinished export")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export  # numpy, pydicom, highdicom: only when exporting

    index = scan_root(args)
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
