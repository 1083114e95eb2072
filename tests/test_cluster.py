"""The Dask engine on a real multi-process cluster: `dask scheduler` and `dask worker` processes.

Started by the tests on 127.0.0.1 (free ports), each in its own process group,
and killed with their whole group when the test or module ends.  A worker
"without a shared filesystem" runs in its own mount namespace (``unshare
--mount``) with an empty tmpfs over the folder holding the test's data: it
sees the same path, empty, as a node without the client's disk would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import CACHE_PHANTOM, tree_bytes

import dicontour
import dicontour.cache._build as build_module
from dicontour.cache import build_cache
from dicontour.cli import main
from dicontour.engine import DaskEngine
from dicontour.errors import CacheError, EngineError
from dicontour.phantom import write_phantom

pytest.importorskip("distributed", reason="dask.distributed is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: The worktree's dicontour, for the worker processes (they import it to run tasks).
SOURCE = str(Path(dicontour.__file__).resolve().parents[1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def stop(process: subprocess.Popen) -> None:
    """Kill the process and everything it started (its own process group)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children the group leader left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


class Processes:
    """Start `dask scheduler` / `dask worker` processes; :meth:`close` stops every one."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.started = logs, []

    def _start(self, argv: list[str], name: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")]),
        }
        log = open(self.logs / f"{name}-{len(self.started)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self.started.append(process)
        return process

    def scheduler(self) -> tuple[str, subprocess.Popen]:
        port = free_port()
        process = self._start(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                ":0",
                "--no-show",
            ],
            "scheduler",
        )
        wait_for_port(port, process)
        return f"tcp://127.0.0.1:{port}", process

    def worker(self, address: str, *, hide: Path | None = None) -> subprocess.Popen:
        """One single-threaded worker without nanny; ``hide``: an empty tmpfs over that folder."""
        argv = [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            address,
            "--nthreads",
            "1",
            "--no-nanny",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            "--memory-limit",
            "0",
        ]
        if hide is not None:
            script = f'mount -t tmpfs tmpfs "{hide}" && exec "$@"'
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                *argv,
            ]
        return self._start(argv, "worker")

    def close(self) -> None:
        for process in reversed(self.started):
            stop(process)
        self.started.clear()


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    started = Processes(tmp_path_factory.mktemp("cluster-logs"))
    try:
        yield started
    finally:
        started.close()


def wait_for_workers(address: str, count: int, timeout: float = 30) -> None:
    import distributed

    with distributed.Client(address, timeout=10) as client:
        client.wait_for_workers(count, timeout=timeout)


@pytest.fixture(scope="module")
def dataset(phantom: Callable[..., Path]) -> Path:
    return phantom(**CACHE_PHANTOM)


@pytest.fixture(scope="module")
def empty_scheduler(processes: Processes) -> str:
    """A scheduler that starts with no worker (workers come and go per test)."""
    address, _ = processes.scheduler()
    return address


# ------------------------------------------------------------------ no worker, then late workers


def test_no_worker_is_a_clear_error_within_the_stated_time(
    empty_scheduler: str, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    argv = ["scan", str(dataset), "--scheduler", empty_scheduler, "--no-worker-timeout", "2"]
    assert main(argv) == 1  # --scheduler alone: the dask engine, not a usage error
    elapsed = time.monotonic() - began
    err = capsys.readouterr().err.strip().splitlines()
    assert f"no worker is connected to the Dask scheduler {empty_scheduler}" in err[0]
    assert len(err) == 2 and err[1].startswith("dicontour: error: patient ")
    assert "no Dask worker connected" in err[1] and "--no-worker-timeout" in err[1]
    assert 2 <= elapsed < 10


def test_workers_that_join_after_the_client_connects_are_all_used(
    empty_scheduler: str, processes: Processes
) -> None:
    with DaskEngine(empty_scheduler) as engine:
        assert engine.workers == 0
        late = [processes.worker(empty_scheduler) for _ in range(4)]
        try:
            wait_for_workers(empty_scheduler, 4)
            began = time.monotonic()
            spans = [span for _, span in engine.run(_sleep_one_second(), range(16))]
            elapsed = time.monotonic() - began
        finally:
            for worker in late:
                stop(worker)
    running = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    # 16 one-second tasks on 4 single-threaded workers: 4 rounds, all 4 busy at once.
    # A window fixed at connect time (no worker: 2 tasks) kept 2 running for ~8 s.
    assert running == 4
    assert elapsed < 7, f"{elapsed:.1f} s"


def _sleep_one_second() -> Callable[[int], tuple[float, float]]:
    def task(_: int) -> tuple[float, float]:  # a closure: shipped by value to the workers
        start = time.time()
        time.sleep(1.0)
        return start, time.time()

    return task


# ------------------------------------------------------------------ a worker without the disk


@pytest.fixture(scope="module")
def blind(processes: Processes, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A scheduler whose one worker sees an empty folder where ``hidden`` holds data here."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root to give a worker its own mount namespace")
    hidden = tmp_path_factory.mktemp("hidden")
    write_phantom(hidden / "data", patients=2, slices=6, shape=(32, 32), faults=False)
    address, _ = processes.scheduler()
    processes.worker(address, hide=hidden)
    wait_for_workers(address, 1)
    return address, hidden


def test_a_worker_that_cannot_see_root_reports_problems_not_empty_patients(
    blind: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    address, hidden = blind
    with DaskEngine(address) as engine:
        index = dicontour.scan(hidden / "data", mapper=engine.map)
    assert len(index) == 0
    codes = {(p.code, p.path) for p in index.problems}
    assert codes == {
        ("root-unreachable", "dicoms/PHA00001"),
        ("root-unreachable", "dicoms/PHA00002"),
    }
    # The command line refuses before scanning, and says how to fix it.
    assert main(["scan", str(hidden / "data"), "--scheduler", address, "--strict"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dicontour: error: ")
    assert "does not see this dataset root" in err[0] and "same shared filesystem" in err[0]


def test_a_worker_that_cannot_see_cache_makes_the_build_fail(
    blind: tuple[str, Path], dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, hidden = blind
    # ROOT is seen (it is not under the hidden folder), CACHE is not.
    cache = hidden / "cache"
    argv = ["cache", "build", str(dataset), str(cache), "--scheduler", address, "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not see this cache" in err[0]
    assert not (cache / "manifest.json").exists()


def test_shards_written_where_the_client_cannot_see_them_are_not_sealed(
    blind: tuple[str, Path], dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, hidden = blind
    cache = hidden / "cache-unchecked"
    # Without the check at the start (a worker that loses the mount mid-build), the
    # shards land on the worker's side only: the client must refuse to seal.
    monkeypatch.setattr(build_module, "check_cache", lambda *args: None)
    with DaskEngine(address) as engine:
        # A folder of the same name on the worker's own disk, as on a node of its own.
        assert list(engine.each_worker(os.makedirs, str(cache), 0o755, True).values()) == [None]
        with pytest.raises(CacheError, match="not sealed") as caught:
            build_cache(dataset, cache, shard_size=12, engine=engine)
    assert "shards/000000/manifest.json: missing" in str(caught.value)
    assert not (cache / "manifest.json").exists()


# ------------------------------------------------------------------ losing the scheduler


def test_a_killed_scheduler_is_one_line_and_a_rerun_resumes_byte_identically(
    processes: Processes,
    dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    local = tmp_path / "local"
    build_cache(dataset, local, shard_size=3)
    address, scheduler = processes.scheduler()
    processes.worker(address)
    wait_for_workers(address, 1)
    cache = tmp_path / "cache"
    original = build_module.build_shard

    def slow(task):  # a closure: shipped by value; the real build_shard by reference
        time.sleep(0.3)
        return original(task)

    monkeypatch.setattr(build_module, "build_shard", slow)

    def kill_the_scheduler() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(cache.glob("shards/*/manifest.json")):
            time.sleep(0.01)
        os.killpg(scheduler.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_scheduler)
    killer.start()
    argv = ["cache", "build", str(dataset), str(cache), "--shard-size", "3", "--quiet"]
    capfd.readouterr()
    try:
        assert main([*argv, "--scheduler", address]) == 1
    finally:
        killer.join(70)
    # At the descriptor: Dask's own log handlers write there, not to sys.stderr.
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("dicontour: error: shard 0000")
    assert f"lost the Dask scheduler {address}" in err[0]
    assert "run the same command again to resume" in err[0]
    assert not (cache / "manifest.json").exists()

    # Workers exit with their scheduler: restart both, run the same command again.
    monkeypatch.setattr(build_module, "build_shard", original)
    address, _ = processes.scheduler()
    processes.worker(address)
    assert main([*argv, "--scheduler", address]) == 0
    out = capfd.readouterr().out
    kept = int(out.split(" kept)")[0].rsplit(" ", 1)[1])
    assert kept >= 1, out
    assert tree_bytes(cache) == tree_bytes(local)


def test_an_unreachable_scheduler_fails_within_the_connect_timeout(
    capsys: pytest.CaptureFixture[str], dataset: Path
) -> None:
    began = time.monotonic()
    closed = f"tcp://127.0.0.1:{free_port()}"
    assert main(["scan", str(dataset), "--scheduler", closed, "--connect-timeout", "1"]) == 1
    assert time.monotonic() - began < 6
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot reach the Dask scheduler {closed} within 1 s" in err[0]


def test_engine_error_is_exported() -> None:
    assert dicontour.EngineError is EngineError
    assert issubclass(EngineError, dicontour.DicontourError)
