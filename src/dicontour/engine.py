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
    processes (forked from a ``forkserver`` that has imported dicontour once),
    which rebuild any fsspec filesystem from its URL and read credentials from
    the environment of this process as it is when the pool starts.
:class:`DaskEngine`
    A ``dask.distributed`` cluster: a ``LocalCluster`` on loopback by default,
    or an existing scheduler (``tcp://host:8786``, a ``Client``, a cluster
    object).  A worker lost mid-run is survived: the scheduler runs its tasks
    again on another worker, which is safe because every dicontour task is
    idempotent.  Workers that join late are used as they arrive; a lost
    scheduler, a task whose workers keep dying or no worker at all end the run
    with one :class:`~dicontour.errors.EngineError`.  Needs ``dicontour[dask]``.

``each_worker(fn, *args)`` runs a check once on every worker of a cluster
(``{}`` for the local engine, whose workers are this machine's processes):
:mod:`dicontour._reach` uses it to check that workers see ROOT and CACHE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from ._process import exit_with, exit_with_parent
from ._timeouts import CONNECT_TIMEOUT as CONNECT_TIMEOUT  # re-exported
from ._timeouts import NO_WORKER_TIMEOUT as NO_WORKER_TIMEOUT  # re-exported
from .errors import EngineError

__all__ = [
    "CONNECT_TIMEOUT",
    "IN_FLIGHT_PER_WORKER",
    "NO_WORKER_TIMEOUT",
    "DaskEngine",
    "Engine",
    "EngineError",
    "LocalEngine",
    "open_engine",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

EngineKind = Literal["local", "dask"]
#: Tasks in flight per worker: enough to keep workers busy between hand-offs,
#: few enough that queued task arguments never dominate memory.
IN_FLIGHT_PER_WORKER = 2
#: Seconds :meth:`LocalEngine.close` lets workers finish their task before
#: terminating them.
CLOSE_GRACE_SECONDS = 5.0
#: How often a Dask run looks at the workers present (to widen its window, to
#: notice that none is left); also the age of the worker count it uses.
_REFRESH_SECONDS = 0.5


class Engine(Protocol):
    """What scans and cache builds need from an engine (see the module docstring)."""

    @property
    def workers(self) -> int:  # read-only: DaskEngine counts the workers connected now
        ...

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...

    def run(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]: ...

    def each_worker(self, fn: Callable[..., R], *args: Any) -> dict[str, R | BaseException]: ...

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
    version: str | None = None  # the client's dicontour: a worker with another refuses

    def __call__(self, numbered: tuple[int, Any]) -> Any:
        position, item = numbered
        try:
            if self.version is not None and self.version != _worker_version():
                raise EngineError(
                    f"a Dask worker runs dicontour {_worker_version()}, the client runs "
                    f"{self.version}: install dicontour=={self.version} on every worker"
                )
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


#: Modules the forkserver imports once, before forking the workers: what a scan's
#: and a cache build's tasks need.  Each spawned worker used to import them itself,
#: about 0.45 CPU-second each (see benchmarks/bench_start.py), and then paid about
#: 0.3 CPU-second more at its first compiled kernel call (``dicontour._warm``).
PRELOAD = (
    "__main__",
    "dicontour.cache._build",
    "dicontour.scan",
    "dicontour.index",
    "dicontour._warm",
)


def _context() -> multiprocessing.context.BaseContext:
    """The pool's start method: ``forkserver`` where the platform has it, else ``spawn``.

    The forkserver is a fresh interpreter (no threads, event loops or cached
    filesystems of this process), started once per process; every worker is
    forked from it with dicontour already imported.  ``__main__`` stays first in
    its preload list, as in multiprocessing's default.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))  # read only when the server starts
    return context


def _start_worker(parent: int, environment: dict[str, str] | None = None) -> None:
    """Initializer of a pool worker: quiet on Ctrl-C, gone when the pool's process is.

    ``parent`` is the pid of the pool's process, recorded there.  With
    ``environment`` (a worker forked by the forkserver, a child of the server
    and not of ``parent``), that environment replaces the server's.
    """
    # Ctrl-C reaches the whole process group: the parent stops the run and shuts the
    # pool down; workers finish their task quietly instead of dying with a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if environment is None:
        # A parent killed with SIGKILL shuts nothing down: without this, idle workers
        # would wait on the task queue forever.
        exit_with_parent(parent)
        return
    # The server's environment is frozen from when it started; the pool's process
    # may have changed its own since (credentials, AWS_ENDPOINT_URL_S3...).
    os.environ.clear()
    os.environ.update(environment)
    # The server does not end with the pool's process while its workers live (they
    # hold its pipe): watch the pool's process itself.
    exit_with(parent)


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
    Workers are forked from a ``forkserver`` (``spawn`` where there is none),
    a fresh interpreter that imported dicontour once (:data:`PRELOAD`): they
    share no threads, event loops or cached filesystems with the parent, and see
    the parent's environment (credentials, ``AWS_ENDPOINT_URL_S3``...) as it is
    when the pool starts.  A worker that
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

    def each_worker(self, fn: Callable[..., R], *args: Any) -> dict[str, R | BaseException]:
        """Nothing to ask (``{}``): the workers are processes of this machine, seeing its files."""
        return {}

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = _context()
            served = context.get_start_method() == "forkserver"
            environment = dict(os.environ) if served else None
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(os.getpid(), environment),
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
        # Taken before shutdown(wait=False), which forgets it.  It reaps the workers
        # too: until it has, a worker it reaped first still reads as alive here.
        manager = getattr(pool, "_executor_manager_thread", None)
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


def _worker_version() -> str:
    """The dicontour version of the process this runs in (a worker's, on a cluster)."""
    # Not a cycle dodge: the package front imports this module, and this runs later,
    # on a worker, where only the import tells which dicontour is installed.
    import dicontour

    return dicontour.__version__


#: Loggers of a Dask client that report a lost scheduler with tracebacks, from the
#: client's own thread: the run reports it as one EngineError instead.
_CLIENT_LOGGERS = ("distributed.batched", "distributed.client", "distributed.utils")
_silenced: list[int] = []  # the loggers' own levels, while any DaskEngine is open
_silencers = 0


def _silence_client_logs(on: bool) -> None:
    """Silence :data:`_CLIENT_LOGGERS` while at least one engine asks for it."""
    global _silencers
    loggers = [logging.getLogger(name) for name in _CLIENT_LOGGERS]
    if on:
        if _silencers == 0:
            _silenced[:] = [logger.level for logger in loggers]
            for logger in loggers:
                logger.setLevel(logging.CRITICAL + 1)
        _silencers += 1
    elif _silencers > 0:
        _silencers -= 1
        if _silencers == 0:
            for logger, level in zip(loggers, _silenced, strict=True):
                logger.setLevel(level)


def _label(item: Any, position: int) -> str:
    """How an error names a task: the item's own ``label`` (a shard, a patient) or its number."""
    label = getattr(item, "label", None)
    return label if isinstance(label, str) else f"task {position}"


def _first(running: dict[Any, tuple[int, Any]], default: str) -> str:
    """The label of the earliest task still running (``default`` when none is)."""
    if not running:
        return default
    position, item = min(running.values(), key=lambda pair: pair[0])
    return _label(item, position)


RESUME = "run the same command again to resume (a cache build keeps the shards already written)"


class DaskEngine(_Base):
    """Run tasks on a ``dask.distributed`` cluster.

    Parameters
    ----------
    scheduler : str, Client or cluster, optional
        Address of a running scheduler (``tcp://host:8786``), a connected
        ``distributed.Client`` (used as is, never closed here), or a cluster
        object with a ``scheduler_address`` (``KubeCluster``,
        ``SLURMCluster``; connected to, never closed here).  Without it, a
        ``LocalCluster`` of ``workers`` single-threaded worker processes is
        started on 127.0.0.1 with the dashboard off, and closed by :meth:`close`.
    workers : int, optional
        Workers of the local cluster (the number of CPUs by default); not
        allowed with ``scheduler``.
    timeout : float
        Seconds to wait for the scheduler to answer (:data:`CONNECT_TIMEOUT`).
    no_worker_timeout : float
        Seconds tasks may wait while no worker at all is connected before a run
        gives up with :class:`EngineError` (:data:`NO_WORKER_TIMEOUT`).

    Raises
    ------
    EngineError
        The scheduler does not answer within ``timeout``, or a connected
        worker cannot run dicontour or runs another version of it (the
        message names the worker).

    Notes
    -----
    dicontour must be installed on every worker, the same version as here: it
    is checked when connecting, and every task refuses to run on a worker with
    another version (one that joins later included).  Each worker reads data
    with its own credentials and endpoint settings: those of its environment
    and config files, never sent from the client.  When a worker dies, the
    scheduler runs its tasks again elsewhere (up to Dask's
    ``distributed.scheduler.allowed-failures`` times per task).

    The number of tasks in flight follows the workers present each time tasks
    are handed out (:data:`IN_FLIGHT_PER_WORKER` per worker thread), so workers
    that join after the connection are used as soon as they arrive.  A lost
    scheduler, a task whose workers keep dying, or no worker for
    ``no_worker_timeout`` seconds end the run with one :class:`EngineError`
    naming the task (``shard 000003``, ``patient SCD0000101``).

    Examples
    --------
    >>> with DaskEngine(workers=2) as engine:                  # doctest: +SKIP
    ...     list(engine.map(abs, [-2, 3]))
    [2, 3]
    """

    def __init__(
        self,
        scheduler: Any = None,
        *,
        workers: int | None = None,
        timeout: float = CONNECT_TIMEOUT,
        no_worker_timeout: float = NO_WORKER_TIMEOUT,
    ) -> None:
        if scheduler is not None and workers is not None:
            raise ValueError(
                "workers applies to the local cluster only; with a scheduler address the "
                "cluster's own workers are used"
            )
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        for name, value in (("timeout", timeout), ("no_worker_timeout", no_worker_timeout)):
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        distributed = _distributed()
        self._cluster = None
        self._owns_client = True
        self.no_worker_timeout = float(no_worker_timeout)
        self._threads = (0, float("-inf"))  # (worker threads, when last asked)
        target = scheduler
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
            elif isinstance(scheduler, distributed.Client):
                self.client, self._owns_client = scheduler, False
            else:
                # A cluster object (KubeCluster, SLURMCluster...) is reached by its address.
                target = getattr(scheduler, "scheduler_address", scheduler)
                self.client = distributed.Client(target, timeout=timeout)
        except OSError as exc:  # timeouts and refused connections
            if self._cluster is not None:
                self._cluster.close()
            raise EngineError(
                f"cannot reach the Dask scheduler {target} within {timeout:g} s "
                f"({type(exc).__name__}); is it running, and is the address right? "
                "(--connect-timeout SECONDS waits longer)"
            ) from exc
        # A client whose scheduler is gone logs its failed reconnection as ERRORs with
        # tracebacks, from its own thread: the run says what happened, in one line.
        self._silencing = True
        _silence_client_logs(True)
        self.scheduler = (
            self._cluster.scheduler_address
            if self._cluster is not None
            else self.client.scheduler.address
        )
        try:
            self._check_workers()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"DaskEngine({self.scheduler!r}, workers={self.workers})"

    @property
    def workers(self) -> int:  # type: ignore[override]
        """Worker threads connected now (asked from the scheduler at most twice a second)."""
        threads, asked = self._threads
        now = time.monotonic()
        if now - asked >= _REFRESH_SECONDS and self.client is not None:
            threads = sum(self.client.nthreads().values())
            self._threads = (threads, now)
        return threads

    def _check_workers(self) -> None:
        """Refuse workers that cannot run this dicontour; warn when there is none yet."""
        mine = _worker_version()
        found = self.each_worker(_worker_version)
        if not found:
            logger.warning(
                "no worker is connected to the Dask scheduler %s yet: tasks wait for one, "
                "for at most %g s (--no-worker-timeout)",
                self.scheduler,
                self.no_worker_timeout,
            )
            return
        install = f"install dicontour=={mine} on every worker"
        for worker, version in sorted(found.items()):
            if isinstance(version, BaseException):
                raise EngineError(
                    f"Dask worker {worker} cannot run dicontour ({type(version).__name__}: "
                    f"{version}): {install}"
                )
            if version != mine:
                raise EngineError(
                    f"Dask worker {worker} runs dicontour {version}, this process runs "
                    f"{mine}: {install}"
                )

    def each_worker(self, fn: Callable[..., R], *args: Any) -> dict[str, R | BaseException]:
        """``fn(*args)`` once on every connected worker: ``{worker address: result or error}``.

        Used to check that the workers see what this process sees (see
        :mod:`dicontour._reach`).
        """
        try:
            return self.client.run(fn, *args, on_error="return")
        except Exception as exc:
            raise self._lost(exc, "checking the workers") from exc

    def _lost(self, exc: BaseException, label: str) -> EngineError:
        """One line for a cluster failure (not a task's own error) that stopped ``label``."""
        kind = type(exc).__name__
        if kind == "KilledWorker":
            return EngineError(
                f"{label}: the Dask workers running it died, too many times (out of memory? "
                f"killed?); give workers more memory or fewer threads, then {RESUME}"
            )
        if isinstance(exc, (OSError, CancelledError, asyncio.CancelledError)) or kind in (
            "FutureCancelledError",
            "FuturesCancelledError",
            "CommClosedError",
        ):
            return EngineError(
                f"{label}: lost the Dask scheduler {self.scheduler} ({kind}); restart the "
                f"scheduler and its workers, then {RESUME}"
            )
        return EngineError(f"{label}: the Dask cluster could not run it ({kind}: {exc}); {RESUME}")

    def run(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        """Run ``fn`` on every item on the cluster; yield ``(position, result)`` as tasks finish."""
        distributed = _distributed()
        guarded = _Guarded(fn, _worker_version())
        numbered = enumerate(items)
        running: dict[Any, tuple[int, Any]] = {}  # future -> (position, item)
        exhausted, alone_since = False, None
        label = "the first task"
        try:
            while True:
                try:
                    # The window follows the workers present now, not those at connect time.
                    room = self._window() - len(running)
                except Exception as exc:
                    raise self._lost(exc, _first(running, label)) from exc
                while room > 0 and not exhausted:
                    pair = next(numbered, None)  # the caller's generator: its errors are its own
                    if pair is None:
                        exhausted = True
                        break
                    label = _label(pair[1], pair[0])
                    try:
                        # pure=False: a task's key must not be shared with an earlier run's.
                        running[self.client.submit(guarded, pair, pure=False)] = pair
                    except Exception as exc:
                        raise self._lost(exc, label) from exc
                    room -= 1
                if not running:
                    return
                try:
                    done, _ = distributed.wait(
                        list(running), timeout=_REFRESH_SECONDS, return_when="FIRST_COMPLETED"
                    )
                except TimeoutError:
                    try:
                        alone_since = self._alone(alone_since, running)
                    except EngineError:
                        raise
                    except Exception as exc:
                        raise self._lost(exc, _first(running, label)) from exc
                    continue
                except Exception as exc:
                    raise self._lost(exc, _first(running, label)) from exc
                alone_since = None
                for future in done:
                    position, item = running.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:
                        raise self._lost(exc, _label(item, position)) from exc
                    finally:
                        future.release()
                    yield position, _unwrap(result)
        finally:
            if running and self.client is not None:
                with contextlib.suppress(Exception):
                    self.client.cancel(list(running))
            running.clear()

    def _window(self) -> int:
        return max(2, IN_FLIGHT_PER_WORKER * self.workers)

    def _alone(self, since: float | None, running: dict[Any, tuple[int, Any]]) -> float | None:
        """When the workers left (None: some are here); raise once that lasts too long."""
        if self.workers:
            return None
        now = time.monotonic()
        if since is None:
            return now
        if now - since >= self.no_worker_timeout:
            raise EngineError(
                f"{_first(running, 'a task')}: no Dask worker connected to {self.scheduler} for "
                f"{now - since:.0f} s (--no-worker-timeout); start workers "
                f"(`dask worker {self.scheduler}`), then {RESUME}"
            )
        return since

    def close(self) -> None:
        """Disconnect; stop the local cluster if this engine started one (idempotent).

        Never raises: a scheduler already gone is reported by the run, not here.
        """
        client, self.client = getattr(self, "client", None), None
        cluster, self._cluster = getattr(self, "_cluster", None), None
        if client is not None and self._owns_client:
            with contextlib.suppress(Exception):
                client.close(timeout=CLOSE_GRACE_SECONDS)
        if getattr(self, "_silencing", False):
            self._silencing = False
            _silence_client_logs(False)
        if cluster is not None:
            cluster.close()


def open_engine(
    kind: EngineKind | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    no_worker_timeout: float = NO_WORKER_TIMEOUT,
) -> LocalEngine | DaskEngine:
    """Make an engine from command-line style options.

    Parameters
    ----------
    kind : {"local", "dask"}, optional
        ``"local"``: :class:`LocalEngine`; ``"dask"``: :class:`DaskEngine`.
        Not given: ``"dask"`` with a ``scheduler``, ``"local"`` without.
    workers : int, optional
        Worker processes (local pool or local Dask cluster).
    scheduler : str, optional
        Address of a running Dask scheduler.
    connect_timeout, no_worker_timeout : float
        Seconds, see :class:`DaskEngine` (``timeout``, ``no_worker_timeout``).

    Raises
    ------
    ValueError
        ``scheduler`` with ``kind="local"``, or ``workers`` with ``scheduler``.
    EngineError
        Dask is not installed, the scheduler does not answer, or a worker
        cannot run this version of dicontour.

    Examples
    --------
    >>> with open_engine("local", workers=1) as engine:
    ...     list(engine.map(len, ["a", "bc"]))
    [1, 2]
    """
    if scheduler is not None and kind == "local":
        raise ValueError("a scheduler address needs the dask engine (--engine dask)")
    if kind == "dask" or scheduler is not None:
        return DaskEngine(
            scheduler,
            workers=workers,
            timeout=connect_timeout,
            no_worker_timeout=no_worker_timeout,
        )
    if kind in ("local", None):
        return LocalEngine(workers)
    raise ValueError(f"engine must be 'local' or 'dask', got {kind!r}")
