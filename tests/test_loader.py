"""BatchLoader: exactly once, reproducible order, resume, options, shapes, IndexSource.

Every test traces the delivered images back to sample indices through the
image bytes that ``Index.load`` gives (each phantom image is unique), so what
the loader delivered is checked against the scan, not against itself.  The
expected order is computed here with numpy from the documented rule
``default_rng([seed, epoch]).permutation(n)``.
"""

from __future__ import annotations

import importlib
import json
import pickle
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import REAL_DATA, REAL_DATA_REASON, Numbered, Traced, copy_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

import dicontour
from dicontour import BatchLoader, IndexSource, LoaderError, SampleSource
from dicontour.loader import batch_count, epoch_order, rank_share
from dicontour.loader.prepare import centre_slices, normalize, place
from dicontour.loader.state import check_state

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def data(traced: Traced) -> Traced:
    """2 patients x 20 slices of 64 x 64: 20 i-samples, 10 of them with an o-contour."""
    return traced


def run_epochs(loader: BatchLoader, data: Traced, epochs: int) -> list[list[list[int]]]:
    """Sample ids per batch per epoch, checking dtypes, shapes and masks on the way."""
    result = []
    for _ in range(epochs):
        batches = []
        for images, masks in loader:
            assert images.dtype == np.float32 and masks.dtype == np.bool_
            assert images.shape[1:] == (64, 64) and masks.shape == images.shape
            ids = data.ids(images)
            for k, mask in zip(ids, masks, strict=True):
                np.testing.assert_array_equal(mask, data.samples[k].i_mask)
            batches.append(ids)
        result.append(batches)
    return result


# ------------------------------------------------------------------ exactly once, order


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.slow
def test_every_sample_once_per_epoch_in_the_seeded_order(data: Traced, workers: int) -> None:
    with BatchLoader(data.index, batch_size=8, seed=5, workers=workers, prefetch=3) as loader:
        assert len(loader) == 3  # 20 samples: 8 + 8 + 4
        epochs = run_epochs(loader, data, 3)
        assert loader.state_dict()["epoch"] == 3
    eligible = data.index.select("i")
    for epoch, batches in enumerate(epochs):
        assert [len(b) for b in batches] == [8, 8, 4]
        flat = [k for batch in batches for k in batch]
        assert sorted(flat) == eligible  # every sample, no duplicates
        assert flat == data.expected("i", seed=5, epoch=epoch)
    assert epochs[0] != epochs[1] != epochs[2]


def test_same_seed_same_order_other_seed_other_order(data: Traced) -> None:
    with (
        BatchLoader(data.index, seed=1, workers=0) as a,
        BatchLoader(data.index, seed=2, workers=0) as b,
    ):
        assert run_epochs(a, data, 1) != run_epochs(b, data, 1)
    with BatchLoader(data.index, seed=1, workers=0) as again:
        assert run_epochs(again, data, 1)[0] == [
            data.expected("i", 1, 0)[:8],
            data.expected("i", 1, 0)[8:16],
            data.expected("i", 1, 0)[16:],
        ]


def test_shuffle_false_keeps_the_index_order(data: Traced) -> None:
    with BatchLoader(data.index, batch_size=6, shuffle=False, workers=0) as loader:
        epochs = run_epochs(loader, data, 2)
    eligible = data.index.select("i")
    assert [k for b in epochs[0] for k in b] == eligible == [k for b in epochs[1] for k in b]


def test_drop_last_gives_only_full_batches(data: Traced) -> None:
    with BatchLoader(data.index, batch_size=8, drop_last=True, workers=0) as loader:
        assert len(loader) == 2
        epochs = run_epochs(loader, data, 2)
    for epoch, batches in enumerate(epochs):
        assert [len(b) for b in batches] == [8, 8]
        assert [k for b in batches for k in b] == data.expected("i", 0, epoch)[:16]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.slow
def test_real_data_one_epoch(tmp_path: Path) -> None:
    if not REAL_DATA.exists():
        pytest.skip(REAL_DATA_REASON)
    index = dicontour.scan(REAL_DATA)
    with BatchLoader(index, batch_size=8, workers=2) as loader:
        seen = []
        for images, masks in loader:
            assert images.shape == (8, 256, 256) and masks.shape == (8, 256, 256)
            assert masks.any(axis=(1, 2)).all()  # every i-contour encloses pixels
            seen.append(len(images))
    assert len(seen) == 12 and sum(seen) == 96


# ------------------------------------------------------------------ resume


