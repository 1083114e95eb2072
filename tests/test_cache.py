"""The preprocessed cache: format, reads, verify, stale detection, resume after kill -9."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import CACHE_PHANTOM, tree_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

import dicontour
from dicontour.cache import (
    CacheSource,
    _store,
    build_cache,
    check_fresh,
    open_cache,
    plan_shards,
    verify_cache,
)
from dicontour.cli import main
from dicontour.errors import CacheError
from dicontour.phantom import write_phantom
from dicontour.storage import location

pytestmark = pytest.mark.timeout(60)

SHARD = 5  # 36 samples -> 8 shards, the last one short


@pytest.fixture(scope="module")
def dataset(phantom: Callable[..., Path]) -> Path:
    """3 patients x 12 slices of 32x32, every slice labelled (36 samples, 18 with o)."""
    return phantom(**CACHE_PHANTOM)


@pytest.fixture(scope="module")
def reference(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted build of ``dataset``: the bytes every other build must reproduce."""
    cache = tmp_path_factory.mktemp("reference") / "cache"
    build_cache(dataset, cache, shard_size=SHARD)
    return cache


def copy_dataset(dataset: Path, tmp_path: Path) -> Path:
    """A private copy (mtimes kept) that a test may modify."""
    target = tmp_path / "data"
    shutil.copytree(dataset, target)
    return target


# ----------------------------------------------------------------------------- format


@pytest.mark.slow
def test_layout_and_contents_match_the_files(dataset: Path, reference: Path) -> None:
    index = dicontour.scan(dataset)
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["samples"] == 36 and manifest["i_masks"] == 36 and manifest["o_masks"] == 18
    assert [s["count"] for s in manifest["shards"]] == [5, 5, 5, 5, 5, 5, 5, 1]
    k = 0
    for entry in manifest["shards"]:
        folder = reference / "shards" / entry["name"]
        images = np.load(folder / "images.npy")
        masks = np.load(folder / "masks.npy")
        has = np.load(folder / "has.npy")
        shard_manifest = json.loads((folder / "manifest.json").read_text())
        assert images.dtype == np.float32 and images.shape == (entry["count"], 32, 32)
        assert masks.dtype == bool and masks.shape == (entry["count"], 2, 32, 32)
        for j, sample_entry in enumerate(shard_manifest["samples"]):
            sample = index.load(k)  # one shape: cache order is the index order
            assert (sample_entry["patient_id"], sample_entry["slice"]) == (
                sample.patient_id,
                sample.slice,
            )
            np.testing.assert_array_equal(images[j], sample.image)
            np.testing.assert_array_equal(masks[j, 0], sample.i_mask)
            assert has[j].tolist() == [True, sample.o_mask is not None]
            if sample.o_mask is None:
                assert not masks[j, 1].any()
            else:
                np.testing.assert_array_equal(masks[j, 1], sample.o_mask)
            k += 1
    assert k == 36


def test_manifest_checksums_are_those_of_the_files(reference: Path) -> None:
    import hashlib

    shard = reference / "shards" / "000003"
    entries = json.loads((shard / "manifest.json").read_text())["arrays"]
    for name in ("images.npy", "masks.npy", "has.npy"):
        data = (shard / name).read_bytes()
        assert entries[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert entries[name]["bytes"] == len(data)


def test_shard_manifest_records_file_versions(dataset: Path, reference: Path) -> None:
    sample = json.loads((reference / "shards" / "000000" / "manifest.json").read_text())["samples"][
        0
    ]
    stat = os.stat(dataset / sample["dicom"])
    assert sample["files"][sample["dicom"]] == f"{stat.st_size} {stat.st_mtime_ns}"


# ----------------------------------------------------------------------------- reading


def test_cache_source_reads_what_the_index_loads(dataset: Path, reference: Path) -> None:
    index = dicontour.scan(dataset)
    source = open_cache(reference, root=dataset)
    assert len(source) == 36
    assert source.shapes().tolist() == [[32, 32]] * 36
    assert source.has("i").all() and source.has("o").sum() == 18
    assert source.has("both").tolist() == source.has("o").tolist()
    for k in (0, 4, 5, 35):
        sample = index.load(k)
        image, mask = source.read(k, "i")
        assert image.dtype == np.float32 and not image.flags.writeable  # a view of the map
        np.testing.assert_array_equal(image, sample.image)
        np.testing.assert_array_equal(mask, sample.i_mask)
    both = next(k for k in range(36) if source.has("o")[k])
    _, masks = source.read(both, "both")
    assert masks.shape == (2, 32, 32)
    np.testing.assert_array_equal(masks[1], index.load(both).o_mask)
    assert "PHA00001" in source.describe(0) and "shard 000000" in source.describe(0)
    with pytest.raises(ValueError, match="read-only"):
        source.read(0, "i")[0][0, 0] = 1.0  # the cache cannot be changed through a read


def test_read_refuses_an_absent_mask_and_bad_positions(reference: Path) -> None:
    source = open_cache(reference)
    without_o = int(np.flatnonzero(~source.has("o"))[0])
    with pytest.raises(ValueError, match="has no o-mask"):
        source.read(without_o, "o")
    with pytest.raises(ValueError, match="target must be"):
        source.read(0, "x")  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="out of range"):
        source.read(36, "i")


