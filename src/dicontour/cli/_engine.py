"""The engine options of scan and cache: --engine, --workers, --scheduler, Dask timeouts."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .._timeouts import CONNECT_TIMEOUT, NO_WORKER_TIMEOUT
from . import _options

if TYPE_CHECKING:
    from ..engine import DaskEngine, LocalEngine


def _seconds(text: str) -> float:
    """An argparse ``type=``: a number of seconds above 0."""
    value = _options.duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def add_engine_options(parser: argparse.ArgumentParser, *, default_workers: str) -> None:
    """Add the engine options; ``default_workers`` is said in the help text."""
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine",
        choices=["local", "dask"],
        default=None,
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
    group.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up when the Dask scheduler does not answer within this time "
        f"({CONNECT_TIMEOUT:g})",
    )
    group.add_argument(
        "--no-worker-timeout",
        type=_seconds,
        default=NO_WORKER_TIMEOUT,
        metavar="SECONDS",
        help="give up when no Dask worker is connected for this long while tasks wait "
        f"({NO_WORKER_TIMEOUT:g})",
    )


@contextmanager
def engine_from_args(
    args: argparse.Namespace, *, workers: int | None = None, root: str | None = None
) -> Iterator[LocalEngine | DaskEngine]:
    """The engine the options ask for (``workers`` when --workers is absent), closed after use.

    With ``root``, the engine's workers are first checked to see that dataset
    as this process does (see :mod:`dicontour._reach`).
    """
    # Imported here, not at the top: `dicontour --help` builds this parser and stays fast.
    from .._reach import check_root
    from ..engine import open_engine

    chosen = args.workers if args.workers is not None else workers
    if args.scheduler is not None:
        chosen = args.workers
    # A ValueError here (a scheduler with --engine local) is a usage error: exit 2.
    engine = open_engine(
        args.engine,
        workers=chosen,
        scheduler=args.scheduler,
        connect_timeout=args.connect_timeout,
        no_worker_timeout=args.no_worker_timeout,
    )
    try:
        if root is not None:
            check_root(engine, root)
        yield engine
    finally:
        engine.close()