@pytest.mark.slow
def test_resume_mid_epoch_from_a_saved_state(data: Traced) -> None:
    with BatchLoader(data.index, batch_size=4, seed=7, workers=1) as first:
        run_epochs(first, data, 1)
        taken = []
        for images, _ in first:
            taken.append(data.ids(images))
            if len(taken) == 2:
                saved = json.loads(json.dumps(first.state_dict()))  # plain JSON
                break
        # Breaking out ends the epoch: iterating again starts epoch 2.
        assert first.state_dict()["epoch"] == 2 and first.state_dict()["batch"] == 0
    assert saved["epoch"] == 1 and saved["batch"] == 2 and saved["version"] == 1
    expected = data.expected("i", 7, 1)
    assert taken == [expected[0:4], expected[4:8]]

    with BatchLoader(data.index, batch_size=4, seed=7, workers=0) as second:
        second.load_state_dict(saved)
        rest = [data.ids(images) for images, _ in second]
        assert rest == [expected[i : i + 4] for i in range(8, 20, 4)]
        after = [k for images, _ in second for k in data.ids(images)]
    assert after == data.expected("i", 7, 2)


def test_load_state_dict_reports_mismatches_side_by_side(data: Traced) -> None:
    loader = BatchLoader(data.index, batch_size=4, seed=0, workers=0)
    state = loader.state_dict()
    with pytest.raises(LoaderError) as caught:
        loader.load_state_dict({**state, "seed": 9, "batch_size": 8})
    assert "seed: state 9, loader 0" in str(caught.value)
    assert "batch_size: state 8, loader 4" in str(caught.value)
    with pytest.raises(LoaderError, match="version 99"):
        loader.load_state_dict({**state, "version": 99})
    with pytest.raises(LoaderError, match="lacks epoch"):
        loader.load_state_dict({k: v for k, v in state.items() if k != "epoch"})
    with pytest.raises(LoaderError, match="past the end"):
        loader.load_state_dict({**state, "batch": 6})
    with pytest.raises(LoaderError, match="non-negative"):
        loader.load_state_dict({**state, "epoch": -1})
    loader.load_state_dict({**state, "epoch": 4, "batch": 5})  # the end of epoch 4
    assert (loader.epoch, loader.state_dict()["batch"]) == (5, 0)


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.slow
def test_iterating_again_supersedes_an_open_iteration(data: Traced, workers: int) -> None:
    with BatchLoader(data.index, batch_size=8, workers=workers) as loader:
        stale = iter(loader)
        for _ in range(3):  # every batch of epoch 0, but the loop has not ended
            next(stale)
        fresh = [k for images, _ in loader for k in data.ids(images)]
        assert fresh == data.expected("i", 0, 1)  # the open epoch 0 counted as ended
        assert next(stale, None) is None
        stale = iter(loader)
        next(stale)  # batch 0 of epoch 2
        assert [k for images, _ in loader for k in data.ids(images)] == data.expected("i", 0, 3)
        with pytest.raises(LoaderError, match="superseded"):
            next(stale)
        assert [k for images, _ in loader for k in data.ids(images)] == data.expected("i", 0, 4)


@pytest.mark.slow
def test_loading_a_state_discards_work_started_for_the_next_epoch(data: Traced) -> None:
    with BatchLoader(data.index, batch_size=4, workers=1) as loader:
        assert [k for images, _ in loader for k in data.ids(images)] == data.expected("i", 0, 0)
        # Epoch 1 is already loading in the background; jump elsewhere instead.
        loader.load_state_dict({**loader.state_dict(), "epoch": 5, "batch": 1})
        assert [k for images, _ in loader for k in data.ids(images)] == data.expected("i", 0, 5)[4:]
        assert [k for images, _ in loader for k in data.ids(images)] == data.expected("i", 0, 6)


# ------------------------------------------------------------------ targets and options


@pytest.mark.slow
def test_target_o_and_both(data: Traced) -> None:
    with BatchLoader(data.index, batch_size=4, target="o", workers=0) as loader:
        seen = []
        for images, masks in loader:
            for k, mask in zip(data.ids(images), masks, strict=True):
                np.testing.assert_array_equal(mask, data.samples[k].o_mask)
                seen.append(k)
    assert sorted(seen) == data.index.select("o") and len(seen) == 10
    with BatchLoader(data.index, batch_size=4, target="both", workers=1) as loader:
        count = 0
        for images, masks in loader:
            assert masks.shape == (len(images), 2, 64, 64)
            for k, pair in zip(data.ids(images), masks, strict=True):
                np.testing.assert_array_equal(pair[0], data.samples[k].i_mask)
                np.testing.assert_array_equal(pair[1], data.samples[k].o_mask)
                count += 1
    assert count == len(data.index.select("both"))


