"""``dicontour batches ROOT``: iterate like a training loop and report the loader's speed.

Per epoch: batches, samples, samples/s, the time the loop spent waiting for
data (and its share of the epoch), and the samples skipped because a file
could not be read: the loader's own telemetry (``loader.history``).
``--step-ms`` pretends each training step takes that long, to show how much
loading overlaps with compute.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any, TypedDict

from ..targets import TARGETS
from ._common import options
from ._format import print_document, printable, problem_section, show_progress, table
from ._options import count, duration, workers

if TYPE_CHECKING:
    from ..loader.stats import EpochStats


class Settings(TypedDict):
    """The loader's settings, as ``--json`` reports them."""

    batch_size: int
    workers: int
    prefetch: int
    target: str
    seed: int
    batches_per_epoch: int
    samples_per_epoch: int
    shape: list[int]
    step_ms: float


class EpochRow(TypedDict):
    """One epoch of ``--json``'s ``epochs`` (see :func:`_epoch`)."""

    epoch: int
    batches: int
    samples: int
    seconds: float
    samples_per_second: float | None
    wait_seconds: float
    wait_share: float | None
    skipped: int
    first_batch_seconds: float
    restarts: int


class BatchesDocument(TypedDict):
    """What ``dicontour batches --json`` prints (keys in this order)."""

    root: str
    settings: Settings
    first_batch_seconds: float
    epochs: list[EpochRow]
    restarts: int
    problems: list[dict[str, Any]]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "batches",
        # no engine options: --workers here is the loader's worker processes
        parents=options(quiet="no progress bar while scanning"),
        help="iterate training batches like a training loop and report their speed",
    )
    parser.add_argument("--batch-size", type=count(1), default=8, help="samples per batch (8)")
    parser.add_argument("--epochs", type=count(1), default=2, help="epochs to run (2)")
    parser.add_argument("--workers", type=workers, default=2, help="worker processes (2)")
    parser.add_argument("--prefetch", type=count(1), default=4, help="batch slots (4)")
    parser.add_argument("--target", choices=TARGETS, default="i", help="mask (i)")
    parser.add_argument("--seed", type=count(0), default=0, help="order seed (0)")
    parser.add_argument("--normalize", choices=["zscore", "percentile"], default=None)
    parser.add_argument(
        "--size", type=count(1), nargs=2, metavar=("H", "W"), help="centre-crop or pad to H x W"
    )
    parser.add_argument(
        "--step-ms",
        type=duration,
        default=0.0,
        help="pretend each training step computes for this long (0)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..loader import BatchLoader
    from ..scan import scan

    index = scan(args.root, progress=show_progress(args))
    with BatchLoader(
        index,
        args.batch_size,
        target=args.target,
        seed=args.seed,
        workers=args.workers,
        prefetch=args.prefetch,
        normalize=args.normalize,
        size=tuple(args.size) if args.size else None,
    ) as loader:
        step = args.step_ms / 1000.0
        for _ in range(args.epochs):
            for _batch in loader:
                if step:
                    time.sleep(step)  # the pretend training step
        epochs = [_epoch(stats) for stats in loader.history]
        document: BatchesDocument = {
            "root": index.location.redacted(),
            "settings": {
                "batch_size": loader.batch_size,
                "workers": loader.workers,
                "prefetch": loader.prefetch,
                "target": loader.target,
                "seed": loader.seed,
                "batches_per_epoch": len(loader),
                "samples_per_epoch": loader.samples_per_epoch,
                "shape": list(loader.shape),
                "step_ms": args.step_ms,
            },
            # The loader's own measure: first next() to first batch, workers' start included.
            "first_batch_seconds": loader.history[0].first_batch_s,
            "epochs": epochs,
            "restarts": loader.restarts,
            "problems": [p.to_dict() for p in loader.problems],
        }
    return print_document(args, document, report)


def _epoch(stats: EpochStats) -> EpochRow:
    """One epoch's row, from the loader's telemetry (``loader.history``)."""
    return {
        "epoch": stats.epoch,
        "batches": stats.batches,
        "samples": stats.samples,
        # Unrounded: a program reading --json computes with these; the table rounds.
        "seconds": stats.seconds,
        "samples_per_second": stats.samples_per_s if stats.seconds else None,
        "wait_seconds": stats.wait_s,
        "wait_share": stats.wait_share if stats.seconds else None,
        "skipped": stats.skipped,
        "first_batch_seconds": stats.first_batch_s,
        "restarts": stats.restarts,
    }


def report(document: BatchesDocument) -> str:
    """The human-readable report: settings, one row per epoch, problems."""
    settings = document["settings"]
    rows = [
        [
            e["epoch"],
            e["batches"],
            e["samples"],
            f"{e['seconds']:.2f}",
            f"{e['samples_per_second'] or 0:,.0f}",
            f"{e['wait_seconds']:.2f}",
            f"{100 * (e['wait_share'] or 0):.0f}%",
            e["skipped"],
        ]
        for e in document["epochs"]
    ]
    lines = [
        f"dataset {printable(document['root'])}: {settings['samples_per_epoch']} samples "
        f"({settings['target']}-contour), {settings['batches_per_epoch']} batches of "
        f"{settings['batch_size']}, {settings['workers']} workers, prefetch "
        f"{settings['prefetch']}, images {settings['shape'][0]}x{settings['shape'][1]}",
        f"first batch after {document['first_batch_seconds']:.2f} s (scan excluded, "
        "worker start-up included)",
        table(
            [
                "epoch",
                "batches",
                "samples",
                "seconds",
                "samples/s",
                "waited s",
                "waited",
                "skipped",
            ],
            rows,
        ),
    ]
    if document["restarts"]:
        lines.append(f"{document['restarts']} worker(s) died and were replaced")
    lines += problem_section(document["problems"])
    return "\n".join(lines)
