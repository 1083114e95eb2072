"""BatchLoader under faults: unreadable files, dying and hanging workers, interrupted loops.

Nothing may lose a good sample, hang, or leave a process or a shared-memory
segment behind.  Leaks are checked from the outside: this process's children
in /proc (apart from the resource tracker multiprocessing keeps for the life
of the interpreter) and the ``dicontour_<pid>_*`` names in /dev/shm.

``Rigged`` wraps a real source to sabotage chosen samples inside the worker;
it lives in helpers.py, a module spawned workers can import.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import LOADER_PHANTOM, Rigged, Traced, alive, copy_dataset, segments

from dicontour import BatchLoader, ContourError, DicomError, IndexSource, LoaderError
from dicontour.loader.pool import RemoteTraceback

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]  # killed, hung and crashed workers


@pytest.fixture(scope="module")
def data(traced: Traced) -> Traced:
    return traced


def ids_per_epoch(loader: BatchLoader, data: Traced, epochs: int = 1) -> list[list[int]]:
    return [[k for images, _ in loader for k in data.ids(images)] for _ in range(epochs)]


# ------------------------------------------------------------------ files broken after the scan


def break_files(data: Traced, *, dicom: int | None = None, contour: int | None = None) -> None:
    root = Path(data.index.root)
    if dicom is not None:  # cut in the middle of the pixel data
        path = root / data.index[dicom].dicom
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    if contour is not None:
        (root / data.index[contour].i_contour).write_text("12.5 abc\n")


def test_files_broken_after_the_scan_are_skipped_and_recorded(
    tmp_path: Path, clean: None, caplog: pytest.LogCaptureFixture, phantom: Callable[..., Path]
) -> None:
    data = Traced(copy_dataset(phantom(**LOADER_PHANTOM), tmp_path / "data"))
    eligible = data.index.select("i")
    bad_dicom, bad_contour = eligible[3], eligible[11]
    break_files(data, dicom=bad_dicom, contour=bad_contour)
    good = sorted(set(eligible) - {bad_dicom, bad_contour})
    caplog.set_level(logging.WARNING, logger="dicontour.loader")
    with BatchLoader(data.index, batch_size=8, workers=2) as loader:
        for epoch in range(2):
            sizes, seen = [], []
            for images, masks in loader:
                sizes.append(len(images))
                seen += data.ids(images)
                assert len(masks) == len(images)
            assert sorted(seen) == good  # every good sample exactly once
            assert sum(sizes) == 18 and len(sizes) == 3  # shorter batches, not fewer
            assert sorted(loader.skipped) == sorted([bad_dicom, bad_contour]), epoch
        problems = {p.path: p for p in loader.problems}
    assert len(loader.problems) == 2  # once per file, not once per epoch
    dicom_problem = problems[data.index[bad_dicom].dicom]
    contour_problem = problems[data.index[bad_contour].i_contour]
    assert dicom_problem.code == "unreadable-dicom" and dicom_problem.severity == "error"
    assert contour_problem.code == "unparseable-contour" and "line 1" in contour_problem.message
    logged = [r.getMessage() for r in caplog.records if r.name == "dicontour.loader"]
    assert sum(data.index[bad_dicom].dicom in m for m in logged) == 2  # each epoch


def test_file_broken_after_the_scan_raises_with_on_error_raise(
    tmp_path: Path, clean: None, phantom: Callable[..., Path]
) -> None:
    data = Traced(copy_dataset(phantom(**LOADER_PHANTOM), tmp_path / "data"))
    bad = data.index.select("i")[5]
    break_files(data, dicom=bad)
    with (
        pytest.raises(DicomError) as caught,
        BatchLoader(data.index, batch_size=4, on_error="raise", workers=1) as loader,
    ):
        for _ in loader:
            pass
    assert caught.value.path == data.index[bad].dicom
    assert caught.value.code == "unreadable-dicom"
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert "read_dicom" in str(caught.value.__cause__)  # the worker's own traceback
    assert loader.closed


def test_contour_broken_after_the_scan_raises_contour_error(
    tmp_path: Path, clean: None, phantom: Callable[..., Path]
) -> None:
    data = Traced(copy_dataset(phantom(**LOADER_PHANTOM), tmp_path / "data"))
    bad = data.index.select("i")[0]
    break_files(data, contour=bad)
    with BatchLoader(data.index, batch_size=4, on_error="raise", workers=0) as loader:
        with pytest.raises(ContourError, match="not a number") as caught:
            list(loader)
        assert caught.value.path == data.index[bad].i_contour and caught.value.line == 1
        # The failed epoch ended; the next one starts and fails the same way.
        assert loader.epoch == 1
        with pytest.raises(ContourError):
            list(loader)


def test_a_whole_batch_of_broken_files_gives_an_empty_batch(
    tmp_path: Path, clean: None, phantom: Callable[..., Path]
) -> None:
    data = Traced(copy_dataset(phantom(**LOADER_PHANTOM), tmp_path / "data"))
    order = data.expected("i", 0, 0)
    for k in order[4:8]:  # all of batch 1
        break_files(data, dicom=k)
    with BatchLoader(data.index, batch_size=4, workers=0) as loader:
        sizes = [len(images) for images, _ in loader]
    assert sizes == [4, 0, 4, 4, 4]  # still len(loader) batches: ranks stay in step


# ------------------------------------------------------------------ dying and hanging workers


def test_worker_killed_from_outside_mid_epoch_is_replaced(data: Traced, clean: None) -> None:
    source = Rigged(IndexSource(data.index), sleep=0.02)
    with BatchLoader(source, batch_size=4, workers=2, prefetch=4) as loader:
        seen = []
        for n, (images, _) in enumerate(loader):
            seen += data.ids(images)
            if n == 0:
                victim = loader.worker_pids[0]
                os.kill(victim, signal.SIGKILL)
        assert loader.restarts == 1 and victim not in loader.worker_pids
        assert sorted(seen) == data.index.select("i")
        assert seen == data.expected("i", 0, 0)  # and still in order
        assert ids_per_epoch(loader, data)[0] == data.expected("i", 0, 1)
    assert not alive(victim)


def test_worker_dying_inside_a_batch_redoes_that_batch(
    data: Traced, tmp_path: Path, clean: None
) -> None:
    order = data.expected("i", 0, 0)
    source = Rigged(IndexSource(data.index), kill=(order[6],), marker=str(tmp_path / "died"))
    with BatchLoader(source, batch_size=4, workers=2) as loader:
        seen = ids_per_epoch(loader, data)[0]
        assert (tmp_path / "died").exists() and loader.restarts == 1
    assert seen == order


def test_a_sample_that_always_kills_its_worker_gives_up(data: Traced, clean: None) -> None:
    order = data.expected("i", 0, 0)
    source = Rigged(IndexSource(data.index), kill=(order[1],))
    with (
        pytest.raises(LoaderError, match=r"batch 0 \(samples .*\) .* died 3 times.*SIGKILL"),
        BatchLoader(source, batch_size=4, workers=1, prefetch=1) as loader,
    ):
        list(loader)


def test_a_bug_in_the_source_raises_with_the_worker_traceback(data: Traced, clean: None) -> None:
    order = data.expected("i", 0, 0)
    source = Rigged(IndexSource(data.index), crash=(order[2],))
    with (
        pytest.raises(LoaderError, match="ZeroDivisionError: rigged bug") as caught,
        BatchLoader(source, batch_size=4, workers=1, on_error="skip") as loader,
    ):
        list(loader)
    assert data.index[order[2]].dicom in str(caught.value)
    assert "in read" in caught.value.__cause__.text  # type: ignore[union-attr]


def test_a_hanging_worker_times_out_naming_the_batch(data: Traced, clean: None) -> None:
    order = data.expected("i", 0, 0)
    source = Rigged(IndexSource(data.index), hang=(order[0],))
    started = time.monotonic()
    with (
        pytest.raises(LoaderError, match=r"timed out after 1 s waiting for batch 0 of epoch 0"),
        BatchLoader(source, batch_size=4, workers=1, timeout=1.0) as loader,
    ):
        list(loader)
    assert time.monotonic() - started < 10  # the hung worker was killed, not waited for


# ------------------------------------------------------------------ interrupted loops


def test_early_break_leaves_the_next_epoch_whole(data: Traced, clean: None) -> None:
    with BatchLoader(data.index, batch_size=4, workers=2) as loader:
        for _ in loader:
            break
        assert len(segments()) == 1 and len(loader.worker_pids) == 2
        for epoch in (1, 2):
            assert ids_per_epoch(loader, data)[0] == data.expected("i", 0, epoch)
        pids = loader.worker_pids
    assert segments() == [] and not any(alive(pid) for pid in pids)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_exception_in_the_loop_body_leaves_nothing(
    data: Traced, clean: None, error: type[BaseException]
) -> None:
    with pytest.raises(error), BatchLoader(data.index, batch_size=4, workers=1) as loader:
        for n, _ in enumerate(loader):
            if n == 1:
                raise error("stop")
    assert loader.closed


def test_ctrl_c_while_waiting_for_data_leaves_nothing(data: Traced, clean: None) -> None:
    source = Rigged(IndexSource(data.index), sleep=0.5)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt), BatchLoader(source, batch_size=4, workers=1) as loader:
        timer.start()
        for _ in loader:
            pass
    timer.join()


def test_garbage_collection_cleans_up(data: Traced, clean: None) -> None:
    loader = BatchLoader(data.index, batch_size=4, workers=1)
    batches = iter(loader)
    next(batches)
    pids = loader.worker_pids
    assert len(segments()) == 1
    del loader, batches
    gc.collect()
    assert segments() == [] and not any(alive(pid) for pid in pids)


def test_close_is_idempotent_and_final(data: Traced, clean: None) -> None:
    loader = BatchLoader(data.index, batch_size=4, workers=1)
    batches = iter(loader)
    next(batches)
    pids = loader.worker_pids
    loader.close()
    loader.close()
    assert loader.worker_pids == [] and not any(alive(pid) for pid in pids)
    with pytest.raises(LoaderError, match="closed"):
        next(batches)
    with pytest.raises(LoaderError, match="closed"):
        iter(loader)


SCRIPT = """
import os, signal, sys
import dicontour
index = dicontour.scan(sys.argv[1])
loader = dicontour.BatchLoader(index, batch_size=4, workers=1)
next(iter(loader))
print(os.getpid(), *loader.worker_pids, flush=True)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
# "exit": leave without close(); interpreter exit must clean up.
"""


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_training_process_exit_or_death_leaves_nothing(data: Traced, how: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), data.index.root, how],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    parent, *workers = (int(pid) for pid in done.stdout.split())
    assert len(workers) == 1, done.stderr
    deadline = time.monotonic() + 10
    # After a SIGKILL, workers notice the closed pipe and the resource tracker
    # unlinks the segment; give them a moment.
    while time.monotonic() < deadline and (segments(parent) or any(alive(pid) for pid in workers)):
        time.sleep(0.1)
    assert segments(parent) == []
    assert not any(alive(pid) for pid in workers)
    if how == "exit":
        assert done.returncode == 0 and "leaked" not in done.stderr, done.stderr


def test_an_unpicklable_source_is_refused_clearly(data: Traced, clean: None) -> None:
    source = Rigged(IndexSource(data.index))
    source.lock = threading.Lock()  # type: ignore[attr-defined]
    with (
        pytest.raises(LoaderError, match=r"cannot start loader worker 0: .*workers=0"),
        BatchLoader(source, workers=1) as loader,
    ):
        next(iter(loader))
    with BatchLoader(source, batch_size=20, workers=0) as loader:  # in-process works
        assert sorted(k for images, _ in loader for k in data.ids(images)) == data.index.select("i")


def test_a_forked_copy_cannot_stop_the_workers(data: Traced, clean: None) -> None:
    with BatchLoader(data.index, batch_size=4, workers=1) as loader:
        batches = iter(loader)
        next(batches)
        child = os.fork()
        if child == 0:  # the copy: closing (or collecting) it must not touch the owner's
            loader.close()
            os._exit(0)
        os.waitpid(child, 0)
        assert len(list(batches)) == 4 and len(segments()) == 1 and loader.restarts == 0