def test_normalize_zscore_and_percentile(data: Traced) -> None:
    order = data.expected("i", 0, 0)
    with BatchLoader(data.index, batch_size=20, normalize="zscore", workers=0) as loader:
        ((images, _),) = list(loader)
    for k, image in zip(order, images, strict=True):
        raw = data.samples[k].image.astype(np.float64)
        np.testing.assert_allclose(image, (raw - raw.mean()) / raw.std(), atol=1e-4)
    with BatchLoader(data.index, batch_size=20, normalize="percentile", workers=0) as loader:
        ((images, _),) = list(loader)
    for k, image in zip(order, images, strict=True):
        raw = data.samples[k].image.astype(np.float64)
        low, high = np.percentile(raw, 1), np.percentile(raw, 99)
        np.testing.assert_allclose(image, np.clip((raw - low) / (high - low), 0, 1), atol=1e-5)
        assert image.min() == 0.0 and image.max() == 1.0


def test_normalize_constant_image_gives_zeros() -> None:
    flat = np.full((4, 4), 7.0, dtype=np.float32)
    assert not normalize(flat, "zscore").any()
    assert not normalize(flat, "percentile").any()
    with pytest.raises(ValueError, match="normalize must be one of"):
        normalize(flat, "minmax")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, phantom: Callable[..., Path]) -> Traced:
    """Patient 1 with 64 x 64 images, patient 2 with 48 x 72 (taken from another phantom)."""
    base = tmp_path_factory.mktemp("mixed")
    a = phantom(patients=1, slices=10, shape=(64, 64), faults=False, seed=1)
    b = phantom(patients=2, slices=10, shape=(48, 72), faults=False, seed=2)
    copy_dataset(a, base / "a")
    shutil.copytree(b / "dicoms/PHA00002", base / "a/dicoms/PHA00002")
    shutil.copytree(b / "contourfiles/PH-2", base / "a/contourfiles/PH-2")
    with open(base / "a/link.csv", "a") as handle:
        handle.write("PHA00002,PH-2\n")
    return Traced(base / "a")


def test_mixed_shapes_fail_when_built_and_naming_both(mixed: Traced) -> None:
    with pytest.raises(LoaderError, match=r"differ in shape") as caught:
        BatchLoader(mixed.index, workers=0)
    message = str(caught.value)
    assert "64x64" in message and "48x72" in message
    assert "dicoms/PHA00001/" in message and "dicoms/PHA00002/" in message
    assert "size=(H, W)" in message


@pytest.mark.slow
def test_mixed_shapes_with_size_centre_crop_and_pad(mixed: Traced) -> None:
    with BatchLoader(mixed.index, batch_size=4, size=(56, 56), workers=1) as loader:
        assert loader.shape == (56, 56)
        delivered = [(i, m) for images, masks in loader for i, m in zip(images, masks, strict=True)]
    assert len(delivered) == len(mixed.index.select("i"))
    expected = {}
    for k in mixed.index.select("i"):
        image, mask = mixed.samples[k].image, mixed.samples[k].i_mask
        want_image, want_mask = np.zeros((56, 56), np.float32), np.zeros((56, 56), bool)
        if image.shape == (64, 64):  # cropped by 4 on every side
            want_image[:], want_mask[:] = image[4:60, 4:60], mask[4:60, 4:60]
        else:  # 48 x 72: padded by 4 rows above and below, cropped by 8 columns each side
            want_image[4:52], want_mask[4:52] = image[:, 8:64], mask[:, 8:64]
        expected[want_image.tobytes()] = want_mask
    for image, mask in delivered:
        np.testing.assert_array_equal(mask, expected.pop(image.tobytes()))
    assert not expected


def test_rank_shares_are_equal_and_cover_the_epoch(data: Traced) -> None:
    eligible = data.index.select("i")
    for drop_last, per_rank in ((False, 7), (True, 6)):
        shares = []
        for rank in range(3):
            loader = BatchLoader(
                data.index,
                batch_size=per_rank,
                rank=rank,
                world_size=3,
                drop_last=drop_last,
                workers=0,
            )
            assert loader.samples_per_epoch == per_rank and len(loader) == 1
            ((images, _),) = list(loader)
            shares.append(data.ids(images))
        order = data.expected("i", 0, 0)
        padded = order[:18] if drop_last else order + order[:1]  # wrap around to 21
        assert shares == [padded[r::3] for r in range(3)]
        flat = [k for share in shares for k in share]
        if drop_last:  # 18 of 20, disjoint
            assert len(set(flat)) == 18 and set(flat) <= set(eligible)
        else:  # all 20; one sample wrapped around to fill rank 2
            assert set(flat) == set(eligible) and len(flat) == 21


