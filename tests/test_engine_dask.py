"""The Dask engine on a LocalCluster on loopback: order, errors, scan, build, a killed worker."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import CACHE_PHANTOM, tree_bytes

import dicontour
from dicontour.cache import build_cache, open_cache, verify_cache
from dicontour.cli import main
from dicontour.engine import DaskEngine, EngineError
from dicontour.errors import DicomError

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]  # Dask clusters


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on 127.0.0.1, no dashboard; closed after."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    ) as local:
        yield local


@pytest.fixture(scope="module")
def engine(cluster):
    """An engine connected to the running cluster, as ``--scheduler ADDRESS`` does."""
    with DaskEngine(cluster.scheduler_address) as connected:
        yield connected


@pytest.fixture(scope="module")
def dataset(phantom: Callable[..., Path]) -> Path:
    return phantom(**CACHE_PHANTOM)


@pytest.fixture(scope="module")
def local_build(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("local") / "cache"
    build_cache(dataset, cache, shard_size=3)
    return cache


def test_map_keeps_order_and_runs_on_the_workers(engine: DaskEngine) -> None:
    assert engine.workers == 2
    assert list(engine.map(abs, range(-10, 10))) == [abs(v) for v in range(-10, 10)]
    pids = {pid for _, pid in engine.run(_pid, range(6))}
    assert os.getpid() not in pids


def _pid(_: object) -> int:
    return os.getpid()


def test_a_task_error_arrives_with_its_type(engine: DaskEngine) -> None:
    with pytest.raises(DicomError, match=r"nowhere\.dcm: file does not exist"):
        list(engine.map(dicontour.read_dicom, ["/nowhere.dcm"]))


def test_scan_on_dask_equals_the_serial_scan(
    engine: DaskEngine, phantom: Callable[..., Path]
) -> None:
    root = phantom(patients=3, slices=6, shape=(32, 32), faults=True)
    serial = dicontour.scan(root)
    assert dicontour.scan(root, mapper=engine.map).to_dict() == serial.to_dict()


def test_build_on_dask_is_byte_identical_to_a_local_build(
    engine: DaskEngine, dataset: Path, local_build: Path, tmp_path: Path
) -> None:
    report = build_cache(dataset, tmp_path / "cache", shard_size=3, engine=engine)
    assert (report.samples, report.shards, report.built) == (36, 12, 12)
    assert tree_bytes(tmp_path / "cache") == tree_bytes(local_build)


class Slowed:
    """An engine whose tasks take at least ``delay`` seconds (to kill a worker mid-build)."""

    def __init__(self, engine: DaskEngine, delay: float) -> None:
        self.engine, self.delay, self.workers = engine, delay, engine.workers

    def map(self, fn, items):
        return self.engine.map(fn, items)

    def each_worker(self, fn, *args):
        return self.engine.each_worker(fn, *args)

    def run(self, fn, items):
        delay = self.delay

        def slow(item):  # a closure: cloudpickle ships it by value to the workers
            time.sleep(delay)
            return fn(item)

        return self.engine.run(slow, items)


def test_a_worker_killed_mid_build_is_survived(
    engine: DaskEngine, cluster, dataset: Path, local_build: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list(cache.glob("shards/*/manifest.json")):
            time.sleep(0.01)
        pids = engine.client.run(os.getpid)  # {worker address: pid}
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        report = build_cache(dataset, cache, shard_size=3, engine=Slowed(engine, 0.3))
    finally:
        killer.join(timeout=40)
    assert killed, "no worker was killed"
    # A shard the dead worker had sealed before its result reached the client is run again
    # elsewhere and kept after its checksums are checked: built + kept covers every shard.
    assert report.built + report.reused == report.shards == 12
    verify_cache(cache, root=dataset)
    assert tree_bytes(cache) == tree_bytes(local_build)
    # The nanny replaced the dead worker: the cluster is whole again for the next test.
    engine.client.wait_for_workers(2, timeout=30)
    assert killed[0] not in engine.client.run(os.getpid).values()


def test_cli_build_and_train_on_a_local_dask_cluster(dataset: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    argv = ["cache", "build", str(dataset), str(cache), "--engine", "dask", "--workers", "1"]
    assert main([*argv, "--shard-size", "10"]) == 0
    assert "36 samples in 4 shards (4 built, 0 kept)" in capsys.readouterr().out
    assert (
        main(
            [
                "cache",
                "verify",
                str(cache),
                "--root",
                str(dataset),
                "--engine",
                "dask",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert "dataset unchanged: OK" in capsys.readouterr().out
    assert len(open_cache(cache, root=dataset)) == 36


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(EngineError, match=r"cannot reach the Dask scheduler tcp://127\.0\.0\.1:9"):
        DaskEngine("tcp://127.0.0.1:9", timeout=1)


def test_a_client_or_a_cluster_object_is_used_as_given(cluster) -> None:
    with distributed.Client(cluster.scheduler_address, timeout=10) as client:
        with DaskEngine(client) as engine:
            assert engine.scheduler == cluster.scheduler_address
            assert list(engine.map(abs, [-1, -2])) == [1, 2]
        assert client.status == "running"  # not closed: it is the caller's
    with DaskEngine(cluster) as engine:  # as a KubeCluster or SLURMCluster would be given
        assert engine.workers == 2
        assert list(engine.map(abs, [-3])) == [3]
    assert cluster.status.name == "running"


def test_workers_with_another_dicontour_version_are_refused(
    cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process plays the other version: the workers run the real one.
    monkeypatch.setattr(dicontour, "__version__", "0.0.0-other")
    with pytest.raises(EngineError, match=r"Dask worker tcp://127\.0\.0\.1:\d+ runs dicontour "):
        DaskEngine(cluster.scheduler_address)


def test_a_task_refuses_a_worker_that_joined_with_another_version(
    engine: DaskEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Connected when the versions agreed; a worker with another version joins later.
    monkeypatch.setattr(dicontour, "__version__", "0.0.0-other")
    with pytest.raises(EngineError, match=r"the client runs 0\.0\.0-other: install dicontour"):
        list(engine.map(abs, [-1]))


def test_scheduler_alone_implies_the_dask_engine(cluster, dataset: Path, capsys) -> None:
    assert main(["scan", str(dataset), "--json"]) == 0
    local = capsys.readouterr().out
    assert main(["scan", str(dataset), "--json", "--scheduler", cluster.scheduler_address]) == 0
    assert capsys.readouterr().out == local
    argv = ["scan", str(dataset), "--engine", "local", "--scheduler", cluster.scheduler_address]
    assert main(argv) == 2
    assert "needs the dask engine" in capsys.readouterr().err


class _Named:
    """An item that names itself in engine errors, as a shard task does."""

    label = "shard 000007"


def _die(_: object) -> None:
    os._exit(1)  # what the kernel's OOM killer does to a worker, as far as Dask can tell


def test_a_task_that_keeps_killing_its_worker_is_one_line() -> None:
    import dask

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as local,
        DaskEngine(local) as engine,
        pytest.raises(EngineError) as caught,
    ):
        list(engine.run(_die, [_Named()]))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("shard 000007: the Dask workers running it died")
    assert "run the same command again to resume" in message
