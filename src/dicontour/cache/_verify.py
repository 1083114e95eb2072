"""Check a cache: every checksum, every count and shape, its folder, optionally its freshness."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .._docstrings import fill_doc
from ..engine import Engine, LocalEngine
from ..errors import CacheError
from ..storage import Location, location
from . import _layout
from ._check import ShardCheck, check_shard, check_small_files
from ._format import CacheReport
from ._source import CACHE_DOC, _NotTheDataset, check_fresh, read_manifest

#: Failures listed in a CacheError message before "and N more".
SHOWN = 20


@dataclass(frozen=True)
class VerifyReport(CacheReport):
    """What :func:`verify_cache` found: ``cache``, ``samples`` and ``shards``
    (see :class:`CacheReport`), then:

    Attributes
    ----------
    bytes : int
        Bytes read and checked.
    failures : list of str
        Each problem found, naming the file; empty when the cache is intact.
    fresh : bool or None
        Whether the dataset is unchanged since the build (None: not checked,
        or the root given is missing or another dataset: see ``failures``).
    seconds : float
    """

    bytes: int
    failures: list[str] = field(default_factory=list)
    fresh: bool | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "ok": self.ok}


@fill_doc(cache=CACHE_DOC)
def verify_cache(
    cache: str | Location,
    *,
    root: str | Location | None = None,
    engine: Engine | None = None,
    strict: bool = True,
) -> VerifyReport:
    """Read every file of a cache and check it against the manifests' checksums.

    Parameters
    ----------
    %(cache)s
    root : str or Location, optional
        Also check that the dataset is unchanged since the build.
    engine : Engine, optional
        Where the per-shard checks run (this process by default).
    strict : bool
        Raise on any failure (the default); False returns the report instead.

    Returns
    -------
    VerifyReport

    Raises
    ------
    CacheError
        No complete cache there, or (``strict``) any failure, all of them listed.

    Notes
    -----
    Besides the checksums, the cache folder itself is checked: a symbolic
    link anywhere in it, an entry of the wrong type, or a file or folder
    outside the cache's naming scheme is a failure (a build refuses to run
    until it is removed).

    Examples
    --------
    >>> verify_cache("cache").ok                               # doctest: +SKIP
    True
    """
    clock = time.perf_counter()
    where = location(cache)
    manifest = read_manifest(where)
    engine = engine or LocalEngine(workers=1)
    found = _layout.audit(where, link_ok=True)
    failures, total = check_small_files(where, manifest)
    failures += found.problems
    shards = manifest["shards"]
    checks = [ShardCheck.of(where, entry) for entry in shards]
    for _, (shard_failures, size) in engine.run(check_shard, checks):
        failures.extend(shard_failures)
        total += size
    names = {entry["name"] for entry in shards}
    failures.extend(f"shards/{name}: not in the manifest" for name in sorted(found.shards - names))
    fresh = None
    if root is not None:
        try:
            check_fresh(where, root)
            fresh = True
        except _NotTheDataset as exc:
            failures.append(str(exc))
        except CacheError as exc:
            fresh = False
            failures.append(str(exc))
    failures.sort()
    report = VerifyReport(
        where.redacted(),
        int(manifest["samples"]),
        len(shards),
        total,
        failures,
        fresh,
        time.perf_counter() - clock,
    )
    if strict and failures:
        shown = "; ".join(failures[:SHOWN])
        more = f"; and {len(failures) - SHOWN} more" if len(failures) > SHOWN else ""
        raise CacheError(f"{where.redacted()}: {len(failures)} problem(s): {shown}{more}")
    return report
