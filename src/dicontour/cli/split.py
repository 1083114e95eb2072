"""``dicontour split ROOT --folds K``: patient-level folds, written as ``splits_final.json``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, TypedDict

from ._common import add_dataset_command, add_exclude_option, scan_root
from ._format import print_document, printable, table
from ._options import count

if TYPE_CHECKING:
    from ..index import Split


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive); got {value}")
    return value


class SideCounts(TypedDict):
    """One side (``train`` or ``val``) of a fold in ``--json``'s ``sides``."""

    patients: list[str]
    samples: int


class SplitDocument(TypedDict):
    """What ``dicontour split --json`` prints (keys in this order)."""

    root: str
    seed: int
    folds: int | None
    holdout: float | None
    exclude: list[str]
    out: str | None
    sides: list[dict[str, SideCounts]]
    excluded: list[dict[str, str]]
    splits: list[dict[str, Any]]


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_dataset_command(
        sub,
        "split",
        help="split a dataset by patient into folds (nnU-Net splits_final.json)",
        description="Assign whole patients to k folds (or a hold-out), balanced by sample "
        "count and reproducible from --seed. Without --out nothing is written.",
    )
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--folds", type=count(2), metavar="K", help="k-fold cross-validation")
    how.add_argument(
        "--holdout",
        type=_fraction,
        metavar="FRACTION",
        help="one split: FRACTION of samples in val",
    )
    parser.add_argument("--seed", type=count(0), default=0, help="shuffle seed (0)")
    add_exclude_option(parser)
    parser.add_argument("--out", metavar="FILE", help="write the splits file here (atomically)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    index = scan_root(args)
    index = index.subset(exclude=args.exclude)
    # More folds than patients raises ValueError: the request does not fit the
    # data, a usage error (exit 2) said in one line by dicontour.cli.main.
    if args.folds is not None:
        splits = index.folds(args.folds, seed=args.seed)
    else:
        splits = [index.holdout(args.holdout, seed=args.seed)]
    if args.out:
        from ..splits import write_splits

        write_splits(args.out, splits)
    document: SplitDocument = {
        "root": index.location.redacted(),
        "seed": args.seed,
        "folds": args.folds,
        "holdout": args.holdout,
        "exclude": list(dict.fromkeys(args.exclude)),
        "out": args.out,
        "sides": [_sides(split) for split in splits],
        "excluded": [e.to_dict() for e in index.excluded],
        "splits": [split.to_dict() for split in splits],
    }
    return print_document(args, document, report)


def _sides(split: Split) -> dict[str, SideCounts]:
    return {
        side: {"patients": list(part.patients), "samples": len(part)}
        for side, part in (("train", split.train), ("val", split.val))
    }


def report(document: SplitDocument) -> str:
    """The human-readable report: per fold, patients and samples on each side; exclusions."""
    sides = document["sides"]
    how = (
        f"{document['folds']} folds"
        if document["folds"] is not None
        else f"hold-out of {document['holdout']:g}"
    )
    rows = [
        [
            f,
            len(fold["train"]["patients"]),
            fold["train"]["samples"],
            len(fold["val"]["patients"]),
            fold["val"]["samples"],
            ", ".join(fold["val"]["patients"]),
        ]
        for f, fold in enumerate(sides)
    ]
    headers = ["fold", "train patients", "train samples", "val patients", "val samples", "val"]
    lines = [
        f"dataset {printable(document['root'])}",
        f"{how} by patient, seed {document['seed']}",
        table(headers, rows),
        "",
    ]
    excluded = document["excluded"]
    if document["exclude"]:
        lines.append(
            f"excluded ({', '.join(document['exclude'])}): {len(excluded)} contour(s)"
            + (":" if excluded else "")
        )
        lines += [printable(f"  {e['case_id']}  {e['contour']}  {e['code']}") for e in excluded]
    else:
        lines.append("excluded: nothing (--exclude CODE leaves out flagged contours)")
    if document["out"]:
        lines.append(
            f"wrote {printable(document['out'])} ({len(sides)} fold(s), nnU-Net splits_final.json)"
        )
    else:
        lines.append("no file written (--out FILE writes splits_final.json)")
    return "\n".join(lines)
