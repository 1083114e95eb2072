"""The streamed build: shards cut while the scan runs, the same bytes as the two-phase build."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import CACHE_PHANTOM, tree_bytes

import dicontour.index
from dicontour.cache import _build as build_module
from dicontour.cache import build_cache
from dicontour.engine import LocalEngine
from dicontour.phantom import write_phantom

pytestmark = pytest.mark.timeout(120)


def _two_phase(streamed: Path, target: Path, root: Path) -> dict[str, bytes]:
    """The bytes of a build that reads every contour again: a sealed copy, its shards damaged."""
    shutil.copytree(streamed, target)
    for images in target.glob("shards/*/images.npy"):
        images.write_bytes(images.read_bytes()[:200])
    # Sealed: the build scans first, then rebuilds every shard from the files.
    report = build_cache(root, target, shard_size=5, engine=LocalEngine(workers=0))
    assert report.built == report.shards and not report.up_to_date
    return tree_bytes(target)


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    """Three shapes, interleaved by patient: 32x32, 40x48, 32x32, 36x40."""
    root = tmp_path / "data"
    write_phantom(root, patients=1, slices=7, shape=(32, 32), labelled_every=1, faults=False)
    links = ["patient_id,original_id"] + [
        line for line in (root / "link.csv").read_text().splitlines()[1:] if line
    ]
    for n, (shape, slices) in enumerate((((40, 48), 6), ((32, 32), 9), ((36, 40), 3)), start=2):
        other = tmp_path / f"other{n}"
        write_phantom(other, patients=1, slices=slices, shape=shape, labelled_every=1, faults=False)
        pid, oid = other.joinpath("link.csv").read_text().splitlines()[1].split(",")
        shutil.move(other / "dicoms" / pid, root / "dicoms" / f"Q{n}")
        shutil.move(other / "contourfiles" / oid, root / "contourfiles" / f"Q-{n}")
        links.append(f"Q{n},Q-{n}")
    (root / "link.csv").write_text("\n".join(links) + "\n")
    return root


def test_each_contour_is_read_once(
    phantom: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = phantom(**CACHE_PHANTOM)
    contours = len(list(dataset.glob("contourfiles/*/*/*.txt")))
    reads: list[str] = []
    read_points = dicontour.index.read_points
    monkeypatch.setattr(
        dicontour.index,
        "read_points",
        lambda root, rel: reads.append(rel) or read_points(root, rel),
    )
    streamed = tmp_path / "streamed"
    report = build_cache(dataset, streamed, shard_size=5, engine=LocalEngine(workers=0))
    assert (report.samples, report.built) == (36, 8)
    assert len(reads) == len(set(reads)) == contours == 54
    reads.clear()
    assert _two_phase(streamed, tmp_path / "again", dataset) == tree_bytes(streamed)
    assert len(reads) == 2 * contours  # the scan's reads, then the shards'


def test_mixed_shapes_stream_the_first_and_match_the_two_phase_bytes(
    mixed: Path, tmp_path: Path
) -> None:
    streamed = tmp_path / "streamed"
    report = build_cache(mixed, streamed, shard_size=5, engine=LocalEngine(workers=0))
    assert report.samples == 7 + 6 + 9 + 3
    manifest = (streamed / "manifest.json").read_text()
    assert manifest.count('"shape": [\n    32,\n    32\n   ]') == 4  # 16 samples: 5, 5, 5, 1
    assert _two_phase(streamed, tmp_path / "again", mixed) == tree_bytes(streamed)


@pytest.mark.slow
@pytest.mark.parametrize("shard_size", [1, 5, 64])
def test_worker_processes_write_the_same_bytes(mixed: Path, tmp_path: Path, shard_size) -> None:
    alone = tmp_path / "alone"
    build_cache(mixed, alone, shard_size=shard_size, engine=LocalEngine(workers=0))
    with LocalEngine(workers=2) as engine:
        build_cache(mixed, tmp_path / "pool", shard_size=shard_size, engine=engine)
    assert tree_bytes(tmp_path / "pool") == tree_bytes(alone)


def test_the_default_engine_uses_one_worker_per_cpu_for_a_large_dataset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = {f"contourfiles/O/i-contours/{n}.txt": "1 1" for n in range(5)}
    files["link.csv"] = "1 1"
    monkeypatch.setattr(build_module, "PARALLEL_CONTOURS", 5)
    engine = build_module._default_engine(files)
    assert engine.workers == LocalEngine().workers  # os.cpu_count()
    monkeypatch.setattr(build_module, "PARALLEL_CONTOURS", 6)
    assert build_module._default_engine(files).workers == 0


@pytest.mark.slow
def test_a_default_build_with_workers_writes_the_same_bytes(
    mixed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = tmp_path / "alone"
    build_cache(mixed, alone, shard_size=5)  # 50 contour files: in this process
    monkeypatch.setattr(build_module, "PARALLEL_CONTOURS", 1)
    build_cache(mixed, tmp_path / "pool", shard_size=5)
    assert tree_bytes(tmp_path / "pool") == tree_bytes(alone)
