"""BatchLoader for training: Batch and its metadata, channels, transforms in the workers, stats.

Augmented batches are checked against the documented rule, computed here:
sample k of epoch e is ``transform(read(k), mask, default_rng([seed, e, k]))``
(and then bit for bit across worker counts, copy modes and a resume).  The
metadata is checked against the scan's own records, through the images
(each phantom image is unique, so an image names its sample).
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle

import numpy as np
import pytest
from helpers import Numbered, Traced

import dicontour
from dicontour import Batch, BatchLoader, BatchMeta, EpochStats, IndexSource, LoaderError
from dicontour.augment import (
    Compose,
    RandomAffine,
    RandomCrop,
    RandomFlip,
    RandomIntensity,
    RandomRot90,
)
from dicontour.cache import build_cache
from dicontour.loader import batches as batches_module

pytestmark = pytest.mark.timeout(120)

AUGMENT = Compose([RandomFlip(), RandomRot90(), RandomAffine(degrees=10), RandomIntensity()])


@pytest.fixture(scope="module")
def data(traced: Traced) -> Traced:
    """2 patients x 20 slices of 64 x 64: 20 i-samples, 10 of them with an o-contour."""
    return traced


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()


class FailOn:
    """A transform that raises on the images given (by digest), and flips the others."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.digests = frozenset(digest(image) for image in images)

    def __call__(self, image, mask, rng):
        if digest(image) in self.digests:
            raise ValueError("deliberate failure")
        return image[::-1], mask[:, ::-1]


class DropRow:
    """Returns one row fewer: another shape."""

    def __call__(self, image, mask, rng):
        return image[1:], mask[:, 1:]


class IntMask:
    """Returns the mask as integers."""

    def __call__(self, image, mask, rng):
        return image, mask.astype(np.uint8)


