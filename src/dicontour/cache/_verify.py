"""Check a cache: every checksum, every count and shape, and optionally its freshness."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..engine import Engine, LocalEngine
from ..errors import CacheError
from ..storage import Location, location
from . import _store
from ._build import ARRAYS, FINGERPRINT, HAS, MANIFEST, SHARDS, shard_folder
from ._source import check_fresh, read_manifest

#: Failures listed in a CacheError message before "and N more".
SHOWN = 20


@dataclass(frozen=True)
class _ShardCheck:
    cache: Location
    name: str
    manifest_sha256: str
    count: int
    shape: tuple[int, int]


def _check_shard(task: _ShardCheck) -> tuple[list[str], int]:
    """(failures, bytes read) for one shard."""
    where, folder = task.cache, shard_folder(task.name)
    try:
        raw = where.fs.cat_file(where.path(f"{folder}/{MANIFEST}"))
    except FileNotFoundError:
        return [f"{folder}/{MANIFEST}: missing"], 0
    if hashlib.sha256(raw).hexdigest() != task.manifest_sha256:
        return [f"{folder}/{MANIFEST}: checksum differs from the top-level manifest"], len(raw)
    # The bytes just checked, not a second read that could see another version.
    manifest = _store.parse_json(where, f"{folder}/{MANIFEST}", raw)
    failures = []
    if manifest.get("count") != task.count or manifest.get("shape") != list(task.shape):
        failures.append(
            f"{folder}/{MANIFEST}: {manifest.get('count')} samples of {manifest.get('shape')}, "
            f"the top-level manifest says {task.count} of {list(task.shape)}"
        )
    total = len(raw)
    for name in ARRAYS:
        entry = manifest.get("arrays", {}).get(name)
        if entry is None:
            failures.append(f"{folder}/{name}: not in the shard manifest")
            continue
        try:
            digest, size = _store.sha256_of(where, f"{folder}/{name}")
        except FileNotFoundError:
            failures.append(f"{folder}/{name}: missing")
            continue
        total += size
        if size != entry["bytes"]:
            failures.append(f"{folder}/{name}: {size} bytes, {entry['bytes']} expected")
        elif digest != entry["sha256"]:
            failures.append(f"{folder}/{name}: sha256 mismatch (corrupted)")
    return failures, total


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_cache` found.

    Attributes
    ----------
    cache : str
        The cache (credentials removed from the URL).
    samples, shards : int
    bytes : int
        Bytes read and checked.
    failures : list of str
        Each problem found, naming the file; empty when the cache is intact.
    fresh : bool or None
        Whether the dataset is unchanged since the build (None: not checked).
    seconds : float
    """

    cache: str
    samples: int
    shards: int
    bytes: int
    failures: list[str] = field(default_factory=list)
    fresh: bool | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


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
    cache : str or Location
        The cache folder or URL.
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

    Examples
    --------
    >>> verify_cache("cache").ok                               # doctest: +SKIP
    True
    """
    clock = time.perf_counter()
    where = location(cache)
    manifest = read_manifest(where)
    engine = engine or LocalEngine(workers=1)
    failures: list[str] = []
    total = 0
    for name, entry in ((HAS, manifest.get("has")), (FINGERPRINT, manifest.get("fingerprint"))):
        try:
            digest, size = _store.sha256_of(where, name)
        except FileNotFoundError:
            failures.append(f"{name}: missing")
            continue
        total += size
        if entry is None or digest != entry.get("sha256"):
            failures.append(f"{name}: sha256 mismatch (corrupted)")
    shards = manifest["shards"]
    if sum(entry["count"] for entry in shards) != manifest["samples"]:
        failures.append(f"{MANIFEST}: shard counts do not add up to {manifest['samples']}")
    checks = [
        _ShardCheck(where, e["name"], e["manifest_sha256"], e["count"], tuple(e["shape"]))
        for e in shards
    ]
    for _, (found, size) in engine.run(_check_shard, checks):
        failures.extend(found)
        total += size
    names = {entry["name"] for entry in shards}
    failures.extend(
        f"{SHARDS}/{name}: not in the manifest"
        for name in _store.children(where, SHARDS)
        if name not in names
    )
    fresh = None
    if root is not None:
        try:
            check_fresh(where, root)
            fresh = True
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
