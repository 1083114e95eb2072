"""BatchLoader(copy=False): batches lent as read-only views of their shared-memory slots.

What must hold: the same batches as ``copy=True``, in the same order; views
that cannot be written; a view never overwritten while it is referenced (not
by the next batches, the next epoch, a dead worker's redo, nor close()); and
nothing left behind: no process, no /dev/shm entry, no mapping once the last
view is dropped.  Sample identities come from the image bytes (each phantom
image is unique) and the expected order from the documented rule, as in
test_loader.py.  The last tests cover the bytes on the worker pipes.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import Rigged, Traced, alive, segments
from hypothesis import given, settings
from hypothesis import strategies as st

from dicontour import BatchLoader, IndexSource, LoaderError
from dicontour.loader import pool
from dicontour.loader.slots import SlotLayout, SlotSegment
from dicontour.loader.worker import (
    Crash,
    Failure,
    Result,
    Task,
    decode_result,
    decode_task,
    encode_result,
    encode_task,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]  # worker processes and shared memory


@pytest.fixture(scope="module")
def data(traced: Traced) -> Traced:
    """2 patients x 20 slices of 64 x 64: 20 i-samples, 10 of them with an o-contour."""
    return traced


def mapped() -> list[str]:
    """This process's mappings of loader segments (a closed one shows as "(deleted)")."""
    prefix = f"dicontour_{os.getpid()}_"
    return [line for line in Path("/proc/self/maps").read_text().splitlines() if prefix in line]


@pytest.fixture
def clean(clean: None) -> Iterator[None]:
    """conftest's ``clean`` (no child process, no segment name), and no segment mapping
    left once the test's views are gone."""
    yield
    gc.collect()
    assert mapped() == []


# ------------------------------------------------------------------ same batches, same order


@pytest.mark.parametrize(("workers", "target"), [(0, "i"), (2, "i"), (1, "both")])
def test_views_hold_the_batches_copies_hold_in_the_same_order(
    data: Traced, workers: int, target: str, clean: None
) -> None:
    options = {"batch_size": 4, "seed": 5, "target": target, "prefetch": 2}
    with (
        BatchLoader(data.index, workers=0, **options) as copying,
        BatchLoader(data.index, workers=workers, copy=False, **options) as lending,
    ):
        for epoch in range(2):
            for (images, masks), (image_views, mask_views) in zip(copying, lending, strict=True):
                assert image_views.dtype == np.float32 and mask_views.dtype == np.bool_
                np.testing.assert_array_equal(image_views, images)
                np.testing.assert_array_equal(mask_views, masks)
            assert lending.epoch == epoch + 1
        # ...and both follow the documented order, not merely each other.
        again = [k for images, _ in lending for k in data.ids(images)]
        assert again == data.expected(target, seed=5, epoch=2)


def test_views_are_read_only(data: Traced, clean: None) -> None:
    with BatchLoader(data.index, batch_size=4, workers=1, copy=False) as loader:
        images, masks = next(iter(loader))
        for array in (images, masks, images[1:], masks[0]):
            assert not array.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                array[...] = 0
            with pytest.raises(ValueError, match="WRITEABLE"):
                array.flags.writeable = True
        writable = np.array(images)  # the documented way to get a batch to modify
        writable += 1
        np.testing.assert_array_equal(writable, images + 1)
        del images, masks


# ------------------------------------------------------------------ lifetime


def test_a_view_is_intact_until_the_next_batch_and_while_referenced(
    data: Traced, clean: None
) -> None:
    # prefetch=2: three slots, so a slot freed too early is refilled at once.
    source = Rigged(IndexSource(data.index), sleep=0.002)
    with BatchLoader(source, batch_size=2, workers=1, prefetch=2, copy=False) as loader:
        seen, previous = [], None
        for images, masks in loader:
            saved = (images.copy(), masks.copy())
            time.sleep(0.03)  # time for the workers to fill every slot they were given
            np.testing.assert_array_equal(images, saved[0])  # right before the next request
            np.testing.assert_array_equal(masks, saved[1])
            if previous is not None:  # the previous batch, still referenced here
                np.testing.assert_array_equal(previous[0], previous[1])
            previous = (images[:1], saved[0][:1])  # a slice keeps the whole batch lent
            seen += data.ids(images)
        assert seen == data.expected("i", seed=0, epoch=0)
        # A view kept into the next epoch is never overwritten either.
        kept, expected = previous
        assert [k for images, _ in loader for k in data.ids(images)] == data.expected("i", 0, 1)
        np.testing.assert_array_equal(kept, expected)
        del images, masks, previous, kept


def test_holding_every_slot_raises_instead_of_overwriting(data: Traced, clean: None) -> None:
    with BatchLoader(data.index, batch_size=4, workers=1, prefetch=2, copy=False) as loader:
        kept = []
        with pytest.raises(LoaderError, match=r"copy=False: all 3 free batch slots are held"):
            for images, _ in loader:
                kept.append(images)  # three slots: the fourth batch has nowhere to go
        assert len(kept) == 3
        assert [data.ids(images) for images in kept] == [
            data.expected("i", 0, 0)[n * 4 : n * 4 + 4] for n in range(3)
        ]
        kept.clear()
        assert [k for images, _ in loader for k in data.ids(images)] == data.expected("i", 0, 1)
        del images


