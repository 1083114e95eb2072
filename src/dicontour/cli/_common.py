"""What several commands share: their common options (declared once) and the scan's report.

Each command builds its parser from the parent parsers of :func:`options`, so
``root``, ``--json``, ``--strict``, ``--quiet``, the engine options and the
contour-source options (``--contours``, ``--roi-map``) mean the same
everywhere; :func:`scan_root` is the scan every dataset command runs (with the
engine and contour source the options ask for), and :func:`scan_output` prints it.
Nothing heavy is imported at the top: ``dicontour --help`` builds every parser.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from ..problems import EXCLUDES
from ._engine import add_engine_options, engine_from_args
from ._format import echo, print_json, printable, problem_section, show_progress, table

if TYPE_CHECKING:
    from ..index import Index
    from ..scan import ContourSource

ROOT_HELP = "dataset root: a folder or an fsspec URL (s3://...)"


def options(
    *,
    root: bool = True,
    json: str | None = "print one JSON document",
    strict: bool = False,
    quiet: str | None = "no progress bar",
    engine: str | None = None,
    contours: bool = False,
) -> list[argparse.ArgumentParser]:
    """Parent parsers with the common options a command asks for.

    Parameters
    ----------
    root : bool
        The positional dataset ``root``.
    json, quiet : str or None
        The help text of ``--json`` / ``--quiet``; None leaves the option out.
    strict : bool
        ``--strict``: exit 1 when any problem of severity error exists.
    engine : str or None
        The engine options (``--engine/--workers/--scheduler``), with this
        default for ``--workers`` said in their help; None leaves them out.
    contours : bool
        ``--contours text|rtstruct`` and ``--roi-map``: the contour source a
        command that scans reads (:func:`contour_source`).

    Examples
    --------
    >>> parser = argparse.ArgumentParser(parents=options(strict=True))
    >>> parser.parse_args(["data", "--json", "--strict"])
    Namespace(root='data', json=True, strict=True, quiet=False)
    """
    parent = argparse.ArgumentParser(add_help=False)
    if root:
        parent.add_argument("root", help=ROOT_HELP)
    if json is not None:
        parent.add_argument("--json", action="store_true", help=json)
    if strict:
        parent.add_argument(
            "--strict", action="store_true", help="exit 1 when any problem of severity error exists"
        )
    if quiet is not None:
        parent.add_argument("--quiet", action="store_true", help=quiet)
    if engine is not None:
        add_engine_options(parent, default_workers=engine)
    if contours:
        _add_contour_options(parent)
    return [parent]


def _add_contour_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--contours",
        choices=["text", "rtstruct"],
        default="text",
        help="contour files: text (contourfiles/<id>/{i,o}-contours/*.txt, the default) or "
        "rtstruct (RT Structure Sets in contourfiles/<id>/*.dcm)",
    )
    parser.add_argument(
        "--roi-map",
        nargs="+",
        metavar="KIND=NAME[,NAME...]|FILE.json",
        help="with --contours rtstruct: ROI names for i and o, e.g. i=LV_Endo,Endocardium "
        'o=LV_Epi, or a JSON file {"i": [...], "o": [...]}; replaces the default names',
    )


def contour_source(args: argparse.Namespace) -> ContourSource:
    """The contour source ``--contours``/``--roi-map`` ask for (``ValueError``, exit 2, on a bad
    ROI map)."""
    # Imported here, not at the top: `dicontour --help` must not load pydicom (see above).
    from ..rtstruct import RtstructContours, parse_roi_map
    from ..scan import TextContours

    if args.contours == "text":
        if args.roi_map:
            raise ValueError("--roi-map applies to --contours rtstruct only")
        return TextContours()
    spec = args.roi_map
    if spec and len(spec) == 1 and "=" not in spec[0] and os.path.exists(spec[0]):
        return RtstructContours(parse_roi_map(spec[0]))
    return RtstructContours(parse_roi_map(spec) if spec else None)


#: The ``--workers`` default of commands that scan in this process unless told otherwise.
IN_PROCESS = "default: 1, this process"


def add_exclude_option(parser: argparse.ArgumentParser) -> None:
    """``--exclude CODE ...``: the problem codes whose flagged contours are left out."""
    parser.add_argument(
        "--exclude",
        action="extend",
        nargs="+",
        default=[],
        choices=list(EXCLUDES),
        metavar="CODE",
        help="leave out the contours these problem codes flag: " + ", ".join(EXCLUDES),
    )


def add_dataset_command(
    sub: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str | None = None,
    json: str | None = "print one JSON document",
    strict: bool = False,
) -> argparse.ArgumentParser:
    """The parser of a command that scans ``root``: ``--json``, ``--quiet``, the engine options
    (this process unless told otherwise) and ``--contours/--roi-map``; the command adds its own
    options and its ``run``."""
    parents = options(json=json, strict=strict, engine=IN_PROCESS, contours=True)
    return sub.add_parser(name, parents=parents, help=help, description=description)


def scan_root(args: argparse.Namespace) -> Index:
    """Scan ``args.root`` with the engine (one process by default) and contour source the
    options ask for."""
    from ..scan import scan

    contours = contour_source(args)  # a bad --roi-map fails before any engine starts
    with engine_from_args(args, workers=1, root=args.root) as engine:
        return scan(args.root, progress=show_progress(args), mapper=engine.map, contours=contours)


def scan_output(args: argparse.Namespace, index: Index) -> int:
    """Print ``index`` as ``--json`` or the report; the exit code ``--strict`` asks for."""
    if args.json:
        print_json(index.to_dict())
    else:
        echo(scan_report(index))
    return 1 if args.strict and index.errors() else 0


def scan_report(index: Index) -> str:
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
