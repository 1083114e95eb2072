"""Training from the cache: BatchLoader.from_cache keeps the loader's guarantees."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import CACHE_PHANTOM
from hypothesis import given, settings
from hypothesis import strategies as st

from dicontour.cache import build_cache, open_cache
from dicontour.errors import CacheError
from dicontour.loader import BatchLoader

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, phantom: Callable[..., Path]
) -> tuple[Path, Path]:
    """(dataset, cache): 3 patients x 12 slices of 32x32, all labelled, 18 with o."""
    data = phantom(**CACHE_PHANTOM)
    cache = tmp_path_factory.mktemp("loader") / "cache"
    build_cache(data, cache, shard_size=5)
    return data, cache


def fingerprints(images: np.ndarray) -> list[bytes]:
    return [image.tobytes() for image in images]


def shm_entries() -> set[str]:
    """This process's loader segments in /dev/shm (other processes share the machine)."""
    mine = f"dicontour_{os.getpid()}_"
    names = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    return {name for name in names if name.startswith(mine)}


@pytest.mark.slow
def test_every_sample_once_per_epoch_with_workers_and_no_leaks(built) -> None:
    data, cache = built
    source = open_cache(cache)
    expected = {source.read(k, "i")[0].tobytes(): k for k in range(len(source))}
    assert not shm_entries()
    with BatchLoader.from_cache(cache, batch_size=8, root=data, workers=2, seed=3) as loader:
        assert len(loader) == 5  # 36 samples, batch 8, last batch short
        epochs = []
        for _ in range(2):
            seen = []
            for images, masks in loader:
                assert images.dtype == np.float32 and masks.dtype == bool
                assert images.shape[1:] == masks.shape[1:] == (32, 32)
                for image, mask in zip(images, masks, strict=True):
                    k = expected[image.tobytes()]
                    np.testing.assert_array_equal(mask, source.read(k, "i")[1])
                    seen.append(k)
            assert sorted(seen) == list(range(36))
            epochs.append(seen)
        pids = loader.worker_pids
        assert len(pids) == 2
    assert epochs[0] != epochs[1]  # a new order every epoch
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not shm_entries()


def test_order_is_a_function_of_seed_and_epoch(built) -> None:
    _, cache = built

    def two_epochs(seed: int) -> list[list[list[bytes]]]:
        with BatchLoader.from_cache(cache, batch_size=4, workers=0, seed=seed) as loader:
            return [[fingerprints(images) for images, _ in loader] for _ in range(2)]

    first = two_epochs(7)
    assert first == two_epochs(7)
    assert first[0] != first[1]
    assert two_epochs(8)[0] != first[0]


@pytest.mark.parametrize("target", ["i", "both"])
def test_order_is_the_documented_permutation_held_as_int32(built, target: str) -> None:
    # The loader keeps source indices as int32 (two epochs' orders and the eligible
    # samples: its only per-sample memory); the values are the documented ones.
    data, cache = built
    with BatchLoader.from_cache(cache, 4, root=data, target=target, workers=0, seed=3) as loader:
        eligible = np.flatnonzero(loader.source.has(target))
        for epoch in range(2):
            order = loader.order(epoch)
            assert order.dtype == np.int32
            permutation = np.random.default_rng([3, epoch]).permutation(len(eligible))
            np.testing.assert_array_equal(order, eligible[permutation])


def test_both_masks_come_as_two_channels(built) -> None:
    _, cache = built
    with BatchLoader.from_cache(cache, batch_size=6, target="both", workers=0) as loader:
        batches = list(loader)
    assert sum(len(images) for images, _ in batches) == 18  # only slices with both contours
    assert batches[0][1].shape == (6, 2, 32, 32)


@pytest.mark.parametrize("world_size", [2, 3, 5])
def test_ranks_get_disjoint_parts_and_equal_batch_counts(built, world_size: int) -> None:
    _, cache = built
    source = open_cache(cache)
    index_of = {source.read(k, "i")[0].tobytes(): k for k in range(len(source))}
    parts, counts = [], []
    for rank in range(world_size):
        with BatchLoader.from_cache(
            cache,
            batch_size=4,
            workers=0,
            seed=1,
            rank=rank,
            world_size=world_size,
            drop_last=True,
        ) as loader:
            batches = list(loader)
            counts.append(len(batches))
            assert len(batches) == len(loader)
            parts.append([index_of[i.tobytes()] for images, _ in batches for i in images])
    assert len(set(counts)) == 1  # the same number of batches on every rank
    flat = [k for part in parts for k in part]
    assert len(flat) == len(set(flat))  # disjoint
    # drop_last drops at most world_size - 1 samples to even the ranks, then short batches
    assert len(flat) == world_size * counts[0] * 4


def test_uneven_ranks_without_drop_last_still_cover_everything(built) -> None:
    _, cache = built
    seen, counts = set(), set()
    for rank in range(5):  # 36 samples over 5 ranks: padded to 40
        with BatchLoader.from_cache(
            cache, batch_size=3, workers=0, rank=rank, world_size=5
        ) as loader:
            batches = list(loader)
            counts.add(len(batches))
            seen |= {i.tobytes() for images, _ in batches for i in images}
    assert counts == {3}  # ceil(8 / 3) batches everywhere
    assert len(seen) == 36


def test_a_stale_cache_is_refused_by_the_loader(built, tmp_path: Path) -> None:
    data, cache = built
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    (copy / "dicoms" / "PHA00001" / "1.dcm").unlink()
    with pytest.raises(CacheError, match=r"stale: .*changed: dicoms/PHA00001"):
        BatchLoader.from_cache(cache, root=copy, workers=0)


