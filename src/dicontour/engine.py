"""Where the work of a scan or a cache build runs: this process, a process pool, or Dask.

An *engine* runs one picklable function over many items.  Two ways to ask:

``map(fn, items)``
    The results in the order of ``items`` (the shape :func:`dicontour.scan`
    wants for its ``mapper``: one task per patient).
``run(fn, items)``
    ``(position, result)`` pairs in the order the tasks finish (a cache build:
    one task per shard, with a progress bar that moves as shards land).

Both keep a bounded number of tasks in flight, so the memory of the parent and
of the scheduler stays flat however many items there are.  A task that raises
is reported in the parent with its item number, the worker's exception type,
message and traceback, whatever that exception's pickling support.

Engines
-------
:class:`LocalEngine`
    ``workers=0`` or ``1`` runs in this process; more workers use a pool of fresh
    (``spawn``) processes, which rebuild any fsspec filesystem from its URL and
    read credentials from the environment they start with.
:class:`DaskEngine`
    A ``dask.distributed`` cluster: a ``LocalCluster`` on loopback by default,
    or an existing scheduler (``tcp://host:8786``).  A worker lost mid-run is
    survived: the scheduler runs its tasks again on another worker, which is
    safe because every dicontour task is idempotent.  Needs ``dicontour[dask]``.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from ._process import exit_with_parent
from .errors import DicontourError

T = TypeVar("T")
R = TypeVar("R")

EngineKind = Literal["local", "dask"]
#: Tasks in flight per worker: enough to keep workers busy between hand-offs,
#: few enough that queued task arguments never dominate memory.
IN_FLIGHT_PER_WORKER = 2
#: Seconds :meth:`LocalEngine.close` lets workers finish their task before
#: terminating them.
CLOSE_GRACE_SECONDS = 5.0


class EngineError(DicontourError, RuntimeError):
    """An engine cannot start or a task failed in a way that has no better error type."""


class Engine(Protocol):
    """What scans and cache builds need from an engine (see the module docstring)."""

    workers: int

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...

    def run(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Failure:
    """A task's exception, carried back as data."""

    position: int
    error: BaseException | None  # None when the exception does not survive pickling
    kind: str
    message: str
    trace: str

    def reraise(self) -> None:
        if self.error is not None:
            if hasattr(self.error, "add_note"):  # Python >= 3.11
                self.error.add_note(f"raised by task {self.position} in a worker:\n{self.trace}")
            raise self.error
        raise EngineError(f"task {self.position} failed: {self.kind}: {self.message}\n{self.trace}")


def _portable(error: BaseException) -> BaseException | None:
    """``error`` if it survives a pickle round trip (some custom exceptions do not)."""
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:
        return None


@dataclass(frozen=True)
class _Guarded:
    """``fn`` with its exceptions returned as :class:`_Failure` values (picklable)."""

    fn: Callable[[Any], Any]

    def __call__(self, numbered: tuple[int, Any]) -> Any:
        position, item = numbered
        try:
            return self.fn(item)
        except Exception as exc:
            return _Failure(
                position,
                _portable(exc),
                type(exc).__name__,
                str(exc),
                "".join(traceback.format_exception(exc)),
            )


def _unwrap(result: Any) -> Any:
    if isinstance(result, _Failure):
        result.reraise()
    return result


