"""``dicontour cache build ROOT CACHE`` and ``dicontour cache verify CACHE``."""

from __future__ import annotations

import argparse
import os

from ._engine import add_engine_options, engine_from_args
from ._format import echo, print_json, printable, show_progress
from ._options import count


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cache", help="build or verify a preprocessed cache (decode once, train fast)"
    )
    inner = parser.add_subparsers(dest="cache_command", required=True, metavar="ACTION")

    build = inner.add_parser(
        "build",
        help="decode every sample once into .npy shards",
        description="Decode every labelled slice of ROOT once into shards of .npy arrays in "
        "CACHE. Run again to resume an interrupted build, update a stale cache or repair a "
        "damaged one: intact shards (every checksum checked) whose files did not change are "
        "kept. CACHE must be new, empty or a cache: a folder holding anything else, or any "
        "symbolic link, is refused, and only the cache's own files are ever removed. One "
        "build at a time per cache (a lock file in CACHE).",
    )
    build.add_argument("root", help="dataset root: a folder or an fsspec URL (s3://...)")
    build.add_argument("cache", help="cache folder or fsspec URL (new, empty, or an earlier cache)")
    build.add_argument(
        "--shard-size", type=count(1), default=256, metavar="N", help="samples per shard (256)"
    )
    add_engine_options(build, default_workers="default: one per CPU")
    build.add_argument("--json", action="store_true", help="print the build report as JSON")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(run=run_build)

    verify = inner.add_parser(
        "verify",
        help="check every checksum of a cache",
        description="Read every file of CACHE and check it against the manifests, and list "
        "anything in CACHE that is not the cache's own (links, foreign files); with --root, "
        "also check that ROOT is the dataset the cache was built from and did not change.",
    )
    verify.add_argument("cache", help="cache folder or fsspec URL")
    verify.add_argument("--root", help="the dataset the cache was built from: check freshness")
    add_engine_options(verify, default_workers="default: 1")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(run=run_verify)


def run_build(args: argparse.Namespace) -> int:
    from ..cache import build_cache

    with engine_from_args(args, workers=os.cpu_count() or 1) as engine:
        report = build_cache(
            args.root,
            args.cache,
            shard_size=args.shard_size,
            engine=engine,
            progress=show_progress(args),
        )
    if args.json:
        print_json(report.to_dict())
        return 0
    seconds = report.seconds
    if report.up_to_date:
        echo(
            f"{printable(report.cache)}: up to date ({report.samples} samples in "
            f"{report.shards} shards, "
            f"every checksum checked in {seconds['check']:.2f} s)"
        )
        return 0
    rate = report.samples / seconds["total"] if seconds["total"] else 0.0
    echo(
        f"{printable(report.cache)}: {report.samples} samples in {report.shards} shards "
        f"({report.built} built, {report.reused} kept) in {seconds['total']:.1f} s "
        f"(list {seconds['list']:.1f} s, scan {seconds['scan']:.1f} s, "
        f"shards {seconds['build']:.1f} s; {rate:,.0f} samples/s)"
    )
    errors = report.problems.get("error", 0)
    if errors:
        echo(f"the scan found {errors} error(s); see `dicontour scan {printable(args.root)}`")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ..cache import verify_cache
    from ..scan import read_link_csv

    if args.root is not None:
        # An unusable dataset root is a usage error (exit 2) for every command,
        # not a stale cache.  A bad row is not (the scan reports it and uses the rest).
        read_link_csv(args.root, strict=False)
    with engine_from_args(args, workers=1) as engine:
        report = verify_cache(args.cache, root=args.root, engine=engine, strict=False)
    if args.json:
        print_json(report.to_dict())
        return 0 if report.ok else 1
    freshness = {None: "", True: ", dataset unchanged", False: ", STALE"}[report.fresh]
    echo(
        f"{printable(report.cache)}: {report.samples} samples in {report.shards} shards, "
        f"{report.bytes / 1e6:,.1f} MB checked in {report.seconds:.1f} s{freshness}: "
        + ("OK" if report.ok else f"{len(report.failures)} problem(s)")
    )
    for failure in report.failures:
        echo(f"  {printable(failure)}")  # one line each
    return 0 if report.ok else 1
