"""``dicontour demo [DIR]``: write the built-in phantom dataset, scan it, summarise."""

from __future__ import annotations

import argparse
import os

from ..errors import LayoutError
from ._common import scan_report
from ._format import echo, printable


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="write a synthetic example dataset and scan it")
    parser.add_argument(
        "dir",
        nargs="?",
        default="demo-data",
        help="where to write it (default: demo-data; reused if it holds a demo)",
    )
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..phantom import write_phantom
    from ..scan import scan

    if os.path.isfile(os.path.join(args.dir, "link.csv")):
        echo(f"using the example dataset already in {printable(args.dir)}")
    else:
        try:
            info = write_phantom(args.dir, seed=args.seed)
        except ValueError as exc:  # DIR is a file or a folder with other content
            raise LayoutError(f"cannot write the example dataset: {exc}") from exc
        echo(
            f"wrote {info.dicoms} DICOMs, {info.i_contours} i-contours and "
            f"{info.o_contours} o-contours for {len(info.patients)} patients to "
            f"{printable(args.dir)}, "
            f"with {len(info.faults)} deliberate faults"
        )
    echo(scan_report(scan(args.dir)))
    return 0