def test_cache_source_pickles_small_and_reads_after(reference: Path) -> None:
    source = open_cache(reference)
    source.read(0, "i")  # opens memory maps, which must not travel
    data = pickle.dumps(source)
    assert len(data) < 2_000
    clone = pickle.loads(data)
    assert isinstance(clone, CacheSource)
    np.testing.assert_array_equal(clone.read(7, "i")[0], source.read(7, "i")[0])


@pytest.mark.slow
def test_real_data_cache_matches_the_index(real_data: Path, tmp_path: Path) -> None:
    report = build_cache(real_data, tmp_path / "cache", shard_size=40)
    assert (report.samples, report.shards, report.built) == (96, 3, 3)
    index = dicontour.scan(real_data)
    source = open_cache(tmp_path / "cache", root=real_data)
    assert source.has("o").sum() == 46
    for k in range(len(index)):
        sample = index.load(k)
        image, mask = source.read(k, "i")
        np.testing.assert_array_equal(image, sample.image)
        np.testing.assert_array_equal(mask, sample.i_mask)


# ----------------------------------------------------------------------------- verify


def test_verify_passes_an_intact_cache(dataset: Path, reference: Path) -> None:
    report = verify_cache(reference, root=dataset)
    assert report.ok and report.fresh is True
    assert report.samples == 36 and report.shards == 8
    on_disk = sum(p.stat().st_size for p in reference.rglob("*") if p.is_file())
    manifest_bytes = (reference / "manifest.json").stat().st_size
    assert report.bytes == on_disk - manifest_bytes


