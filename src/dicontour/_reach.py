"""Check that an engine's workers see the dataset root and the cache as this process does.

On a cluster, a local path means the same files only on a filesystem shared
by every machine and mounted at the same place.  Without one, a worker finds
nothing (or another folder of the same name): a scan would see empty
patients and a build would write shards the client never sees.  These checks
ask every worker, before any work is handed out:

* ROOT: the sha256 of ``link.csv`` read by the worker equals this process's;
* CACHE: the worker reads a probe file this process just wrote there, and
  writes (then removes) one of its own.

A local engine has nothing to check (its workers are this machine's processes).

Examples
--------
>>> from dicontour.engine import LocalEngine
>>> check_root(LocalEngine(workers=1), "final_data")   # local workers: nothing to ask
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets

from .engine import Engine
from .errors import EngineError
from .storage import Location, location

#: Most bytes of link.csv hashed to compare what the workers see (the scan's own limit).
_LINK_CSV_LIMIT = 16 * 2**20
_FIX = (
    "every worker must see it under the same name: the same shared filesystem mounted at the "
    "same path on every machine, or an object store URL (s3://bucket/prefix) with the store's "
    "credentials and endpoint settings given to the workers too"
)


def _root_seen(url: str) -> str:
    """What this process sees of the dataset at ``url``: link.csv's sha256, or why not."""
    where = location(url)
    try:
        with where.open("link.csv") as handle:
            data = handle.read(_LINK_CSV_LIMIT)
    except Exception as exc:  # any store's error: it is reported, not raised
        return f"cannot read link.csv ({type(exc).__name__}: {exc})"
    return f"link.csv sha256 {hashlib.sha256(data).hexdigest()}"


def _differences(found: dict[str, str | BaseException], expected: str) -> dict[str, str]:
    """``{worker: what it saw}`` for every worker that did not see ``expected``."""
    bad = {}
    for worker, seen in sorted(found.items()):
        if isinstance(seen, BaseException):
            bad[worker] = f"{type(seen).__name__}: {seen}"
        elif seen != expected:
            bad[worker] = str(seen)
    return bad


def _refuse(what: str, where: Location, bad: dict[str, str]) -> None:
    if not bad:
        return
    worker, seen = next(iter(bad.items()))
    more = f" (and {len(bad) - 1} other workers)" if len(bad) > 1 else ""
    raise EngineError(
        f"{where.redacted()}: worker {worker}{more} does not see this {what} as this process "
        f"does ({seen}); {_FIX}"
    )


def check_root(engine: Engine, root: str | Location) -> None:
    """Raise when a worker of ``engine`` does not see the dataset ``root`` as this process does.

    Nothing is checked when this process cannot read ``link.csv`` either: the
    scan reports that itself.

    Raises
    ------
    EngineError
        Naming the first worker that differs and saying how to fix it.
    """
    where = location(root)
    found = engine.each_worker(_root_seen, where.url)
    if not found:  # a local engine, or no worker yet
        return
    expected = _root_seen(where.url)
    if not expected.startswith("link.csv sha256"):
        return
    _refuse("dataset root", where, _differences(found, expected))


def _cache_seen(url: str, probe: str, token: str) -> str:
    """``"ok"`` when the probe file holds ``token`` and a file can be written next to it."""
    where = location(url)
    try:
        if where.fs.cat_file(where.path(probe)) != token.encode():
            return f"{probe} holds other bytes"
    except Exception as exc:
        return f"cannot read the probe file {probe} ({type(exc).__name__})"
    mine = f"{probe}{secrets.token_hex(4)}"  # still a temporary name of the cache's scheme
    try:
        where.fs.pipe_file(where.path(mine), b"dicontour worker probe")
        where.fs.rm_file(where.path(mine))
    except Exception as exc:
        return f"cannot write there ({type(exc).__name__}: {exc})"
    return "ok"


def _present() -> bool:
    return True


def check_cache(engine: Engine, cache: str | Location, probe: str) -> None:
    """Raise when a worker cannot read what this process writes in ``cache``, or write there.

    ``probe`` is the name (relative to the cache) of a file this function
    writes and removes; a worker writes ``probe`` plus a few hex digits.  The
    cache build gives a temporary name of its own scheme.

    Raises
    ------
    EngineError
        Naming the first worker that cannot and saying how to fix it.
    """
    where = location(cache)
    if not engine.each_worker(_present):  # a local engine, or no worker yet: nothing to ask
        return
    token = secrets.token_hex(16)
    where.fs.pipe_file(where.path(probe), token.encode())
    try:
        bad = _differences(engine.each_worker(_cache_seen, where.url, probe, token), "ok")
    finally:
        with contextlib.suppress(OSError):
            where.fs.rm_file(where.path(probe))
    _refuse("cache", where, bad)