class _Base:
    """Shared ``map``/``run`` over a ``submit``/``wait-for-one`` pair."""

    workers: int

    def __enter__(self) -> _Base:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _window(self) -> int:
        return max(2, IN_FLIGHT_PER_WORKER * self.workers)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Run ``fn`` on every item; yield the results in the order of ``items``."""
        pending: dict[int, Any] = {}
        following = 0
        for position, result in self.run(fn, items):
            pending[position] = result
            while following in pending:
                yield pending.pop(following)
                following += 1

    def run(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        raise NotImplementedError  # pragma: no cover - overridden


def _start_worker(parent: int) -> None:
    """Initializer of a pool worker: quiet on Ctrl-C, gone when the parent is."""
    # Ctrl-C reaches the whole process group: the parent stops the run and shuts the
    # pool down; workers finish their task quietly instead of dying with a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A parent killed with SIGKILL shuts nothing down: without this, idle workers would
    # wait on the task queue forever.
    exit_with_parent(parent)


class LocalEngine(_Base):
    """Run tasks in this process (``workers=0`` or ``1``) or in a pool of fresh processes.

    Parameters
    ----------
    workers : int, optional
        Worker processes; the number of CPUs by default.  With 0 or 1, tasks
        run in this process, one after another, without starting anything
        (0 says so explicitly, as ``BatchLoader(workers=0)`` does).

    Notes
    -----
    Workers are started with ``spawn``: they share no threads, event loops or
    cached filesystems with the parent, and see the environment (credentials,
    ``AWS_ENDPOINT_URL_S3``...) as it is when the pool starts.  A worker that
    dies (killed, out of memory) stops the run with :class:`EngineError`; work
    already written by finished tasks is kept (a cache build resumes from it).
    Workers end by themselves within a fraction of a second when this process
    dies without closing the pool (``kill -9``), see :mod:`dicontour._process`.

    Examples
    --------
    >>> with LocalEngine(workers=1) as engine:
    ...     list(engine.map(abs, [-2, 3, -4]))
    [2, 3, 4]
    """

    def __init__(self, workers: int | None = None) -> None:
        count = (os.cpu_count() or 1) if workers is None else workers
        if count < 0:
            raise ValueError(f"workers must be at least 0 (0: in this process), got {workers!r}")
        self.workers = count
        self._pool: ProcessPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"LocalEngine(workers={self.workers})"

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(os.getpid(),),
            )
        return self._pool

    def run(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        """Run ``fn`` on every item; yield ``(position, result)`` as tasks finish."""
        if self.workers <= 1:
            for position, item in enumerate(items):
                yield position, fn(item)
            return
        guarded = _Guarded(fn)
        pool = self._executor()
        numbered = enumerate(items)
        running: dict[Future, int] = {}
        try:
            for pair in numbered:
                running[pool.submit(guarded, pair)] = pair[0]
                if len(running) >= self._window():
                    break
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    position = running.pop(future)
                    yield position, _unwrap(future.result())
                    for pair in numbered:
                        running[pool.submit(guarded, pair)] = pair[0]
                        break
        except BrokenProcessPool as exc:
            self.close()
            raise EngineError(
                "a worker process of the local engine died (killed or out of memory); "
                "finished work is kept, run again to resume"
            ) from exc
        finally:
            for future in running:
                future.cancel()

    def close(self) -> None:
        """Stop the worker processes (idempotent), never waiting forever.

        Queued tasks are cancelled; workers get :data:`CLOSE_GRACE_SECONDS` to
        finish their current task, then are terminated (a task blocked in a
        system call would otherwise hold ``close`` and Ctrl-C for good).
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # The executor keeps its processes private; they are the only handle on a
        # worker stuck in a task, which shutdown(wait=True) would wait on forever.
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + CLOSE_GRACE_SECONDS
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(1.0)
            if worker.is_alive():
                worker.kill()
                worker.join(1.0)
        manager = getattr(pool, "_executor_manager_thread", None)
        if manager is not None:
            manager.join(1.0)  # it ends once its workers have


def _distributed() -> Any:
    """Import ``dask.distributed``, naming the extra to install when it is missing."""
    try:
        import distributed
    except ImportError as exc:
        raise EngineError(
            "the Dask engine needs dask.distributed, which is not installed: "
            "pip install 'dicontour[dask]' (on the client and on every worker)"
        ) from exc
    return distributed


