"""One ``Target`` for every API that takes one: each valid value works, anything else raises.

``Index.pairs("both")`` and ``Sample.mask("both")`` used to return the o-mask
alone; every API must now give (H, W) for "i"/"o" and (2, H, W) [i, o] for
"both", checked against masks rasterised here from the contour files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import dicontour
from dicontour.cli import main
from dicontour.loader.index_source import IndexSource
from dicontour.targets import TARGETS, check_target

INVALID = ["x", "I", "O", "", "both ", "io", None, 1, ("i",)]


@pytest.fixture(scope="module")
def data(phantom: Callable[..., Path]) -> dicontour.Index:
    return dicontour.scan(
        phantom(patients=2, slices=8, shape=(40, 48), labelled_every=2, faults=False)
    )


@pytest.fixture(scope="module")
def cache(data: dicontour.Index, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("targets-cache") / "cache"
    dicontour.build_cache(data.root, out, shard_size=4)
    return out


def expected_has(record: dicontour.SampleRecord, target: str) -> bool:
    i, o = record.i_contour is not None, record.o_contour is not None
    return {"i": i, "o": o, "both": i and o}[target]


def expected_mask(index: dicontour.Index, record: dicontour.SampleRecord, target: str):
    """The mask(s) rasterised here, straight from the contour files."""

    def raster(path: str) -> np.ndarray:
        points = dicontour.read_contour(Path(index.root) / path)
        return dicontour.polygon_to_mask(points, record.shape)

    if target == "both":
        return np.stack([raster(record.i_contour), raster(record.o_contour)])
    return raster(record.i_contour if target == "i" else record.o_contour)


def test_the_phantom_has_slices_with_each_contour_mix(data):
    kinds = {(r.i_contour is not None, r.o_contour is not None) for r in data}
    assert kinds == {(True, True), (True, False)}  # "both" and "i"-only slices exist


@pytest.mark.parametrize("target", TARGETS)
def test_check_target_accepts_each_target(target):
    assert check_target(target) == target


@pytest.mark.parametrize("value", [*INVALID, np.array(["i"])], ids=repr)
def test_check_target_rejects_anything_else_naming_the_valid_ones(value):
    with pytest.raises(ValueError, match="'i', 'o', 'both'"):
        check_target(value)


def test_the_loader_modules_share_the_one_target():
    from dicontour import index, targets
    from dicontour.loader import source

    assert source.Target is targets.Target and index.Target is targets.Target
    assert targets.TARGETS == ("i", "o", "both")


# ------------------------------------------------------------------ each target, each API


@pytest.mark.parametrize("target", TARGETS)
def test_record_has_and_index_select(data, target):
    assert [r.has(target) for r in data] == [expected_has(r, target) for r in data]
    assert data.select(target) == [k for k, r in enumerate(data) if expected_has(r, target)]
    assert data.select(target)  # not vacuous


@pytest.mark.parametrize("target", TARGETS)
def test_index_pairs_gives_the_target_masks(data, target):
    pairs = list(data.pairs(target=target))
    chosen = [r for r in data if expected_has(r, target)]
    assert len(pairs) == len(chosen) > 0
    for (image, mask), record in zip(pairs, chosen, strict=True):
        assert image.shape == record.shape and image.dtype == np.float32
        want = expected_mask(data, record, target)
        assert mask.dtype == bool and mask.shape == want.shape
        np.testing.assert_array_equal(mask, want)
    if target == "both":
        assert pairs[0][1].shape == (2, *pairs[0][0].shape)
        assert not np.array_equal(pairs[0][1][0], pairs[0][1][1])  # i and o differ


@pytest.mark.parametrize("target", TARGETS)
def test_sample_mask(data, target):
    for k, record in enumerate(data):
        sample = data.load(k)
        if expected_has(record, target):
            np.testing.assert_array_equal(sample.mask(target), expected_mask(data, record, target))
        else:
            with pytest.raises(ValueError, match=f"slice {record.slice}"):
                sample.mask(target)


@pytest.mark.parametrize("target", TARGETS)
def test_index_source(data, target):
    source = IndexSource(data)
    assert source.has(target).tolist() == [expected_has(r, target) for r in data]
    k = data.select(target)[0]
    image, mask = source.read(k, target)
    assert image.shape == data[k].shape
    np.testing.assert_array_equal(mask, expected_mask(data, data[k], target))
    missing = [k for k, r in enumerate(data) if not expected_has(r, target)]
    if missing:
        with pytest.raises(ValueError, match="has no"):
            source.read(missing[0], target)


@pytest.mark.parametrize("target", TARGETS)
def test_cache_source(data, cache, target):
    source = dicontour.open_cache(cache)
    assert source.has(target).tolist() == [expected_has(r, target) for r in data]
    k = data.select(target)[0]
    image, mask = source.read(k, target)
    assert image.shape == data[k].shape
    np.testing.assert_array_equal(mask, expected_mask(data, data[k], target))


@pytest.mark.parametrize("target", TARGETS)
def test_batch_loader(data, target):
    with dicontour.BatchLoader(data, batch_size=2, target=target, workers=0, shuffle=False) as ld:
        images, masks = next(iter(ld))
    first = data.select(target)[:2]
    want = np.stack([expected_mask(data, data[k], target) for k in first])
    np.testing.assert_array_equal(masks, want)
    assert images.shape == (2, *data[first[0]].shape)


@pytest.mark.parametrize("target", TARGETS)
def test_torch_sample_dataset(data, target):
    pytest.importorskip("torch")
    from dicontour.torch import SampleDataset

    dataset = SampleDataset(data, target=target)
    assert len(dataset) == len(data.select(target))
    image, mask = dataset[0]
    assert tuple(image.shape) == data[data.select(target)[0]].shape
    want = expected_mask(data, data[data.select(target)[0]], target)
    np.testing.assert_array_equal(mask.numpy(), want)


@pytest.mark.parametrize("target", TARGETS)
def test_cli_batches_target(data, target, capsys):
    argv = ["batches", data.root, "--target", target, "--workers", "0", "--epochs", "1"]
    assert main([*argv, "--batch-size", "2", "--json", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f'"target": "{target}"' in out
    assert f'"samples_per_epoch": {len(data.select(target))}' in out


# ------------------------------------------------------------------ invalid targets


@pytest.mark.parametrize("target", INVALID, ids=repr)
def test_every_api_rejects_an_invalid_target(data, cache, target):
    record = data[0]
    sample = data.load(0)
    calls = {
        "SampleRecord.has": lambda: record.has(target),
        "Index.select": lambda: data.select(target),
        "Index.pairs": lambda: data.pairs(target=target),  # at the call, not the first next()
        "Sample.mask": lambda: sample.mask(target),
        "IndexSource.has": lambda: IndexSource(data).has(target),
        "IndexSource.read": lambda: IndexSource(data).read(0, target),
        "CacheSource.has": lambda: dicontour.open_cache(cache).has(target),
        "CacheSource.read": lambda: dicontour.open_cache(cache).read(0, target),
        "BatchLoader": lambda: dicontour.BatchLoader(data, target=target, workers=0),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="target must be one of"):
            call()
            pytest.fail(f"{name} accepted target {target!r}")


def test_torch_dataset_rejects_an_invalid_target(data):
    pytest.importorskip("torch")
    from dicontour.torch import SampleDataset

    with pytest.raises(ValueError, match="target must be one of"):
        SampleDataset(data, target="x")


def test_cli_rejects_an_invalid_target_as_a_usage_error(data, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["batches", data.root, "--target", "x"])
    assert exit_.value.code == 2
    assert "invalid choice: 'x'" in capsys.readouterr().err
