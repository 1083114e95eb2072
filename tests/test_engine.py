"""Engines: order, errors, dead workers, and the scan running on them (local pool here)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import dicontour
from dicontour.contour import _extent, _scan_numbers
from dicontour.dicom import _to_float32
from dicontour.engine import DaskEngine, EngineError, LocalEngine, open_engine
from dicontour.errors import DicomError
from dicontour.raster import _scan_fill

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pool():
    """One pool of 2 spawned workers for the module (starting one costs about a second)."""
    with LocalEngine(workers=2) as engine:
        yield engine


def test_in_process_engine_keeps_order() -> None:
    engine = LocalEngine(workers=1)
    assert list(engine.map(abs, [-3, 1, -2])) == [3, 1, 2]
    assert list(engine.run(abs, [-3, 1])) == [(0, 3), (1, 1)]


@pytest.mark.slow
def test_pool_map_is_in_order_and_run_gives_every_position_once(pool: LocalEngine) -> None:
    items = list(range(-20, 20))
    assert list(pool.map(abs, items)) == [abs(v) for v in items]
    ran = list(pool.run(abs, items))
    assert sorted(position for position, _ in ran) == list(range(40))
    assert all(result == abs(items[position]) for position, result in ran)


@pytest.mark.slow
def test_pool_runs_in_other_processes(pool: LocalEngine) -> None:
    pids = {pid for _, pid in pool.run(_pid_of, range(8))}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def _pid_of(_: object) -> int:
    return os.getpid()


def test_a_task_error_arrives_with_its_type_and_file(pool: LocalEngine) -> None:
    with pytest.raises(DicomError, match=r"nowhere\.dcm: file does not exist") as caught:
        list(pool.map(dicontour.read_dicom, ["/nowhere.dcm"]))
    assert caught.value.code == "missing-dicom"


def test_an_unpicklable_error_becomes_an_engine_error(pool: LocalEngine) -> None:
    with pytest.raises(EngineError, match=r"task 1 failed: Unpicklable: second"):
        list(pool.map(_raise_unpicklable, ["first", "second"]))


class Unpicklable(Exception):
    def __init__(self, text: str, extra: object) -> None:
        super().__init__(text)


def _raise_unpicklable(text: str) -> str:
    if text == "second":
        raise Unpicklable(text, None)
    return text


@pytest.mark.slow
def test_a_dead_worker_stops_the_run_with_a_clear_error() -> None:
    with (
        LocalEngine(workers=2) as engine,
        pytest.raises(EngineError, match="worker process of the local engine died"),
    ):
        list(engine.map(os._exit, [3, 3]))


def test_scan_on_the_pool_equals_the_serial_scan(
    pool: LocalEngine, phantom: Callable[..., Path]
) -> None:
    root = phantom(patients=4, slices=6, shape=(32, 32), faults=True)
    serial = dicontour.scan(root)
    parallel = dicontour.scan(root, mapper=pool.map)
    assert parallel.to_dict() == serial.to_dict()
    assert len(parallel) > 0 and parallel.errors()


def test_open_engine_checks_its_options() -> None:
    assert isinstance(open_engine("local", workers=1), LocalEngine)
    with pytest.raises(ValueError, match="needs the dask engine"):
        open_engine("local", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="workers applies to the local cluster only"):
        DaskEngine("tcp://127.0.0.1:8786", workers=2)
    with pytest.raises(ValueError, match="engine must be"):
        open_engine("spark")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 0"):
        LocalEngine(workers=-1)


def test_zero_workers_runs_in_this_process() -> None:
    # 0 means "in this process", as for BatchLoader(workers=0): no pool is started.
    with LocalEngine(workers=0) as engine:
        assert list(engine.map(lambda _: os.getpid(), [1, 2])) == [os.getpid()] * 2
        assert engine._pool is None


def test_missing_dask_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import now fails
    with pytest.raises(EngineError, match=r"pip install 'dicontour\[dask\]'"):
        open_engine("dask", workers=1)


@pytest.mark.slow
def test_cli_scan_on_the_local_engine(phantom: Callable[..., Path], capsys) -> None:
    from dicontour.cli import main

    root = phantom(patients=2, slices=6, shape=(32, 32), faults=False)
    assert main(["scan", str(root), "--json"]) == 0
    serial = capsys.readouterr().out
    assert main(["scan", str(root), "--json", "--workers", "2"]) == 0
    assert capsys.readouterr().out == serial


def test_pool_workers_see_the_environment_as_it_is_when_the_pool_starts(
    pool: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module's pool has started the forkserver already: its environment is older.
    assert list(pool.map(os.getenv, ["DICONTOUR_ENGINE_TEST"])) == [None]
    monkeypatch.setenv("DICONTOUR_ENGINE_TEST", "set after the server started")
    with LocalEngine(workers=2) as engine:
        seen = list(engine.map(os.getenv, ["DICONTOUR_ENGINE_TEST"] * 4))
    assert seen == ["set after the server started"] * 4


def _compiled_kernels(_: object) -> dict[str, int]:
    """In a worker, before it reads anything: how many compiled versions each kernel has."""
    kernels = {"parse": _scan_numbers, "extent": _extent, "raster": _scan_fill}
    return {name: len(k.signatures) for name, k in {**kernels, "rescale": _to_float32}.items()}


def test_pool_workers_start_with_the_kernels_compiled(pool: LocalEngine) -> None:
    # The forkserver imports dicontour._warm, so a worker forked from it does not
    # pay numba's first-call cost (~0.3 CPU-s each) at the start of every build.
    (counts,) = pool.map(_compiled_kernels, [None])
    assert counts["parse"] >= 1 and counts["extent"] >= 1 and counts["raster"] >= 1
    assert counts["rescale"] >= 2  # uint16 and int16 pixels