class DaskEngine(_Base):
    """Run tasks on a ``dask.distributed`` cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).  Without it, a
        ``LocalCluster`` of ``workers`` single-threaded worker processes is
        started on 127.0.0.1 with the dashboard off, and closed by :meth:`close`.
    workers : int, optional
        Workers of the local cluster (the number of CPUs by default); not
        allowed with ``scheduler``.
    timeout : float
        Seconds to wait for the scheduler to answer.

    Notes
    -----
    dicontour must be installed on every worker (the tasks are dicontour
    functions), and each worker reads data with its own credentials: those of
    its environment and config files, never sent from the client.  When a
    worker dies, the scheduler runs its tasks again elsewhere (up to Dask's
    ``distributed.scheduler.allowed-failures`` times per task).

    Examples
    --------
    >>> with DaskEngine(workers=2) as engine:                  # doctest: +SKIP
    ...     list(engine.map(abs, [-2, 3]))
    [2, 3]
    """

    def __init__(
        self, scheduler: str | None = None, *, workers: int | None = None, timeout: float = 30.0
    ) -> None:
        if scheduler is not None and workers is not None:
            raise ValueError(
                "workers applies to the local cluster only; with a scheduler address the "
                "cluster's own workers are used"
            )
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        distributed = _distributed()
        self._cluster = None
        try:
            if scheduler is None:
                self._cluster = distributed.LocalCluster(
                    n_workers=workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",
                )
                self.client = distributed.Client(self._cluster, timeout=timeout)
            else:
                self.client = distributed.Client(scheduler, timeout=timeout)
        except OSError as exc:  # timeouts and refused connections
            if self._cluster is not None:
                self._cluster.close()
            raise EngineError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from exc
        self.scheduler = scheduler if self._cluster is None else self._cluster.scheduler_address
        threads = self.client.nthreads()
        self.workers = max(1, sum(threads.values()))

    def __repr__(self) -> str:
        return f"DaskEngine({self.scheduler!r}, workers={self.workers})"

    def run(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        """Run ``fn`` on every item on the cluster; yield ``(position, result)`` as tasks finish."""
        distributed = _distributed()
        guarded = _Guarded(fn)
        numbered = enumerate(items)
        finished = distributed.as_completed()
        running: dict[str, tuple[int, Any]] = {}

        def submit(pair: tuple[int, Any]) -> None:
            # pure=False: a task's key must not be shared with an earlier run's task.
            future = self.client.submit(guarded, pair, pure=False)
            running[future.key] = (pair[0], future)
            finished.add(future)

        for pair in numbered:
            submit(pair)
            if len(running) >= self._window():
                break
        try:
            for future in finished:
                position, _ = running.pop(future.key)
                result = future.result()
                future.release()
                yield position, _unwrap(result)
                for pair in numbered:
                    submit(pair)
                    break
        finally:
            finished.clear()
            if running and self.client is not None:
                self.client.cancel([future for _, future in running.values()])
            running.clear()

    def close(self) -> None:
        """Disconnect; stop the local cluster if this engine started one (idempotent)."""
        client, self.client = getattr(self, "client", None), None
        cluster, self._cluster = self._cluster, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def open_engine(
    kind: EngineKind | None = "local",
    *,
    workers: int | None = None,
    scheduler: str | None = None,
) -> LocalEngine | DaskEngine:
    """Make an engine from command-line style options.

    Parameters
    ----------
    kind : {"local", "dask"}
        ``"local"``: :class:`LocalEngine`; ``"dask"``: :class:`DaskEngine`.
        ``scheduler`` implies ``"dask"``.
    workers : int, optional
        Worker processes (local pool or local Dask cluster).
    scheduler : str, optional
        Address of a running Dask scheduler.

    Raises
    ------
    ValueError
        ``scheduler`` with ``kind="local"``, or ``workers`` with ``scheduler``.
    EngineError
        Dask is not installed, or the scheduler does not answer.

    Examples
    --------
    >>> with open_engine("local", workers=1) as engine:
    ...     list(engine.map(len, ["a", "bc"]))
    [1, 2]
    """
    if scheduler is not None and kind == "local":
        raise ValueError("a scheduler address needs the dask engine (--engine dask)")
    if kind == "dask" or scheduler is not None:
        return DaskEngine(scheduler, workers=workers)
    if kind in ("local", None):
        return LocalEngine(workers)
    raise ValueError(f"engine must be 'local' or 'dask', got {kind!r}")
