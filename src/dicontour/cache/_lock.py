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
from collections.abc import Iterator

from ..errors import CacheError
from ..storage import Location
from . import _store
from ._format import LOCK

try:
    import fcntl
except ImportError:  # Windows: the remote scheme (an object naming the holder) is used
    fcntl = None  # type: ignore[assignment]


def _holder() -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    return f"pid {os.getpid()} on host {socket.gethostname()}, started {started}"


def _busy(where: Location, holder: str) -> CacheError:
    return CacheError(
        f"{where.redacted()}: another build of this cache is running "
        f"({holder or 'holder unknown'}); "
        "wait for it to finish, then run `dicontour cache build` again if needed"
    )


@contextlib.contextmanager
def _local(where: Location) -> Iterator[None]:
    path = where.path(LOCK)
    while True:
        try:
            # O_NOFOLLOW: a link planted at the lock's name is refused, never followed.
            handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CacheError(f"{path}: cannot create the build lock ({_store.words(exc)})") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 400).decode(errors="replace").strip()
            os.close(handle)
            raise _busy(where, holder) from None
        # A finishing build unlinks its lock file after we opened it: then we hold a
        # lock on a deleted file, and must lock the one now at the path instead.
        try:
            opened, current = os.fstat(handle), os.lstat(path)
            same = (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(handle)
    try:
        os.ftruncate(handle, 0)
        os.write(handle, _holder().encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(handle)  # releases the flock


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


@contextlib.contextmanager
def _marker(where: Location) -> Iterator[None]:
    if _store.exists(where, LOCK):
        try:
            holder = where.fs.cat_file(where.path(LOCK)).decode(errors="replace").strip()
        except OSError:
            holder = ""
        if _alive_here(holder):
            raise CacheError(
                f"{_busy(where, holder)}; if no build is running (a killed build leaves its "
                f"lock behind), delete {_store.name(where, LOCK)}"
            )
    _store.write_bytes(where, LOCK, _holder().encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            where.fs.rm_file(where.path(LOCK))


def build_lock(where: Location) -> contextlib.AbstractContextManager[None]:
    """Hold the build lock of the cache folder ``where`` (which exists) for a ``with`` block.

    Raises
    ------
    CacheError
        Another build holds it; the message names its process and host.
    """
    if where.is_local and fcntl is not None:
        return _local(where)
    return _marker(where)
