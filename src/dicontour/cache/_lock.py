"""One build at a time per cache: the lock file ``CACHE/.dicontour-build.lock``.

* Local folders: the file is locked with ``fcntl.flock`` (exclusive, not
  waiting).  The kernel drops the lock when its process dies, so a build
  killed with ``kill -9`` never blocks the next one; the file left behind is
  simply locked again.  The lock file records who holds it (pid, host, start
  time), for the message of the build that is refused.
* Object stores and other fsspec filesystems have no locks: concurrent builds
  of one remote cache are not supported.  The lock is an object written at the
  start and deleted at the end; a second build that finds it refuses to start,
  unless it names a process of this host that is gone (a killed build).  Two
  builds started within the same second can both miss each other; they then
  write the same bytes (builds are deterministic), but the outcome is not
  guaranteed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

from ..errors import CacheError
from ..storage import Location, LockHeld, LockUnavailable
from . import _store
from ._format import LOCK


def _holder() -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    return f"pid {os.getpid()} on host {socket.gethostname()}, started {started}"


def _busy(where: Location, holder: str) -> CacheError:
    return CacheError(
        f"{where.redacted()}: another build of this cache is running "
        f"({holder or 'holder unknown'}); "
        "wait for it to finish, then run `dicontour cache build` again if needed"
    )


def _alive_here(holder: str) -> bool:
    """False only for a holder of this host whose process is gone."""
    parts = holder.split()
    try:
        pid, host = int(parts[1]), parts[4].rstrip(",")
    except (IndexError, ValueError):
        return True
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def build_lock(where: Location) -> contextlib.AbstractContextManager[object]:
    """Hold the build lock of the cache folder ``where`` (which exists) for a ``with`` block.

    Raises
    ------
    CacheError
        Another build holds it; the message names its process and host.
    """
    held = contextlib.ExitStack()
    try:
        held.enter_context(where.hold(LOCK, _holder(), stale=lambda found: not _alive_here(found)))
    except LockUnavailable as exc:
        raise CacheError(
            f"{exc.filename}: cannot create the build lock ({_store.words(exc)})"
        ) from exc
    except LockHeld as exc:
        if exc.released_on_exit:
            raise _busy(where, exc.holder) from None
        raise CacheError(
            f"{_busy(where, exc.holder)}; if no build is running (a killed build leaves its "
            f"lock behind), delete {_store.name(where, LOCK)}"
        ) from None
    return held
