"""The loader side of the workers: start them, hand out tasks, notice deaths, shut down.

:class:`ProcessPool` runs ``workers`` persistent child processes.  Each has its
own duplex pipe: tasks go down, results come back, as a few bytes each (see
:mod:`.worker`).  Private pipes (rather than one shared queue) mean a worker
killed in the middle of a write can only damage its own channel, never block
the others on a lock it held.  The pool waits on the pipes and on the
processes' sentinels at once (one ``poll`` set kept for the pool's life), so a
death is seen as soon as it happens; the dead worker's unfinished tasks go to
a replacement.

Workers receive the source and the configuration as one pickle, whatever the
start method: a forked worker rebuilds them too, so that objects bound to a
process (an fsspec filesystem's event loop, an open file, a lock) are made
afresh in each worker, and a source that works with one start method works
with all.  ``fork`` is the default on Linux (see ``docs/loader.md``: it starts
workers in milliseconds and never re-imports the training script); a forked
worker closes the loader's ends of the pipes it inherited, so that it still
sees the loader go.  With ``spawn`` or ``forkserver``, a worker first
re-imports the program's main module; a script that starts a loader at import
time (no ``if __name__ == "__main__":`` guard) would start workers from the
worker, so such a worker leaves at once with :data:`MAIN_REIMPORTED` and the
loader raises one error that names the fix.

:class:`InlinePool` does the same work in the calling process (``workers=0``),
for debugging and for sources that cannot be pickled.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import select
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Literal

import numpy as np

from ..errors import LoaderError
from .slots import EPOCH, STOP, SlotLayout, SlotSegment
from .source import SampleSource
from .worker import (
    STOP_MESSAGE,
    Result,
    Task,
    WorkerConfig,
    decode_result,
    encode_task,
    fill,
    run_worker,
)

log = logging.getLogger("dicontour.loader")

#: Times a batch is handed to a worker before a worker death on it is fatal.
MAX_ATTEMPTS = 3
#: Workers that die before saying they are ready, in a row, before giving up.
MAX_FAILED_STARTS = 3
#: Seconds ``close`` waits for workers to exit on their own before terminating them.
#: A worker checks the stop flag between samples, so this is plenty unless one hangs.
GRACE = 0.5
#: How workers start: ``fork`` where it is safe to (Linux), else ``spawn``.
StartMethod = Literal["fork", "spawn", "forkserver"]
START_METHODS: tuple[StartMethod, ...] = ("fork", "spawn", "forkserver")
DEFAULT_START_METHOD: StartMethod = "fork" if sys.platform.startswith("linux") else "spawn"
#: Exit status of a worker that was asked to start workers while its start
#: method re-imported the program's main module (a script without a
#: ``__main__`` guard).  Any fixed value that Python itself never uses would do.
MAIN_REIMPORTED = 79


def describe_exit(exitcode: int | None) -> str:
    """``exit code 1``, ``signal SIGKILL`` or ``no exit code yet``."""
    if exitcode is None:
        return "no exit code yet"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class RemoteTraceback(Exception):
    """The traceback of an error in a worker, chained as the cause of its re-raise."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\nIn the worker:\n{self.text}"


@dataclass(eq=False)
class _Worker:
    number: int
    process: BaseProcess
    conn: Connection
    ready: bool = False
    pid: int | None = None
    tasks: dict[int, Task] = field(default_factory=dict)  # slot -> task in flight
    # A poll set of the pipe alone: Connection.poll() builds a selector per call.
    pipe: select.poll = field(default_factory=select.poll)


class _SlotViews:
    """The slot arrays of a pool's :class:`SlotSegment`."""

    segment: SlotSegment

    @property
    def images(self) -> np.ndarray:
        """float32 (slots, B, H, W): the image slots."""
        return self.segment.images

    @property
    def masks(self) -> np.ndarray:
        """bool (slots, B, H, W) or (slots, B, 2, H, W): the mask slots."""
        return self.segment.masks


