"""What several commands share: their common options (declared once) and the scan's report.

Each command builds its parser from the parent parsers of :func:`options`, so
``root``, ``--json``, ``--strict``, ``--quiet`` and the engine options mean
the same everywhere; :func:`scan_root` is the scan every dataset command runs
(with the engine the options ask for), and :func:`scan_output` prints it.
Nothing heavy is imported at the top: ``dicontour --help`` builds every parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._engine import add_engine_options, engine_from_args
from ._format import echo, print_json, printable, problem_section, show_progress, table

if TYPE_CHECKING:
    from ..index import Index

ROOT_HELP = "dataset root: a folder or an fsspec URL (s3://...)"


def options(
    *,
    root: bool = True,
    json: str | None = "print one JSON document",
    strict: bool = False,
    quiet: str | None = "no progress bar",
    engine: str | None = None,
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
    return [parent]


#: The ``--workers`` default of commands that scan in this process unless told otherwise.
IN_PROCESS = "default: 1, this process"


def add_scan_command(
    sub: argparse._SubParsersAction, name: str, help: str, run: Callable[[argparse.Namespace], int]
) -> None:
    """A command taking the scan's options (``root``, ``--json``, ``--strict``, the engine)."""
    sub.add_parser(name, parents=options(strict=True, engine=IN_PROCESS), help=help).set_defaults(
        run=run
    )


def scan_root(args: argparse.Namespace) -> Index:
    """Scan ``args.root`` with the engine the options ask for (one process by default)."""
    from ..scan import scan

    with engine_from_args(args, workers=1, root=args.root) as engine:
        return scan(args.root, progress=show_progress(args), mapper=engine.map)


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