def test_no_sample_with_the_target_and_empty_epochs(
    data: Traced, phantom: Callable[..., Path]
) -> None:
    index = dicontour.scan(phantom(patients=1, slices=6, labelled_every=2, faults=False))
    with pytest.raises(LoaderError, match="an epoch has no batch"):
        BatchLoader(index, batch_size=8, drop_last=True, workers=0)
    empty = dicontour.Index(index.location, [], [], {})
    with pytest.raises(LoaderError, match="no sample has the i-contour"):
        BatchLoader(empty, workers=0)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("batch_size", 0, "batch_size must be an integer >= 1"),
        ("target", "x", "target must be one of"),
        ("workers", -1, "workers must be an integer >= 0"),
        ("prefetch", 0, "prefetch must be"),
        ("on_error", "ignore", "on_error must be"),
        ("normalize", "minmax", "normalize must be one of"),
        ("size", (64,), r"size must be \(H, W\)"),
        ("size", (0, 64), r"size\[0\] must be"),
        ("timeout", 0, "timeout must be a positive"),
        ("seed", -1, "seed must be"),
        ("rank", 2, "rank must be < world_size=2"),
        ("start_method", "vfork", "start_method must be one of"),
    ],
)
def test_options_are_checked(data: Traced, option: str, value: object, message: str) -> None:
    options: dict[str, object] = {"workers": 0, option: value}
    if option == "rank":
        options["world_size"] = 2
    with pytest.raises(ValueError, match=message):
        BatchLoader(data.index, **options)  # type: ignore[arg-type]


def test_not_a_source_is_refused() -> None:
    with pytest.raises(TypeError, match="an Index or a SampleSource; got list"):
        BatchLoader([1, 2, 3])  # type: ignore[arg-type]


# ------------------------------------------------------------------ IndexSource


def test_index_source_reads_what_index_load_reads(data: Traced) -> None:
    source = IndexSource(data.index)
    assert isinstance(source, SampleSource) and len(source) == len(data.index)
    np.testing.assert_array_equal(source.shapes(), [[64, 64]] * len(data.index))
    assert source.has("i").tolist() == [r.i_contour is not None for r in data.index]
    assert source.has("both").tolist() == [
        r.i_contour is not None and r.o_contour is not None for r in data.index
    ]
    for k in data.index.select("both"):
        image, mask = source.read(k, "both")
        np.testing.assert_array_equal(image, data.samples[k].image)
        np.testing.assert_array_equal(mask[0], data.samples[k].i_mask)
        np.testing.assert_array_equal(mask[1], data.samples[k].o_mask)
    k = data.index.select("i")[0]
    assert source.describe(k).startswith(data.index[k].dicom)
    with pytest.raises(ValueError, match="target must be one of"):
        source.has("x")  # type: ignore[arg-type]
    no_o = next(k for k in range(len(source)) if not source.has("o")[k])
    with pytest.raises(ValueError, match="has no o-contour"):
        source.read(no_o, "o")