def test_verify_names_a_corrupted_and_a_missing_file(reference: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(reference, cache)
    images = cache / "shards" / "000002" / "images.npy"
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF
    images.write_bytes(bytes(data))
    (cache / "shards" / "000005" / "masks.npy").unlink()
    with pytest.raises(CacheError, match=r"2 problem\(s\).*000002/images.npy: sha256 mismatch"):
        verify_cache(cache)
    report = verify_cache(cache, strict=False)
    assert report.failures == [
        "shards/000002/images.npy: sha256 mismatch (corrupted)",
        "shards/000005/masks.npy: missing",
    ]


def test_cli_verify_exit_codes(reference: Path, tmp_path: Path, capsys) -> None:
    assert main(["cache", "verify", str(reference)]) == 0
    assert "OK" in capsys.readouterr().out
    cache = tmp_path / "cache"
    shutil.copytree(reference, cache)
    (cache / "shards" / "000001" / "has.npy").write_bytes(b"garbage")
    assert main(["cache", "verify", str(cache), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    assert document["failures"] == ["shards/000001/has.npy: 7 bytes, 138 expected"]


# ----------------------------------------------------------------------------- staleness


def test_a_changed_contour_makes_the_cache_stale(dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(dataset, tmp_path)
    cache = tmp_path / "cache"
    build_cache(data, cache, shard_size=SHARD)
    check_fresh(cache, data)  # fresh right after the build
    contour = next((data / "contourfiles" / "PH-2" / "i-contours").iterdir())
    contour.write_text(contour.read_text().replace("\n", " \n"))
    with pytest.raises(CacheError, match=r"stale: .*changed: contourfiles/PH-2\b"):
        open_cache(cache, root=data)
    assert verify_cache(cache, root=data, strict=False).fresh is False


def test_without_a_root_the_recorded_root_is_checked(
    dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = copy_dataset(dataset, tmp_path)
    cache = tmp_path / "cache"
    build_cache(data, cache, shard_size=SHARD)
    recorded = json.loads((cache / "manifest.json").read_text())["source"]
    assert recorded == str(data)  # absolute, as the build was given it
    with caplog.at_level("WARNING", logger="dicontour.cache"):
        assert len(open_cache(cache)) == 36  # fresh: served, quietly
    assert not caplog.records
    contour = next((data / "contourfiles" / "PH-2" / "o-contours").iterdir())
    contour.write_text(contour.read_text() + "\n")
    stale = rf"stale: the dataset {data} changed .*\(changed: contourfiles/PH-2; "
    with pytest.raises(CacheError, match=stale):
        open_cache(cache)
    with pytest.raises(CacheError, match=stale):
        dicontour.BatchLoader.from_cache(cache, workers=0)
    # The opt-out: served as built, no listing, no warning.
    with caplog.at_level("WARNING", logger="dicontour.cache"):
        assert len(open_cache(cache, root=False)) == 36
        with dicontour.BatchLoader.from_cache(cache, batch_size=4, root=False, workers=0) as loader:
            assert sum(len(images) for images, _ in loader) == 36
    assert not caplog.records


@pytest.mark.slow
def test_an_unreachable_recorded_root_serves_the_cache_with_a_warning(
    dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = copy_dataset(dataset, tmp_path)
    cache = tmp_path / "cache"
    build_cache(data, cache, shard_size=SHARD)
    moved = data.rename(tmp_path / "elsewhere")  # training on a machine with only the cache
    with caplog.at_level("WARNING", logger="dicontour.cache"):
        assert len(open_cache(cache)) == 36
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert f"the dataset it was built from, {data}, is not reachable here" in record.getMessage()
    # An empty folder where the dataset was (an unmounted mount point) is as unreachable.
    data.mkdir()
    caplog.clear()
    with caplog.at_level("WARNING", logger="dicontour.cache"):
        assert len(open_cache(cache)) == 36
    assert "no link.csv, dicoms/ or contourfiles/ there" in caplog.records[0].getMessage()
    # Named explicitly, the moved dataset is checked: unchanged, so fresh.
    caplog.clear()
    open_cache(cache, root=moved)
    assert not caplog.records


def test_the_recorded_root_is_the_same_for_a_relative_and_an_absolute_root(
    dataset: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(dataset.parent)
    cache = tmp_path / "cache"
    build_cache(dataset.name, cache, shard_size=SHARD)
    assert tree_bytes(cache) == tree_bytes(reference)


def test_an_added_patient_makes_the_cache_stale(dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(dataset, tmp_path)
    cache = tmp_path / "cache"
    build_cache(data, cache, shard_size=SHARD)
    shutil.copytree(data / "dicoms" / "PHA00003", data / "dicoms" / "PHA00004")
    with pytest.raises(
        CacheError, match=r"added: dicoms/PHA00004; 91 files at build time, 103 now"
    ):
        check_fresh(cache, data)


@pytest.mark.slow
def test_a_rebuild_after_a_change_rewrites_only_the_shards_concerned(
    dataset: Path, reference: Path, tmp_path: Path
) -> None:
    data = copy_dataset(dataset, tmp_path)
    cache = tmp_path / "cache"
    shutil.copytree(reference, cache)
    # Rewrite one DICOM with the same bytes: its mtime (the version) changes, its pixels not.
    dicom = data / "dicoms" / "PHA00001" / "3.dcm"
    dicom.write_bytes(dicom.read_bytes())
    os.utime(dicom, ns=(1, 1))
    report = build_cache(data, cache, shard_size=SHARD)
    assert (report.built, report.reused, report.up_to_date) == (1, 7, False)
    open_cache(cache, root=data)  # fresh again
    again = build_cache(data, cache, shard_size=SHARD)
    assert again.up_to_date and again.built == 0


def test_another_dicontour_version_is_refused(reference: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(reference, cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["dicontour_version"] = "0.0.1"
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match=r"built by dicontour 0\.0\.1, this is dicontour"):
        open_cache(cache)


def test_an_unfinished_or_absent_cache_is_refused(reference: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(reference, cache)
    (cache / "manifest.json").unlink()
    with pytest.raises(CacheError, match="unfinished cache"):
        open_cache(cache)
    with pytest.raises(CacheError, match="no cache here"):
        open_cache(tmp_path / "nothing")


def test_a_foreign_folder_is_never_overwritten(dataset: Path, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(CacheError, match=r"not a dicontour cache \(it holds thesis.tex\)"):
        build_cache(dataset, target)
    assert (target / "thesis.tex").read_text() == "precious"


def test_a_dataset_without_labels_is_refused(tmp_path: Path, phantom: Callable[..., Path]) -> None:
    root = phantom(patients=1, slices=3, shape=(32, 32), labelled_every=5, faults=False)
    with pytest.raises(CacheError, match="no labelled slice to cache"):
        build_cache(root, tmp_path / "cache")


# ----------------------------------------------------------------------------- shapes


def test_mixed_shapes_get_shards_of_one_shape(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_phantom(root, patients=2, slices=4, shape=(32, 32), labelled_every=1, faults=False)
    other = tmp_path / "other"
    write_phantom(other, patients=3, slices=3, shape=(40, 48), labelled_every=1, faults=False)
    shutil.move(other / "dicoms" / "PHA00003", root / "dicoms" / "PHA00003")
    shutil.move(other / "contourfiles" / "PH-3", root / "contourfiles" / "PH-3")
    with open(root / "link.csv", "a") as handle:
        handle.write("PHA00003,PH-3\n")
    build_cache(root, tmp_path / "cache", shard_size=3)
    source = open_cache(tmp_path / "cache", root=root)
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert [(s["count"], s["shape"]) for s in manifest["shards"]] == [
        (3, [32, 32]),
        (3, [32, 32]),
        (2, [32, 32]),
        (3, [40, 48]),
    ]
    assert source.shapes().tolist() == [[32, 32]] * 8 + [[40, 48]] * 3
    image, mask = source.read(9, "i")
    assert image.shape == mask.shape == (40, 48)
    assert "PHA00003" in source.describe(9)


@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(st.sampled_from([(2, 2), (3, 3), (4, 2)]), min_size=1, max_size=40),
    size=st.integers(1, 7),
)
def test_plan_covers_every_record_once_in_one_shape_shards(shapes, size) -> None:
    from types import SimpleNamespace

    plan = plan_shards([SimpleNamespace(shape=s) for s in shapes], size)
    flat = [k for _, positions in plan for k in positions]
    assert sorted(flat) == list(range(len(shapes)))
    for shape, positions in plan:
        assert 1 <= len(positions) <= size
        assert all(shapes[k] == shape for k in positions)
        assert positions == sorted(positions)
    # Full shards except the last of each shape.
    firsts = {}
    for n, (shape, _) in enumerate(plan):
        firsts.setdefault(shape, []).append(n)
    for numbers in firsts.values():
        assert all(len(plan[n][1]) == size for n in numbers[:-1])


# ----------------------------------------------------------------------------- resume

_SLOW_BUILD = """
import sys, time
import dicontour.cache._store as store
original = store.save_array
def slow(*args, **kwargs):
    time.sleep(float(sys.argv[4]))
    return original(*args, **kwargs)
store.save_array = slow
from dicontour.cache import build_cache
build_cache(sys.argv[1], sys.argv[2], shard_size=int(sys.argv[3]))
"""


def kill_build_after(dataset: Path, cache: Path, finished: int, delay: float) -> int:
    """Run a slowed build in a subprocess; SIGKILL it once ``finished`` shards are sealed."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_BUILD, str(dataset), str(cache), str(SHARD), str(delay)]
    )
    deadline = time.monotonic() + 40
    try:
        while time.monotonic() < deadline:
            sealed = list(cache.glob("shards/*/manifest.json"))
            if len(sealed) >= finished:
                break
            assert process.poll() is None, "the build ended before it could be killed"
            time.sleep(0.005)
        else:
            pytest.fail("the build made no progress")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    return len(list(cache.glob("shards/*/manifest.json")))


# delay: seconds before each array write, so kills land between and during shard writes,
# with a margin of 3 x delay after the last awaited shard for the kill to arrive in time.
@pytest.mark.parametrize(("finished", "delay"), [(1, 0.05), (3, 0.013), (7, 0.06)])
@pytest.mark.slow
def test_kill_9_then_resume_is_byte_identical(
    dataset: Path, reference: Path, tmp_path: Path, finished: int, delay: float
) -> None:
    cache = tmp_path / "cache"
    sealed = kill_build_after(dataset, cache, finished, delay)
    assert not (cache / "manifest.json").exists()  # an interrupted cache is never "complete"
    with pytest.raises(CacheError, match="unfinished"):
        open_cache(cache)
    report = build_cache(dataset, cache, shard_size=SHARD)
    # A sealed shard (manifest written last, atomically) is complete: all of them are kept.
    assert report.reused == sealed >= finished
    assert report.built == 8 - sealed
    assert tree_bytes(cache) == tree_bytes(reference)


def test_a_damaged_kept_shard_is_rebuilt(dataset: Path, reference: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(reference, cache)
    (cache / "manifest.json").unlink()  # as if killed before sealing
    masks = cache / "shards" / "000004" / "masks.npy"
    masks.write_bytes(masks.read_bytes()[:100])  # truncated
    (cache / "shards" / "000006" / ".images.npy.tmp-0123").write_bytes(b"leftover")
    report = build_cache(dataset, cache, shard_size=SHARD)
    assert (report.built, report.reused) == (1, 7)
    assert tree_bytes(cache) == tree_bytes(reference)


@pytest.mark.slow
def test_cli_build_then_up_to_date(dataset: Path, reference: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    args = ["cache", "build", str(dataset), str(cache), "--shard-size", str(SHARD)]
    assert main([*args, "--workers", "1", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["samples"], document["shards"], document["built"]) == (36, 8, 8)
    assert tree_bytes(cache) == tree_bytes(reference)
    assert main([*args, "--workers", "1"]) == 0
    assert "up to date" in capsys.readouterr().out
    # a scheduler without --engine dask is a usage error: exit 2, like every usage error
    assert main([*args, "--engine", "local", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "needs the dask engine" in capsys.readouterr().err


def test_a_worker_with_another_version_refuses_the_task(dataset: Path, tmp_path: Path) -> None:
    from dicontour.cache._build import ShardTask, build_shard
    from dicontour.storage import location

    record = dicontour.scan(dataset)[0]
    task = ShardTask(
        location(dataset),
        location(tmp_path / "cache"),
        "000000",
        (32, 32),
        (record,),
        {"dicontour_version": "0.0.1"},
    )
    with pytest.raises(CacheError, match=r"planned with 0\.0\.1: install the same version"):
        build_shard(task)
    assert not (tmp_path / "cache").exists()


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(["<f4", ">f4", "?", "<i2", "<u1", "<f8", "<c8", "V3", "<i4,<f4"]),
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
    order=st.sampled_from(["C", "F", "strided"]),
)
def test_save_array_writes_the_bytes_numpy_writes(
    tmp_path_factory: pytest.TempPathFactory, dtype: str, shape: list[int], order: str
) -> None:
    """save_array's direct write gives np.lib.format's .npy (format 1.0) byte for byte."""
    base = np.arange(int(np.prod(shape)) * 2 or 2, dtype=np.uint8)
    array = np.resize(base, (*shape, 2) if order == "strided" else shape)
    array = array.astype(np.dtype(dtype), order="F" if order == "F" else "C")
    if order == "strided":
        array = array[..., 0]
    expected = io.BytesIO()
    np.lib.format.write_array(expected, array, version=(1, 0), allow_pickle=False)
    where = location(str(tmp_path_factory.mktemp("npy")))
    entry = _store.save_array(where, "a.npy", array)
    written = Path(where.path("a.npy")).read_bytes()
    assert written == expected.getvalue()
    assert entry["bytes"] == len(written)
    assert entry["sha256"] == hashlib.sha256(written).hexdigest()
    assert np.array_equal(np.load(io.BytesIO(written)), array)