class ProcessPool(_SlotViews):
    """Persistent worker processes writing batches into one slot segment.

    The pool owns the segment and the processes.  :meth:`close` stops both and
    is safe to call more than once and from a ``weakref.finalize`` (it never
    refers back to the loader).
    """

    def __init__(
        self,
        source: SampleSource,
        config: WorkerConfig,
        *,
        workers: int,
        start_method: StartMethod,
        timeout: float,
    ) -> None:
        self.source = source
        self.timeout = timeout
        self.workers = workers
        self.restarts = 0
        self.start_method = start_method
        if _importing_main():
            # This process is a worker being started by spawn or forkserver, which
            # re-imported the parent's main module, and that module's top level
            # builds a loader.  Leave quietly, with a status the parent recognises:
            # starting processes from here raises a page-long RuntimeError.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(MAIN_REIMPORTED)
        self._context = multiprocessing.get_context(start_method)
        # A process forked from the loader's (by os.fork or a fork-based pool)
        # inherits this object; only the creator may stop workers or unlink.
        self._owner = os.getpid()
        self._closed = False
        self._failed_starts = 0
        self._workers: list[_Worker] = []
        # One poll set for the pool's life (multiprocessing.connection.wait
        # builds and registers a new selector per call): fd -> worker.
        self._poll = select.poll()
        self._watched: dict[int, _Worker] = {}
        self.segment = SlotSegment.create(config.layout)
        self.config = replace(config, segment=self.segment.name)
        self._payload: bytes | None = None
        try:
            for number in range(workers):
                self._workers.append(self._start(number))
            # Pickled again for a restart: kept, it would hold the source's size
            # (about 60 bytes a sample for an index) in the training process.
            self._payload = None
        except BaseException:
            self.close()
            raise

    @property
    def layout(self) -> SlotLayout:
        return self.config.layout

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers (none once closed)."""
        if self._closed:
            return []
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def set_token(self, token: int) -> None:
        """Publish the current iteration token; workers skip tasks of older ones."""
        self.segment.control[EPOCH] = token

    def lend(self, slot: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Read-only views of a filled slot (see :meth:`SlotSegment.lend`)."""
        return self.segment.lend(slot, count)

    def lent(self, slot: int) -> bool:
        """Whether a view lent from ``slot`` is still alive."""
        return self.segment.lent(slot)

    def busy_slots(self) -> set[int]:
        """Slots that some worker is filling."""
        return {slot for w in self._workers for slot in w.tasks}

    def busy(self) -> bool:
        """Whether any worker has a task."""
        return any(w.tasks for w in self._workers)

    def _start(self, number: int) -> _Worker:
        payload = self._pickled(number)
        ours, theirs = self._context.Pipe(duplex=True)
        inherited: tuple[int, ...] = ()
        if self.start_method == "fork":
            # A forked worker holds copies of every open descriptor; the loader's
            # ends of the pipes must go, or a worker never reads EOF when the
            # loader dies (it would be holding its own pipe's other end).
            others = [w.conn.fileno() for w in self._workers if not w.conn.closed]
            inherited = (ours.fileno(), *others)
        # typeshed's BaseContext lacks Process; every context get_context returns has it
        process = self._context.Process(  # type: ignore[attr-defined]
            target=run_worker,
            args=(theirs, payload, number, inherited),
            name=f"dicontour-loader-{number}",
            daemon=True,
        )
        try:
            process.start()
        except Exception as exc:
            ours.close()
            raise LoaderError(
                f"cannot start loader worker {number} ({self.start_method}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker = _Worker(number, process, ours, pid=process.pid)
        self._watch(worker)
        return worker

    def _pickled(self, number: int) -> bytes:
        """The source and configuration as every worker receives them (pickled once)."""
        if self._payload is None:
            try:
                self._payload = pickle.dumps(
                    (self.source, self.config), protocol=pickle.HIGHEST_PROTOCOL
                )
            except Exception as exc:
                raise LoaderError(
                    f"cannot start loader worker {number}: {type(exc).__name__}: {exc}. "
                    f"Workers get a pickled copy of the source ({type(self.source).__name__}) "
                    "and its transform, so both must be picklable (module-level classes and "
                    "functions, no lambdas, locks or open files); workers=0 loads in this "
                    "process instead"
                ) from exc
        return self._payload

    def _watch(self, worker: _Worker) -> None:
        worker.pipe.register(worker.conn.fileno(), select.POLLIN)
        for fd in (worker.conn.fileno(), worker.process.sentinel):
            self._poll.register(fd, select.POLLIN)
            self._watched[fd] = worker

    def _unwatch(self, worker: _Worker) -> None:
        for fd in [fd for fd, watched in self._watched.items() if watched is worker]:
            self._poll.unregister(fd)
            del self._watched[fd]

    def submit(self, task: Task) -> None:
        """Send ``task`` to the least busy worker (ready workers first)."""
        worker = min(self._workers, key=lambda w: (not w.ready, len(w.tasks), w.number))
        worker.tasks[task.slot] = task
        # A dead worker's pipe refuses; its sentinel fires and the task is redone.
        with contextlib.suppress(OSError):
            worker.conn.send_bytes(encode_task(task))

    def receive(self, deadline: float, waiting_for: Callable[[], str]) -> list[Result]:
        """Wait until some results arrive, or a worker is replaced; raise at ``deadline``.

        Raises
        ------
        LoaderError
            Nothing arrived before ``deadline`` (naming ``waiting_for()``), a
            worker failed to start, or a batch killed its worker too often.
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoaderError(
                    f"timed out after {self.timeout:g} s waiting for {waiting_for()}; "
                    f"workers: {self.status()}"
                )
            # poll() takes milliseconds: round up, or a sub-millisecond rest spins.
            found = self._poll.poll(int(remaining * 1000) + 1)
            results: list[Result] = []
            dead: list[_Worker] = []
            for fd, _events in found:
                worker = self._watched[fd]
                if worker in dead:
                    continue
                if fd != worker.conn.fileno() or not self._drain(worker, results):
                    dead.append(worker)
            restarted = False
            for worker in dead:
                self._drain(worker, results)
                results += self._replace(worker)
                restarted = True
            if results or restarted:
                return results

    def _drain(self, worker: _Worker, results: list[Result]) -> bool:
        """Read every message waiting in ``worker``'s pipe; False once it is closed."""
        try:
            while worker.pipe.poll(0):
                message = decode_result(worker.conn.recv_bytes(), worker.number)
                if isinstance(message, Result):
                    worker.tasks.pop(message.slot, None)
                    self._failed_starts = 0
                    results.append(message)
                elif message[0] == "ready":
                    worker.ready = True
                elif message[0] == "fatal":
                    raise LoaderError(
                        f"worker {worker.number} could not start:\n{message[1]}".rstrip()
                    )
        except (EOFError, OSError, pickle.UnpicklingError):
            return False
        return True

    def _replace(self, worker: _Worker) -> list[Result]:
        """Start a new worker in place of a dead one and hand it the unfinished tasks."""
        worker.process.join(timeout=1.0)
        if worker.process.is_alive():  # its pipe broke but it lingers: make sure
            worker.process.kill()
            worker.process.join(timeout=1.0)
        exitcode = worker.process.exitcode
        how = describe_exit(exitcode)
        self._unwatch(worker)
        worker.conn.close()
        with contextlib.suppress(ValueError):
            worker.process.close()  # frees its sentinel now, not at garbage collection
        if not worker.ready:
            if exitcode == MAIN_REIMPORTED:
                raise LoaderError(_main_guard_message(self.start_method)) from None
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                hint = ""
                if self.start_method != "fork":
                    hint = (
                        f"; a {self.start_method} worker first re-imports this program's main "
                        "module: see the error it printed above"
                    )
                raise LoaderError(
                    f"worker {worker.number} died before it was ready ({how}), "
                    f"{self._failed_starts} starts in a row{hint}"
                )
        log.warning(
            "loader worker %d (pid %s) died (%s); starting a replacement and redoing %d batch(es)",
            worker.number,
            worker.pid,
            how,
            len(worker.tasks),
        )
        self.restarts += 1
        replacement = self._start(worker.number)
        self._workers[self._workers.index(worker)] = replacement
        cancelled: list[Result] = []
        current = int(self.segment.control[EPOCH])
        for task in worker.tasks.values():
            if task.token < current:  # an abandoned iteration: just give the slot back
                cancelled.append(Result(task.token, task.batch, task.slot, 0, cancelled=True))
                continue
            if task.attempts >= MAX_ATTEMPTS:
                raise LoaderError(
                    f"batch {task.batch} (samples {task.samples.tolist()}) was being read by "
                    f"a worker that died {task.attempts} times; the last one ended with {how}. "
                    "A sample in it may crash the reader (a segfault or running out of memory)."
                )
            self.submit(replace(task, attempts=task.attempts + 1))
        return cancelled

    def status(self) -> str:
        """One line per worker, for errors: number, pid, alive, tasks in flight."""
        parts = []
        for w in self._workers:
            state = "alive" if w.process.is_alive() else describe_exit(w.process.exitcode)
            ready = "" if w.ready else ", not ready"
            batches = sorted(t.batch for t in w.tasks.values())
            parts.append(f"#{w.number} pid {w.process.pid} {state}{ready}, batches {batches}")
        return "; ".join(parts)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the workers (politely, then by force) and unlink the segment; idempotent."""
        if self._closed or os.getpid() != self._owner:
            return
        self._closed = True
        try:
            if not self.segment.closed:
                self.segment.control[STOP] = 1
            for worker in self._workers:
                with contextlib.suppress(OSError, ValueError):
                    worker.conn.send_bytes(STOP_MESSAGE)
            deadline = time.monotonic() + GRACE
            # A worker whose process object is closed already was reaped when
            # its replacement failed to start: nothing left to stop.
            running = [w for w in self._workers if not _reaped(w.process)]
            for worker in running:
                # A worker still importing has nothing to finish: no need to wait.
                if worker.ready:
                    worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            for worker in running:
                if worker.process.is_alive():
                    worker.process.terminate()
                    worker.process.join(timeout=1.0)
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join(timeout=1.0)
        finally:
            for worker in self._workers:
                self._unwatch(worker)
                worker.conn.close()
                # ValueError: still running after SIGKILL; nothing more can be done.
                with contextlib.suppress(ValueError):
                    worker.process.close()
            self.segment.close()


def _importing_main() -> bool:
    """Whether this process is a worker whose start method is re-importing ``__main__``.

    The flag is the one ``multiprocessing`` itself checks before refusing to
    start a process during a child's bootstrap.
    """
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def _main_guard_message(start_method: str) -> str:
    main = sys.modules.get("__main__")
    name = getattr(main, "__file__", None) or "the main module"
    return (
        f"{name} builds a BatchLoader when it is imported, and {start_method} workers "
        're-import it: put the training code under `if __name__ == "__main__":` '
        '(or use start_method="fork")'
    )


def _reaped(process: BaseProcess) -> bool:
    """Whether ``process.close()`` was called (its object can tell nothing more)."""
    try:
        process.is_alive()
    except ValueError:
        return True
    return False


class InlinePool(_SlotViews):
    """The :class:`ProcessPool` interface, doing each task in the calling process.

    Slots live in ordinary memory; :meth:`receive` runs the oldest task.
    """

    restarts = 0
    pids: list[int] = []  # noqa: RUF012 - never changed

    def __init__(self, source: SampleSource, config: WorkerConfig) -> None:
        self.source = source
        self.config = config
        self.segment = SlotSegment.private(config.layout)
        self._tasks: deque[Task] = deque()
        self._closed = False

    def lend(self, slot: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        return self.segment.lend(slot, count)

    def lent(self, slot: int) -> bool:
        return self.segment.lent(slot)

    @property
    def layout(self) -> SlotLayout:
        return self.config.layout

    def set_token(self, token: int) -> None:
        self.segment.control[EPOCH] = token

    def busy_slots(self) -> set[int]:
        return {task.slot for task in self._tasks}

    def busy(self) -> bool:
        return bool(self._tasks)

    def submit(self, task: Task) -> None:
        self._tasks.append(task)

    def receive(self, deadline: float, waiting_for: Callable[[], str]) -> list[Result]:
        if not self._tasks:
            raise LoaderError(f"nothing is being loaded while waiting for {waiting_for()}")
        task = self._tasks.popleft()
        segment = self.segment
        result = fill(
            self.source, self.config, segment.images, segment.masks, segment.control, task
        )
        assert result is not None  # the stop flag is never set in-process
        return [result]

    def status(self) -> str:
        return f"in-process, pid {os.getpid()}"

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._tasks.clear()
        self.segment.close()