# ------------------------------------------------------------------ copy=False, read_into


@pytest.mark.slow
def test_copy_false_from_the_cache_gives_the_copied_batches_without_leaks(built) -> None:
    data, cache = built
    source = open_cache(cache)
    expected = {source.read(k, "i")[0].tobytes(): k for k in range(len(source))}
    assert not shm_entries()
    options = {"batch_size": 8, "root": data, "seed": 3, "target": "i"}
    with (
        BatchLoader.from_cache(cache, workers=0, **options) as copying,
        BatchLoader.from_cache(cache, workers=2, copy=False, **options) as lending,
    ):
        for _ in range(2):
            seen = []
            for (images, masks), (image_views, mask_views) in zip(copying, lending, strict=True):
                assert not image_views.flags.writeable and not mask_views.flags.writeable
                np.testing.assert_array_equal(image_views, images)
                np.testing.assert_array_equal(mask_views, masks)
                seen += [expected[image.tobytes()] for image in image_views]
            assert sorted(seen) == list(range(36))  # every sample once per epoch
        del images, masks, image_views, mask_views
    assert not shm_entries()


@pytest.mark.parametrize("target", ["i", "o", "both"])
def test_read_into_writes_what_read_returns(built, target: str) -> None:
    _, cache = built
    source = open_cache(cache)
    k = int(np.flatnonzero(source.has(target))[-1])
    image, mask = source.read(k, target)
    into_image = np.full((32, 32), np.nan, np.float32)
    into_mask = np.zeros(mask.shape, bool) if mask.any() else np.ones(mask.shape, bool)
    source.read_into(k, target, into_image, into_mask)
    np.testing.assert_array_equal(into_image, image)
    np.testing.assert_array_equal(into_mask, mask)
    assert into_mask.shape == ((2, 32, 32) if target == "both" else (32, 32))


def test_read_into_refuses_another_shape(built) -> None:
    _, cache = built
    source = open_cache(cache)
    with pytest.raises(ValueError, match=r"sample 0 \(.*\) is image \(32, 32\).*\(16, 16\)"):
        source.read_into(0, "i", np.empty((16, 16), np.float32), np.empty((16, 16), bool))


@pytest.mark.parametrize("target", ["i", "o", "both"])
def test_read_into_refuses_what_read_refuses(built, target: str) -> None:
    # read_into (the warm hot path) refuses what read refuses, with the same words.
    _, cache = built
    source = open_cache(cache)
    image, mask = np.empty((32, 32), np.float32), np.empty((2, 32, 32), bool)
    into_mask = mask if target == "both" else mask[0]
    for k in (-1, len(source), 10**9):
        with pytest.raises(IndexError, match=f"sample {k} is out of range"):
            source.read(k, target)
        with pytest.raises(IndexError, match=f"sample {k} is out of range"):
            source.read_into(k, target, image, into_mask)
    lacking = np.flatnonzero(~source.has(target))
    assert len(lacking) == (0 if target == "i" else 18)  # every sample has an i-contour
    if target == "i":
        return
    k = int(lacking[0])
    with pytest.raises(ValueError, match=rf"sample {k} \(.*\) has no {target}-mask"):
        source.read(k, target)
    with pytest.raises(ValueError, match=rf"sample {k} \(.*\) has no {target}-mask"):
        source.read_into(k, target, image, into_mask)
    with pytest.raises(ValueError, match="target"):
        source.read_into(int(np.flatnonzero(source.has(target))[0]), "x", image, into_mask)  # type: ignore[arg-type]


def test_in_process_views_rotate_two_slots(built) -> None:
    # workers=0, copy=False: the next batch is filled into the slot the caller let go
    # of, so two slots alternate and stay in the CPU's caches (docs/loader.md, "Warm").
    data, cache = built
    with BatchLoader.from_cache(cache, 4, root=data, workers=0, copy=False) as loader:
        for _ in range(2):
            starts = [images.__array_interface__["data"][0] for images, _ in loader]
            assert len(starts) == len(loader) >= 4
            assert len(set(starts[0::2])) == len(set(starts[1::2])) == 1  # alternating:
            assert starts[0] != starts[1]


def test_normalize_still_applies_when_samples_could_be_copied_directly(built) -> None:
    _, cache = built
    source = open_cache(cache)
    with BatchLoader.from_cache(
        cache, batch_size=4, workers=0, shuffle=False, normalize="zscore", copy=False
    ) as loader:
        images, _ = next(iter(loader))
    for k, image in enumerate(images):
        raw = source.read(k, "i")[0].astype(np.float64)
        np.testing.assert_allclose(image, (raw - raw.mean()) / raw.std(), rtol=1e-4, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_meta_names_the_manifests_patients_and_slices(built, data) -> None:
    """meta() (patient codes learnt per shard) names the same patients and slices as
    the shard manifests, whatever samples are asked and in what order."""
    _, cache = built
    source = open_cache(cache)
    chosen = data.draw(st.lists(st.integers(0, len(source) - 1), min_size=1, max_size=9))
    meta = source.meta(np.array(chosen))
    for at, k in enumerate(chosen):
        assert source.describe(k).startswith(
            f"patient {meta.patient_id[at]} slice {meta.slice[at]} "
        )


def test_meta_refuses_samples_out_of_range(built) -> None:
    _, cache = built
    source = open_cache(cache)
    for bad in (-1, len(source)):
        with pytest.raises(IndexError, match=f"sample {bad} is out of range"):
            source.meta(np.array([bad]))
