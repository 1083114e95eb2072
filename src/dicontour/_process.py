"""Worker processes that do not outlive the process that started them.

A pool worker blocked on its task queue never notices that its parent was
killed (``kill -9``, the out-of-memory killer): the queue's pipe stays open
because the worker itself holds both of its ends.  :func:`exit_with_parent`,
called first thing in the worker, starts a daemon thread that compares
``os.getppid()`` with the parent's pid every ``interval`` seconds and ends the
worker with ``os._exit`` as soon as the parent is gone (the orphan is then
re-parented to init or a subreaper, so its parent pid changes).

Linux's ``prctl(PR_SET_PDEATHSIG)`` is deliberately not used: it fires when
the *thread* that started the child ends, not the process, so a pool whose
workers were started from a short-lived thread (an engine used from a thread
pool) would lose its workers while still in use.
"""

from __future__ import annotations

import os
import select
import threading
import time

#: Exit status of a worker that found its parent gone (nobody is left to read it).
ORPHANED = 70
#: Seconds between two looks at the parent pid: the longest an orphan outlives its parent.
INTERVAL = 0.25


def _watch(parent: int, interval: float) -> None:
    while True:
        if os.getppid() != parent:
            # _exit: no atexit handlers, no flushing of half-written buffers of the task
            # in progress (every write of dicontour's tasks is atomic, so nothing is lost).
            os._exit(ORPHANED)
        time.sleep(interval)


def exit_with_parent(parent: int, interval: float = INTERVAL) -> threading.Thread:
    """End this process as soon as ``parent`` is no longer its parent.

    Call it in a child process (e.g. as a pool's ``initializer``) with the
    parent's pid recorded *in the parent* (``os.getpid()`` there), so that a
    parent that died before the child started is noticed too.

    Parameters
    ----------
    parent : int
        The pid of the process this one must not outlive.
    interval : float
        Seconds between checks.

    Returns
    -------
    threading.Thread
        The watching daemon thread (already started).

    Examples
    --------
    >>> from concurrent.futures import ProcessPoolExecutor
    >>> pool = ProcessPoolExecutor(2, initializer=exit_with_parent,
    ...                            initargs=(os.getpid(),))        # doctest: +SKIP
    """
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    if os.getppid() != parent:
        os._exit(ORPHANED)
    watcher = threading.Thread(
        target=_watch, args=(parent, interval), name="dicontour-exit-with-parent", daemon=True
    )
    watcher.start()
    return watcher


def _wait_for_exit(handle: int) -> None:
    # A process descriptor reads as ready once its process has ended (even before it
    # is reaped), and it names that process only: no pid reused by another.
    select.select([handle], [], [])
    os._exit(ORPHANED)


def _poll_exit(pid: int, interval: float) -> None:
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(ORPHANED)
        except PermissionError:
            pass  # alive, under another user
        time.sleep(interval)


def exit_with(pid: int, interval: float = INTERVAL) -> threading.Thread:
    """End this process as soon as process ``pid`` (an ancestor, not only the parent) ends.

    For a worker forked by a ``forkserver``: its parent is the server, which
    itself outlives the pool's process for as long as its workers hold their
    inherited end of the server's pipe.  Watched through a process descriptor
    (``os.pidfd_open``, Linux) where there is one, else by polling the pid every
    ``interval`` seconds (a pid that ended but is not yet reaped then counts as
    alive).

    Parameters
    ----------
    pid : int
        The process this one must not outlive, recorded while it lives.
    interval : float
        Seconds between checks when polling.

    Returns
    -------
    threading.Thread
        The watching daemon thread (already started).
    """
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    try:
        handle: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(ORPHANED)
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        handle = None
    if handle is not None:
        target, args = _wait_for_exit, (handle,)
    else:
        target, args = _poll_exit, (pid, interval)  # type: ignore[assignment]
    watcher = threading.Thread(target=target, args=args, name="dicontour-exit-with", daemon=True)
    watcher.start()
    return watcher
