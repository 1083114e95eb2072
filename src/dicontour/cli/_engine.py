"""``--engine/--workers/--scheduler``: the engine options shared by scan and cache commands."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import _options

if TYPE_CHECKING:
    from ..engine import DaskEngine, LocalEngine


def add_engine_options(parser: argparse.ArgumentParser, *, default_workers: str) -> None:
    """Add the engine options; ``default_workers`` is said in the help text."""
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine",
        choices=["local", "dask"],
        default="local",
        help="local: this machine's processes (default); dask: a dask.distributed cluster",
    )
    group.add_argument(
        "--workers",
        type=_options.workers,
        metavar="N",
        help="worker processes of the local engine or local Dask cluster; 0: in this process "
        f"({default_workers})",
    )
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a running Dask scheduler, e.g. tcp://host:8786 (implies --engine dask)",
    )


@contextmanager
def engine_from_args(
    args: argparse.Namespace, *, workers: int | None = None
) -> Iterator[LocalEngine | DaskEngine]:
    """The engine the options ask for (``workers`` when --workers is absent), closed after use."""
    from ..engine import open_engine  # here, not at the top: `dicontour --help` stays fast

    chosen = args.workers if args.workers is not None else workers
    if args.scheduler is not None:
        chosen = args.workers
    # A ValueError here (a scheduler with --engine local) is a usage error: exit 2.
    engine = open_engine(args.engine, workers=chosen, scheduler=args.scheduler)
    try:
        yield engine
    finally:
        engine.close()