def epoch_arrays(loader: BatchLoader) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One epoch as copies of (images, masks, meta.index) per batch."""
    return [(np.array(b.images), np.array(b.masks), np.array(b.meta.index)) for b in loader]


def expected_epoch(data: Traced, loader: BatchLoader, epoch: int, transform) -> list:
    """The documented rule, computed without the loader."""
    source = IndexSource(data.index)
    order = loader.order(epoch)
    result = []
    for start in range(0, len(order), loader.batch_size):
        images, masks = [], []
        for k in order[start : start + loader.batch_size].tolist():
            image, mask = source.read(k, loader.target)
            planes = mask[None] if mask.ndim == 2 else mask
            rng = np.random.default_rng([loader.seed, epoch, k])
            image, planes = transform(image, planes, rng)
            images.append(image)
            masks.append(planes[0] if mask.ndim == 2 else planes)
        result.append((np.stack(images), np.stack(masks)))
    return result


def assert_same_epochs(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (images, masks, *_), (images2, masks2, *_) in zip(a, b, strict=True):
        np.testing.assert_array_equal(images, images2)  # bit for bit
        np.testing.assert_array_equal(masks, masks2)


# ------------------------------------------------------------------ reproducible augmentation


@pytest.mark.slow
def test_augmented_epochs_follow_the_rule_and_are_identical_for_0_1_2_workers(
    data: Traced,
) -> None:
    runs = {}
    for workers, copy in ((0, True), (1, True), (2, False)):
        with BatchLoader(
            data.index, batch_size=6, seed=4, workers=workers, transform=AUGMENT, copy=copy
        ) as loader:
            runs[workers] = [epoch_arrays(loader) for _ in range(2)]
            if workers == 0:
                expected = [expected_epoch(data, loader, e, AUGMENT) for e in range(2)]
    for epoch in range(2):
        assert_same_epochs(runs[0][epoch], expected[epoch])
        assert_same_epochs(runs[1][epoch], runs[0][epoch])
        assert_same_epochs(runs[2][epoch], runs[0][epoch])
    # Augmentation happened: epoch 1 differs from epoch 0 beyond the order.
    plain = {digest(s.image) for s in data.samples}
    delivered = {digest(image) for images, _, _ in runs[0][0] for image in images}
    assert len(delivered - plain) > 10
    for images, masks, _ in runs[0][0]:
        assert images.dtype == np.float32 and masks.dtype == np.bool_
        assert images.shape[1:] == (64, 64) and masks.shape == images.shape


@pytest.mark.slow
def test_augmented_epoch_resumes_bit_for_bit_from_a_saved_state(data: Traced) -> None:
    with BatchLoader(data.index, batch_size=4, seed=2, workers=1, transform=AUGMENT) as first:
        whole = epoch_arrays(first)  # epoch 0
        taken = []
        for batch in first:  # epoch 1, interrupted
            taken.append((np.array(batch.images), np.array(batch.masks)))
            if len(taken) == 2:
                saved = json.loads(json.dumps(first.state_dict()))
                break
        reference = expected_epoch(data, first, 1, AUGMENT)
    with BatchLoader(data.index, batch_size=4, seed=2, workers=2, transform=AUGMENT) as second:
        second.load_state_dict(saved)
        rest = epoch_arrays(second)
    assert_same_epochs(taken, reference[:2])
    assert_same_epochs(rest, reference[2:])
    assert len(whole) == 5


def test_transform_with_size_runs_before_the_crop_or_pad(data: Traced) -> None:
    crop = RandomCrop((48, 40))
    with BatchLoader(
        data.index, batch_size=5, workers=0, transform=crop, size=(48, 40), shuffle=False
    ) as loader:
        batches = list(loader)
        expected = expected_epoch(data, loader, 0, crop)
    assert all(b.images.shape[1:] == (48, 40) for b in batches)
    assert_same_epochs([tuple(b) for b in batches], expected)
    # A transform that changes the shape is fitted when size= is given...
    with BatchLoader(data.index, batch_size=5, workers=0, transform=DropRow(), size=(64, 64)) as ok:
        images, masks = next(iter(ok))
        assert images.shape == (5, 64, 64) and not ok.problems
        assert not masks[:, -1].any() and (images[:, -1] == 0).all()  # padded at the bottom


@pytest.mark.parametrize(
    ("transform", "reason"),
    [
        (DropRow(), "changed the shape to (63, 64)"),
        (IntMask(), "masks stay bool"),
    ],
)
def test_a_transform_returning_other_arrays_is_a_sample_problem(data, transform, reason) -> None:
    with BatchLoader(data.index, batch_size=8, workers=0, transform=transform) as loader:
        delivered = sum(len(images) for images, _ in loader)
        assert delivered == 0 and len(loader.skipped) == 20
        assert {p.code for p in loader.problems} == {"transform-failed"}
        assert all(reason in p.message for p in loader.problems)


@pytest.mark.slow
def test_a_raising_transform_skips_the_sample_naming_it(data: Traced) -> None:
    bad = [data.index.select("i")[k] for k in (3, 11)]
    failing = FailOn([data.samples[k].image for k in bad])
    with BatchLoader(data.index, batch_size=8, seed=1, workers=1, transform=failing) as loader:
        batches = list(loader)
        assert sorted(loader.skipped) == sorted(bad)
        assert loader.stats.skipped == 2 and loader.stats.samples == 18
    delivered = [int(k) for b in batches for k in b.meta.index]
    assert sorted(delivered) == sorted(set(data.index.select("i")) - set(bad))
    for batch in batches:  # the metadata lines up with the images (the skipped are left out)
        flipped = [data.ids(image[None, ::-1])[0] for image in batch.images]
        assert flipped == batch.meta.index.tolist()
    problems = sorted(loader.problems, key=lambda p: p.path)
    assert [p.code for p in problems] == ["transform-failed"] * 2
    records = sorted((data.index[k] for k in bad), key=lambda r: (r.patient_id, r.slice))
    assert [p.path for p in problems] == [f"{r.patient_id}_{r.slice:04d}" for r in records]
    assert [(p.patient_id, p.slice) for p in problems] == [(r.patient_id, r.slice) for r in records]
    assert all("ValueError: deliberate failure" in p.message for p in problems)


def test_a_raising_transform_raises_with_on_error_raise(data: Traced) -> None:
    k = data.index.select("i")[5]
    failing = FailOn([data.samples[k].image])
    with (
        BatchLoader(
            data.index, batch_size=4, workers=0, transform=failing, on_error="raise", shuffle=False
        ) as loader,
        pytest.raises(LoaderError, match=rf"sample {k}, .*ValueError: deliberate failure"),
    ):
        list(loader)


def test_an_unpicklable_transform_is_refused_when_built(data: Traced) -> None:
    with pytest.raises(LoaderError, match=r"cannot be pickled.*module level.*workers=0"):
        BatchLoader(data.index, workers=1, transform=lambda image, mask, rng: (image, mask))
    loader = BatchLoader(data.index, workers=0, transform=lambda image, mask, rng: (image, mask))
    assert len(next(iter(loader))[0]) == 8  # in-process, nothing is pickled
    with pytest.raises(TypeError, match="transform must be a callable"):
        BatchLoader(data.index, workers=0, transform="flip")  # type: ignore[arg-type]


# ------------------------------------------------------------------ Batch, metadata, channels


@pytest.mark.parametrize(("workers", "copy"), [(0, True), (0, False), (1, False)])
@pytest.mark.slow
def test_batch_unpacks_and_its_meta_matches_the_scan(data: Traced, workers, copy) -> None:
    with BatchLoader(data.index, batch_size=6, seed=3, workers=workers, copy=copy) as loader:
        for batch in loader:
            assert isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch, Batch)
            images, masks = batch
            assert images is batch.images and masks is batch.masks
            ids = data.ids(images)
            assert batch.meta.index.tolist() == ids  # the metadata is the images'
            records = [data.index[k] for k in ids]
            assert batch.meta.patient_id == tuple(r.patient_id for r in records)
            assert batch.meta.slice.tolist() == [r.slice for r in records]
            assert batch.meta.case_id == tuple(f"{r.patient_id}_{r.slice:04d}" for r in records)
            assert batch.meta.key == batch.meta.case_id
            np.testing.assert_array_equal(
                batch.meta.pixel_spacing, [r.header.pixel_spacing for r in records]
            )
            as_dict = batch.as_dict()
            assert as_dict["image"] is images and as_dict["label"] is masks
            assert as_dict["case_id"] == list(batch.meta.case_id)
            assert batch.meta[0]["slice"] == records[0].slice
            del images, masks, batch, as_dict  # copy=False: give the slot back


def test_batch_pickles_with_its_meta() -> None:
    batch = Batch(
        np.ones((2, 3, 3), np.float32), np.zeros((2, 3, 3), bool), BatchMeta.unknown([4, 9])
    )
    copy = pickle.loads(pickle.dumps(batch))
    assert isinstance(copy, Batch) and copy.meta.index.tolist() == [4, 9]
    np.testing.assert_array_equal(copy.images, batch.images)
    assert "Batch(images=float32 (2, 3, 3)" in repr(batch)


def test_a_source_without_meta_gives_indices_only() -> None:
    with BatchLoader(Numbered(7), batch_size=3, workers=0, shuffle=False) as loader:
        batch = next(iter(loader))
    assert batch.meta.index.tolist() == [0, 1, 2] and batch.meta.case_id == ("0", "1", "2")
    assert batch.meta.patient_id == ("",) * 3 and (batch.meta.slice == -1).all()
    assert np.isnan(batch.meta.pixel_spacing).all()


@pytest.mark.parametrize(("target", "channels"), [("i", 1), ("o", 1), ("both", 2)])
@pytest.mark.parametrize("copy", [True, False])
def test_channels_add_the_axis_frameworks_expect(data, target, channels, copy) -> None:
    plain = BatchLoader(data.index, batch_size=4, target=target, workers=0, seed=1)
    with BatchLoader(
        data.index, batch_size=4, target=target, workers=0, seed=1, channels=True, copy=copy
    ) as loader:
        for (images, masks), (plain_images, plain_masks) in zip(loader, plain, strict=True):
            assert images.shape == (len(plain_images), 1, 64, 64)
            assert masks.shape == (len(plain_images), channels, 64, 64) and masks.dtype == bool
            np.testing.assert_array_equal(images[:, 0], plain_images)
            np.testing.assert_array_equal(masks.reshape(plain_masks.shape), plain_masks)
            if not copy:
                assert not images.flags.writeable
            del images, masks


# ------------------------------------------------------------------ the cache and the real data


def test_cache_source_meta_matches_the_scan_with_nan_spacing(data: Traced, tmp_path) -> None:
    build_cache(data.index.root, tmp_path / "cache", shard_size=3)
    for copy in (True, False):
        with BatchLoader.from_cache(
            tmp_path / "cache", batch_size=7, workers=0, copy=copy, root=False
        ) as loader:
            seen = 0
            for batch in loader:
                records = [data.index[k] for k in data.ids(batch.images)]
                assert batch.meta.patient_id == tuple(r.patient_id for r in records)
                assert batch.meta.slice.tolist() == [r.slice for r in records]
                assert batch.meta.case_id == tuple(f"{r.patient_id}_{r.slice:04d}" for r in records)
                assert np.isnan(batch.meta.pixel_spacing).all()  # the cache does not record it
                seen += len(records)
                del batch
            assert seen == 20


@pytest.mark.slow
def test_real_data_meta_and_augmented_batches(real_data) -> None:
    index = dicontour.scan(real_data)
    with BatchLoader(index, batch_size=8, workers=0, transform=AUGMENT, channels=True) as loader:
        batch = next(iter(loader))
    assert batch.images.shape == (8, 1, 256, 256) and batch.masks.shape == (8, 1, 256, 256)
    assert batch.masks.any(axis=(1, 2, 3)).all()  # rotated and zoomed, the LV is still there
    by_case = {f"{r.patient_id}_{r.slice:04d}": r for r in index}
    for j, case in enumerate(batch.meta.case_id):
        record = by_case[case]
        assert batch.meta.patient_id[j] == record.patient_id
        assert tuple(batch.meta.pixel_spacing[j]) == record.header.pixel_spacing
        assert record.header.pixel_spacing[0] > 0


# ------------------------------------------------------------------ telemetry


@pytest.mark.slow
def test_stats_describe_each_epoch(data: Traced) -> None:
    with BatchLoader(data.index, batch_size=6, workers=1) as loader:
        assert loader.stats is None and loader.history == []
        delivered = 0
        for images, _ in loader:
            delivered += len(images)
            live = loader.stats
            assert live.batches >= 1 and not live.complete
        stats = loader.stats
        assert isinstance(stats, EpochStats) and stats.complete and stats.epoch == 0
        assert stats.samples == delivered == 20 and stats.batches == len(loader) == 4
        assert 0 < stats.first_batch_s <= stats.seconds
        assert 0 <= stats.wait_s <= stats.seconds
        assert stats.samples_per_s == pytest.approx(stats.samples / stats.seconds)
        assert stats.restarts == 0 and stats.skipped == len(loader.skipped) == 0
        for _ in loader:  # the second epoch is broken off after one batch
            break
        assert [s.epoch for s in loader.history] == [0, 1]
        assert loader.history[0] == stats
        assert loader.history[1].batches == 1 and not loader.history[1].complete
        document = json.loads(json.dumps(loader.history[1].to_dict()))
        assert document["samples"] == 6 and document["complete"] is False
    # Workers start during the first epoch: its first batch waits for them.
    assert loader.history[0].first_batch_s > loader.history[0].wait_s / len(loader) / 10


# ------------------------------------------------------------------ memory bounded before work


def test_slots_over_the_limit_are_refused_before_allocation(data: Traced, monkeypatch) -> None:
    with pytest.raises(LoaderError, match=r"MAX_BATCH_BYTES = 8 GiB") as caught:
        BatchLoader(data.index, size=(100_000, 100_000), workers=0)
    assert "4 slots x 8 x 100000 x 100000" in str(caught.value)
    monkeypatch.setattr(batches_module, "MAX_BATCH_BYTES", 100_000)
    with pytest.raises(LoaderError, match=r"163,840 bytes per batch"):
        BatchLoader(data.index, batch_size=8, workers=0)  # 8 x 64 x 64 x 5 bytes
    monkeypatch.undo()
    monkeypatch.setattr(batches_module, "_shm_free", lambda: 1000)
    with pytest.raises(LoaderError, match=r"/dev/shm has 0.0 MiB free"):
        BatchLoader(data.index, batch_size=8, workers=1)


def test_a_huge_batch_size_is_one_batch_of_the_epoch(data: Traced) -> None:
    with BatchLoader(data.index, batch_size=10**9, workers=0) as loader:
        assert len(loader) == 1
        (images, _masks), *rest = list(loader)
    assert (
        not rest
        and images.shape == (20, 64, 64)
        and sorted(data.ids(images)) == sorted(data.index.select("i"))
    )
    assert math.isfinite(loader.stats.samples_per_s)


def test_a_torchio_transform_in_the_loader_follows_the_rule(data: Traced) -> None:
    tio = pytest.importorskip("torchio", reason="TorchIO is not installed")
    from dicontour.augment import from_torchio

    transform = from_torchio(tio.RandomFlip(axes=(0, 1), flip_probability=0.5))
    with BatchLoader(data.index, batch_size=8, seed=6, workers=0, transform=transform) as loader:
        got = epoch_arrays(loader)
        expected = expected_epoch(data, loader, 0, transform)
    assert_same_epochs(got, expected)
    plain = {digest(s.image) for s in data.samples}
    assert any(digest(image) not in plain for images, _, _ in got for image in images)