def test_index_source_is_compact_arrays(data: Traced) -> None:
    source = IndexSource(data.index)
    blob = pickle.dumps(source)
    assert b"SampleRecord" not in blob and b"DicomHeader" not in blob
    # Ten times the samples: the pickle grows by the paths' bytes and, per sample,
    # 8 numeric header fields, the 2 pixel spacings and 3 path ends (8 bytes each)
    # and a dtype code (1 byte).
    many = dicontour.Index(data.index.location, list(data.index) * 10, [], {})
    grown = len(pickle.dumps(IndexSource(many))) - len(blob)
    path_bytes = sum(
        len(r.dicom) + len(r.i_contour or "") + len(r.o_contour or "") for r in data.index
    )
    assert grown <= 9 * (path_bytes + len(data.index) * (13 * 8 + 1)) + 200
    copy = pickle.loads(blob)
    np.testing.assert_array_equal(copy.read(0, "i")[0], data.samples[0].image)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    batch_size=st.integers(1, 12),
    prefetch=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    drop_last=st.booleans(),
    world_size=st.integers(1, 3),
    target=st.sampled_from(["i", "o"]),
    copy=st.booleans(),
)
def test_any_configuration_delivers_each_rank_share_once_in_order(
    n: int,
    batch_size: int,
    prefetch: int,
    seed: int,
    drop_last: bool,
    world_size: int,
    target: str,
    copy: bool,
) -> None:
    source = Numbered(n)
    eligible = [k for k in range(n) if source.has(target)[k]]
    expected_share = len(eligible) // world_size if drop_last else -(-len(eligible) // world_size)
    order = np.random.default_rng([seed, 1]).permutation(len(eligible))
    padded = np.resize(order, -(-len(eligible) // world_size) * world_size)
    for rank in range(world_size):
        options = {"rank": rank, "world_size": world_size, "drop_last": drop_last}
        try:
            loader = BatchLoader(
                source,
                batch_size,
                target=target,
                seed=seed,
                prefetch=prefetch,
                workers=0,
                copy=copy,
                **options,  # type: ignore[arg-type]
            )
        except LoaderError:
            assert len(eligible) == 0 or (drop_last and expected_share < batch_size)
            continue
        assert loader.samples_per_epoch == expected_share
        with loader:
            deque(loader, maxlen=0)  # epoch 0, no batch kept (copy=False lends slots)
            batches = [images[:, 0, 0].astype(int).tolist() for images, _ in loader]
        assert len(batches) == len(loader)
        assert (
            all(len(b) == batch_size for b in batches[:-1]) and 0 < len(batches[-1]) <= batch_size
        )
        delivered = [k for b in batches for k in b]
        share = (
            padded[: expected_share * world_size][rank::world_size]
            if not drop_last
            else (order[: expected_share * world_size][rank::world_size])
        )
        want = [eligible[p] for p in share]
        assert delivered == want[: len(loader) * batch_size]


# ------------------------------------------------------------------ pure helpers


@given(n=st.integers(0, 300), seed=st.integers(0, 2**32), epoch=st.integers(0, 1000))
def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch(
    n: int, seed: int, epoch: int
) -> None:
    order = epoch_order(n, seed=seed, epoch=epoch)
    assert sorted(order.tolist()) == list(range(n))
    np.testing.assert_array_equal(order, np.random.default_rng([seed, epoch]).permutation(n))


@given(n=st.integers(1, 200), world=st.integers(1, 9), drop=st.booleans())
def test_rank_shares_partition_the_order(n: int, world: int, drop: bool) -> None:
    order = np.random.default_rng(n).permutation(n)
    shares = [rank_share(order, rank=r, world_size=world, drop_last=drop) for r in range(world)]
    sizes = {len(s) for s in shares}
    assert len(sizes) == 1  # every rank the same number of samples
    flat = np.concatenate(shares)
    if drop:
        assert len(flat) == (n // world) * world and len(set(flat.tolist())) == len(flat)
    else:
        assert set(flat.tolist()) == set(range(n)) and len(flat) == -(-n // world) * world


@given(samples=st.integers(0, 1000), size=st.integers(1, 64), drop=st.booleans())
def test_batch_count(samples: int, size: int, drop: bool) -> None:
    count = batch_count(samples, size, drop_last=drop)
    assert count * size <= samples if drop else count * size >= samples
    assert samples - count * size < size if drop else count * size - samples < size


@settings(max_examples=50)
@given(
    h=st.integers(1, 12), w=st.integers(1, 12), out_h=st.integers(1, 12), out_w=st.integers(1, 12)
)
def test_place_pads_and_crops_around_the_centre(h: int, w: int, out_h: int, out_w: int) -> None:
    image = np.arange(1, h * w + 1, dtype=np.float32).reshape(h, w)
    out = np.full((out_h, out_w), -1.0, dtype=np.float32)
    place(image, out)
    assert (out >= 0).all()  # every pixel written, padding with 0
    kept = np.count_nonzero(out)
    assert kept == min(h, out_h) * min(w, out_w)
    # Padding then cropping back restores the image.
    big = np.zeros((max(h, out_h) + 2, max(w, out_w) + 2), dtype=np.float32)
    place(image, big)
    back = np.zeros_like(image)
    place(big, back)
    np.testing.assert_array_equal(back, image)


def test_centre_slices_by_hand() -> None:
    assert centre_slices(64, 56) == (slice(4, 60), slice(0, 56))
    assert centre_slices(48, 56) == (slice(0, 48), slice(4, 52))
    assert centre_slices(5, 6) == (slice(0, 5), slice(0, 5))  # odd: the extra pixel at the end


def test_check_state_rejects_non_dicts() -> None:
    with pytest.raises(LoaderError, match="must be a dict"):
        check_state([1], {"version": 1}, batches=3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ optional PyTorch glue


def test_without_torch_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    monkeypatch.delitem(sys.modules, "dicontour.torch", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'dicontour\[torch\]'"):
        importlib.import_module("dicontour.torch")


@pytest.mark.slow
def test_module_is_not_imported_by_the_core(tmp_path: Path) -> None:
    code = "import dicontour, sys; print('torch' in sys.modules, 'dicontour.torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["False", "False"]