def test_copies_of_the_views_outlive_them_unchanged(data: Traced, clean: None) -> None:
    with BatchLoader(data.index, batch_size=4, workers=1, copy=False) as loader:
        copies = [(np.array(images), np.array(masks)) for images, masks in loader]
        for _ in loader:
            pass  # another epoch through the same slots
    ids = [k for images, _ in copies for k in data.ids(images)]
    assert ids == data.expected("i", 0, 0)
    for k, mask in zip(ids, (m for _, masks in copies for m in masks), strict=True):
        np.testing.assert_array_equal(mask, data.samples[k].i_mask)


# ------------------------------------------------------------------ faults and shutdown


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_close_while_a_view_is_held(data: Traced, clean: None) -> None:
    loader = BatchLoader(data.index, batch_size=4, workers=1, copy=False)
    batches = iter(loader)
    images, masks = next(batches)
    saved = images.copy(), masks.copy()
    pids = loader.worker_pids
    loader.close()
    # Workers gone and the name unlinked at once; the view still reads its batch.
    assert segments() == [] and not any(alive(pid) for pid in pids)
    assert len(mapped()) == 1 and "(deleted)" in mapped()[0]
    np.testing.assert_array_equal(images, saved[0])
    np.testing.assert_array_equal(masks, saved[1])
    with pytest.raises(LoaderError, match="closed"):
        next(batches)
    del images, masks, batches
    gc.collect()
    assert mapped() == []  # unmapped with the last view


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_garbage_collecting_the_loader_while_a_view_is_held(data: Traced, clean: None) -> None:
    loader = BatchLoader(data.index, batch_size=4, workers=1, copy=False)
    images, _ = next(iter(loader))
    ids = data.ids(images)
    del loader
    gc.collect()
    assert segments() == []
    assert data.ids(images) == ids == data.expected("i", 0, 0)[:4]
    del images


def test_break_mid_epoch_keeps_the_view_and_the_next_epoch_whole(data: Traced, clean: None) -> None:
    with BatchLoader(data.index, batch_size=4, workers=1, copy=False) as loader:
        for n, (images, _) in enumerate(loader):
            assert not images.flags.writeable
            if n == 1:
                break
        first = data.ids(images)
        for epoch in (1, 2):
            assert [k for b, _ in loader for k in data.ids(b)] == data.expected("i", 0, epoch)
        assert data.ids(images) == first == data.expected("i", 0, 0)[4:8]
        pids = loader.worker_pids
        del images
    assert not any(alive(pid) for pid in pids)


def test_a_killed_worker_is_replaced_and_every_sample_comes_once(data: Traced, clean: None) -> None:
    source = Rigged(IndexSource(data.index), sleep=0.02)
    with BatchLoader(source, batch_size=4, workers=2, copy=False) as loader:
        seen = []
        for n, (images, _) in enumerate(loader):
            seen += data.ids(images)
            if n == 0:
                victim = loader.worker_pids[0]
                os.kill(victim, signal.SIGKILL)
        assert loader.restarts == 1 and victim not in loader.worker_pids
        assert seen == data.expected("i", 0, 0)
        del images


class DiesBeforeReady(Rigged):
    """A source whose unpickling kills the worker: no worker ever gets ready."""

    def __setstate__(self, state: dict[str, object]) -> None:
        os._exit(3)


def test_workers_that_never_start_raise_and_close_cleanly(
    data: Traced, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "MAX_FAILED_STARTS", 1)  # one doomed start is enough here
    loader = BatchLoader(DiesBeforeReady(IndexSource(data.index)), batch_size=4, workers=1)
    with pytest.raises(LoaderError, match=r"died before it was ready \(exit code 3\), 1 starts"):
        next(iter(loader))
    loader.close()  # the reaped workers' process objects are closed: no ValueError
    assert loader.worker_pids == []


# ------------------------------------------------------------------ slots and wire format


def test_a_lent_slot_is_free_once_no_view_of_it_is_left() -> None:
    segment = SlotSegment.private(SlotLayout(slots=2, batch_size=3, height=4, width=5))
    segment.images[1] = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    images, masks = segment.lend(1, 2)
    assert images.shape == (2, 4, 5) and masks.shape == (2, 4, 5)
    assert images[1, 0, 0] == 20.0 and not segment.lent(0)
    column = images[:, :, 2]
    del images, masks
    assert segment.lent(1)  # a slice still views the slot
    del column
    assert not segment.lent(1)
    segment.close()


@settings(max_examples=50, deadline=None)
@given(
    numbers=st.tuples(*[st.integers(0, 2**62)] * 4),
    samples=st.lists(st.integers(0, 2**62), max_size=64),
)
def test_tasks_cross_the_pipe_unchanged(numbers: tuple[int, ...], samples: list[int]) -> None:
    token, batch, slot, attempts = numbers
    task = decode_task(encode_task(Task(token, batch, slot, np.array(samples, np.int64), attempts)))
    assert (task.token, task.batch, task.slot, task.attempts) == numbers
    assert task.samples.tolist() == samples


def test_results_cross_the_pipe_unchanged() -> None:
    plain = Result(4, 7, 1, 8, cancelled=True)
    assert len(encode_result(plain)) == 34  # no pickle on the hot path
    assert decode_result(encode_result(plain), worker=2) == plain
    failure = Failure(3, "DicomError", "dicoms/P/1.dcm", "truncated", "unreadable-dicom", None, "")
    crash = Crash(5, "ZeroDivisionError", "bug", "traceback")
    for result in (Result(4, 7, 1, 6, (failure,)), Result(4, 7, 1, 2, crash=crash)):
        assert decode_result(encode_result(result)) == result
    assert decode_result(encode_result(("ready", 123))) == ("ready", 123)
    with pytest.raises(pickle.UnpicklingError, match="not a loader message"):
        decode_result(b"Xgarbage")
