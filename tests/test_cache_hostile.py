"""The cache against hostile and broken folders: it touches only its own files, never serves rot.

Every test keeps a folder *outside* the cache and checks that its every byte
survives; damaged caches must be refused (``CacheError``, naming the file) or
rebuilt byte-identical to an uninterrupted build.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import CACHE_PHANTOM
from hypothesis import given
from hypothesis import strategies as st

import dicontour
from dicontour.cache import build_cache, open_cache, verify_cache
from dicontour.cache._check import npy_bytes
from dicontour.cache._layout import LOCK, own_file
from dicontour.cli import main
from dicontour.errors import CacheError

pytestmark = pytest.mark.timeout(120)

SHARD = 5  # 36 samples -> 8 shards


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``, links not followed: file -> bytes, link -> its target."""
    found: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = f"-> {os.readlink(path)}"
            elif path.is_file():
                found[relative] = path.read_bytes()
            else:
                found[relative] = "folder"
    return found


def cache_bytes(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(root).items() if isinstance(v, bytes)}


@pytest.fixture(scope="module")
def dataset(phantom: Callable[..., Path]) -> Path:
    return phantom(**CACHE_PHANTOM)


@pytest.fixture(scope="module")
def reference(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("reference") / "cache"
    build_cache(dataset, cache, shard_size=SHARD)
    return cache


@pytest.fixture(scope="module")
def served(reference: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """What the intact cache serves: every sample's image and [i, o] masks."""
    source = open_cache(reference, root=False)
    masks = [source.read(k, "i")[1] for k in range(len(source))]
    return [
        (source.read(k, "i")[0].copy(), masks[k].copy(), bool(source.has("o")[k]))
        for k in range(len(source))
    ]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder of someone's files next to the cache; no test may change a byte of it."""
    folder = tmp_path / "outside"
    (folder / "000000").mkdir(parents=True)
    (folder / "thesis.tex").write_text("precious")
    (folder / "000000" / "images.npy").write_bytes(b"not yours")
    (folder / "manifest.json").write_text('{"mine": true}')
    return folder


def copy_of(reference: Path, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    shutil.copytree(reference, cache)
    return cache


# ------------------------------------------------------------------ what is not its own


@pytest.mark.slow
def test_a_linked_shards_folder_is_refused_and_its_target_untouched(
    dataset: Path, reference: Path, tmp_path: Path, outside: Path
) -> None:
    cache = copy_of(reference, tmp_path)
    shutil.rmtree(cache / "shards")
    (cache / "shards").symlink_to(outside)
    before = tree(outside)
    with pytest.raises(CacheError, match=r"shards: a symbolic link \(to .*outside\)"):
        build_cache(dataset, cache, shard_size=SHARD)
    with pytest.raises(CacheError, match=r"shards: a symbolic link"):
        open_cache(cache, root=dataset)
    assert "shards: a symbolic link" in " ".join(verify_cache(cache, strict=False).failures)
    assert tree(outside) == before


def test_a_link_inside_a_shard_is_refused_never_followed(
    dataset: Path, reference: Path, tmp_path: Path, outside: Path
) -> None:
    cache = copy_of(reference, tmp_path)
    shard = cache / "shards" / "000002"
    (shard / "manifest.json").unlink()  # the build would rewrite this shard
    (shard / "images.npy").unlink()
    (shard / "images.npy").symlink_to(outside / "000000" / "images.npy")
    before = tree(outside)
    with pytest.raises(CacheError, match=r"shards/000002/images.npy: a symbolic link"):
        build_cache(dataset, cache, shard_size=SHARD)
    assert tree(outside) == before


def test_a_cache_path_that_is_a_link_is_refused_for_a_build(
    dataset: Path, tmp_path: Path, outside: Path
) -> None:
    link = tmp_path / "cache"
    link.symlink_to(outside)
    before = tree(outside)
    with pytest.raises(CacheError, match=r"cache: a symbolic link .* give the folder itself"):
        build_cache(dataset, link, shard_size=SHARD)
    assert tree(outside) == before


def test_a_cache_may_be_read_through_a_link(dataset: Path, reference: Path, tmp_path: Path) -> None:
    link = tmp_path / "staged"
    link.symlink_to(reference)  # reading touches nothing: a link to the folder is fine
    assert len(open_cache(link, root=dataset)) == 36
    assert verify_cache(link, root=dataset).ok


def test_a_folder_of_user_files_is_never_touched(
    dataset: Path, tmp_path: Path, outside: Path
) -> None:
    before = tree(outside)
    with pytest.raises(CacheError, match=r"not empty and not a dicontour cache \(it holds 000000"):
        build_cache(dataset, outside)
    assert main(["cache", "build", str(dataset), str(outside), "--workers", "1"]) == 1
    assert tree(outside) == before
    # Names of the scheme alone do not make a cache: a user's manifest.json or has.npy.
    for name, data in (("manifest.json", b'{"mine": 1}'), ("has.npy", b"numpy of mine")):
        folder = tmp_path / f"only-{name}"
        folder.mkdir()
        (folder / name).write_bytes(data)
        with pytest.raises(CacheError, match=rf"not a dicontour cache \(it holds {name}\)"):
            build_cache(dataset, folder)
        assert (folder / name).read_bytes() == data


def test_junk_in_a_cache_is_named_and_left_alone(
    dataset: Path, reference: Path, tmp_path: Path
) -> None:
    cache = copy_of(reference, tmp_path)
    (cache / "shards" / "000001" / "notes.txt").write_text("mine")
    (cache / "shards" / "000099").mkdir()
    (cache / "shards" / "000099" / "data.bin").write_text("mine too")
    refused = r"holds what dicontour did not write \(shards/000001/notes"
    with pytest.raises(CacheError, match=refused):
        build_cache(dataset, cache, shard_size=SHARD)
    assert (cache / "shards" / "000001" / "notes.txt").read_text() == "mine"
    assert (cache / "shards" / "000099" / "data.bin").read_text() == "mine too"
    # A reader is not misled by a foreign file: served as built; verify names it.
    assert len(open_cache(cache, root=dataset)) == 36
    failures = verify_cache(cache, strict=False).failures
    assert "shards/000001/notes.txt: not a file of the cache (a file dicontour did not write)" in (
        failures
    )


def test_a_stale_shard_folder_of_the_scheme_is_removed_file_by_file(
    dataset: Path, reference: Path, tmp_path: Path
) -> None:
    cache = copy_of(reference, tmp_path)
    shutil.copytree(cache / "shards" / "000001", cache / "shards" / "000042")
    (cache / ".manifest.json.tmp-0123abcd").write_bytes(b"left by a kill")
    report = build_cache(dataset, cache, shard_size=SHARD)
    assert not report.up_to_date and report.reused == 8
    assert cache_bytes(cache) == cache_bytes(reference)


def test_removal_never_goes_through_a_link_even_one_made_after_the_audit(
    reference: Path, tmp_path: Path, outside: Path
) -> None:
    from dicontour.cache._layout import remove_file, remove_shard
    from dicontour.storage import location

    cache = copy_of(reference, tmp_path)
    where = location(cache)
    shutil.rmtree(cache / "shards")
    (cache / "shards").symlink_to(outside)  # as if swapped in while a build runs
    before = tree(outside)
    with pytest.raises(CacheError, match=r"shards: not a folder \(a symbolic link\)"):
        remove_file(where, "shards/000000/images.npy")
    with pytest.raises(CacheError, match=r"shards: not a folder"):
        remove_shard(where, "000000")
    with pytest.raises(CacheError, match=r"thesis.tex: not a file of the cache, not removed"):
        remove_file(where, "thesis.tex")
    assert tree(outside) == before
    (cache / "shards").unlink()
    (cache / "shards" / "000000").mkdir(parents=True)
    (cache / "shards" / "000000" / "images.npy").write_bytes(b"ours")
    (cache / "shards" / "000000" / "mine.txt").write_bytes(b"theirs")
    with pytest.raises(CacheError, match=r"000000/mine.txt: not a file of the cache"):
        remove_shard(where, "000000")
    assert (cache / "shards" / "000000" / "mine.txt").read_bytes() == b"theirs"


# ------------------------------------------------------------------ OS errors in words


def test_a_file_or_folder_in_the_way_is_said_in_words(
    dataset: Path, reference: Path, tmp_path: Path, capsys
) -> None:
    file = tmp_path / "cache-file"
    file.write_text("x")
    with pytest.raises(CacheError, match=r"cache-file: exists and is a file, not a folder"):
        build_cache(dataset, file)
    with pytest.raises(CacheError, match=r"cache-file: exists and is a file, not a folder"):
        open_cache(file)
    cache = copy_of(reference, tmp_path)
    (cache / "manifest.json").unlink()
    (cache / "manifest.json").mkdir()
    assert main(["cache", "build", str(dataset), str(cache), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "manifest.json: a folder is in the way where the cache keeps a file" in err
    assert "Errno" not in err and "Traceback" not in err
    assert main(["cache", "verify", str(cache)]) == 1
    err = capsys.readouterr().err
    assert "manifest.json: cannot read (a folder is in the way where a file should be)" in err


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only file system"),
        (errno.EISDIR, "a folder is in the way where a file should be"),
    ],
)
@pytest.mark.slow
def test_a_failed_write_is_said_in_words(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, code: int, words: str
) -> None:
    cache = tmp_path / "cache"

    def failing(source: str, target: str) -> None:
        raise OSError(code, os.strerror(code), target)

    monkeypatch.setattr(os, "replace", failing)
    args = ["cache", "build", str(dataset), str(cache), "--workers", "1", "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Errno" not in err and "Traceback" not in err
    assert f"{cache}/shards/000000/images.npy: {words}" in err
    monkeypatch.undo()
    assert not (cache / LOCK).exists()  # the lock goes with the failed build
    assert not list(cache.rglob("*.tmp-*"))  # and its temporaries


# ------------------------------------------------------------------ rot is never served


@pytest.mark.parametrize("damage", ["flip", "delete-manifest", "truncate"])
@pytest.mark.slow
def test_a_damaged_shard_is_refused_then_rebuilt_byte_identical(
    dataset: Path, reference: Path, tmp_path: Path, capsys, damage: str
) -> None:
    cache = copy_of(reference, tmp_path)
    shard = cache / "shards" / "000003"
    if damage == "flip":
        data = bytearray((shard / "masks.npy").read_bytes())
        data[len(data) // 2] ^= 0x01
        (shard / "masks.npy").write_bytes(bytes(data))
        named = r"shards/000003/masks.npy: sha256 mismatch"
    elif damage == "delete-manifest":
        (shard / "manifest.json").unlink()
        named = r"shards/000003/manifest.json: missing"
    else:
        (shard / "images.npy").write_bytes((shard / "images.npy").read_bytes()[:-7])
        named = r"shards/000003/images.npy: \d+ bytes, \d+ expected"
    rebuild = r"run `dicontour cache build ROOT .*` to rebuild what is damaged"
    with pytest.raises(CacheError, match=rf"damaged \({named}.*{rebuild}"):
        open_cache(cache, root=dataset)
    with pytest.raises(CacheError, match=named):
        dicontour.BatchLoader.from_cache(cache, root=dataset, workers=0)
    if damage != "flip":  # sizes and presence are checked even without checksums
        with pytest.raises(CacheError, match=named):
            open_cache(cache, root=False, checksums=False)
    assert main(["cache", "build", str(dataset), str(cache), "--shard-size", str(SHARD)]) == 0
    out = capsys.readouterr().out
    assert "up to date" not in out and "(1 built, 7 kept)" in out
    assert verify_cache(cache, root=dataset).ok
    assert cache_bytes(cache) == cache_bytes(reference)


@pytest.mark.slow
def test_up_to_date_means_every_checksum_was_checked(
    dataset: Path, reference: Path, tmp_path: Path
) -> None:
    cache = copy_of(reference, tmp_path)
    report = build_cache(dataset, cache, shard_size=SHARD)
    assert report.up_to_date and report.seconds["check"] > 0
    has = cache / "has.npy"
    has.write_bytes(has.read_bytes()[:-1] + bytes([has.read_bytes()[-1] ^ 1]))
    again = build_cache(dataset, cache, shard_size=SHARD)
    assert not again.up_to_date and again.reused == 8
    assert cache_bytes(cache) == cache_bytes(reference)


def test_npy_sizes_are_those_numpy_writes(reference: Path) -> None:
    manifest = json.loads((reference / "shards" / "000007" / "manifest.json").read_text())
    for name, entry in manifest["arrays"].items():
        assert npy_bytes(entry["shape"], entry["dtype"]) == entry["bytes"], name
    assert npy_bytes((0,), "float32") == 128


@given(st.text(alphabet="shard0123456789./-_mnifestjoyprkcl", max_size=40))
@pytest.mark.slow
def test_own_names_are_exactly_the_scheme(name: str) -> None:
    scheme = {"manifest.json", "fingerprint.json", "has.npy", LOCK}
    parts = name.split("/")
    expected = name in scheme or (
        len(parts) == 3
        and parts[0] == "shards"
        and len(parts[1]) == 6
        and parts[1].isdigit()
        and parts[2] in {"images.npy", "masks.npy", "has.npy", "manifest.json"}
    )
    if own_file(name) and not expected:  # only a build's temporaries may add to the scheme
        assert ".tmp-" in parts[-1] and parts[-1].startswith(".")
    else:
        assert own_file(name) == expected


# ------------------------------------------------------------------ which root


def test_a_missing_root_or_another_dataset_is_said_so_not_stale(
    reference: Path, tmp_path: Path, capsys
) -> None:
    missing = tmp_path / "nonexistent"
    with pytest.raises(CacheError, match=r"nonexistent: the dataset root does not exist"):
        open_cache(reference, root=missing)
    report = verify_cache(reference, root=missing, strict=False)
    assert report.fresh is None
    assert report.failures == [f"{missing}: the dataset root does not exist"]
    # An unusable root is exit 2 for every command (README: exit codes).
    assert main(["cache", "verify", str(reference), "--root", str(missing)]) == 2
    captured = capsys.readouterr()
    assert "does not exist" in captured.err and "STALE" not in captured.out + captured.err

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CacheError, match=r"empty: no dataset there"):
        open_cache(reference, root=empty)

    other = tmp_path / "other"
    (other / "dicoms" / "SCD0001").mkdir(parents=True)
    (other / "dicoms" / "SCD0001" / "1.dcm").write_bytes(b"x")
    (other / "contourfiles" / "SC-1").mkdir(parents=True)
    (other / "link.csv").write_text("patient_id,original_id\nSCD0001,SC-1\n")
    another = r"other is not the dataset this cache was built from \(.*data\): 0 of the cache's 6"
    with pytest.raises(CacheError, match=another):
        open_cache(reference, root=other)
    with pytest.raises(CacheError, match=another):
        dicontour.BatchLoader.from_cache(reference, root=other, workers=0)
    report = verify_cache(reference, root=other, strict=False)
    assert report.fresh is None and "is not the dataset" in report.failures[0]


# ------------------------------------------------------------------ one build at a time

_SLOW_CLI = """
import sys, time
import dicontour.cache._store as store
original = store.save_array
def slow(*args, **kwargs):
    time.sleep(0.05)
    return original(*args, **kwargs)
store.save_array = slow
from dicontour.cli import main
sys.exit(main(["cache", "build", sys.argv[1], sys.argv[2], "--shard-size", "5",
               "--workers", "1", "--quiet"]))
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dicontour", "cache", "build", *args, "--shard-size", "5"]


@pytest.mark.slow
def test_a_second_build_during_a_build_is_refused_clearly(
    dataset: Path, reference: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CLI, str(dataset), str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 30
    while not (cache / LOCK).exists():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.01)
    second = subprocess.run(
        _cli(str(dataset), str(cache), "--workers", "1", "--quiet"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert second.returncode == 1
    assert "Traceback" not in second.stderr
    assert f"another build of this cache is running (pid {first.pid} on host " in second.stderr
    assert not (cache / LOCK).exists()
    assert verify_cache(cache, root=dataset).ok
    assert cache_bytes(cache) == cache_bytes(reference)


@pytest.mark.slow
def test_two_builds_started_at_once_end_clean(
    dataset: Path, reference: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runs = [
        subprocess.Popen(
            _cli(str(dataset), str(cache), "--workers", "1", "--quiet"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outcomes = [(run.wait(timeout=90), run.stderr.read()) for run in runs]
    for run in runs:
        run.stdout.close()
        run.stderr.close()
    assert 0 in [code for code, _ in outcomes]
    for code, err in outcomes:
        assert "Traceback" not in err
        assert code == 0 or (code == 1 and "another build of this cache is running" in err)
    assert verify_cache(cache, root=dataset).ok
    assert cache_bytes(cache) == cache_bytes(reference)


def test_a_lock_left_by_a_killed_build_does_not_block(
    dataset: Path, reference: Path, tmp_path: Path
) -> None:
    cache = copy_of(reference, tmp_path)
    (cache / "manifest.json").unlink()
    (cache / LOCK).write_text("pid 999999 on host gone, started 2026-01-01 00:00:00")
    with pytest.raises(CacheError, match=r"unfinished cache .*a build is running, or was killed"):
        open_cache(cache)
    report = build_cache(dataset, cache, shard_size=SHARD)
    assert report.reused == 8
    assert cache_bytes(cache) == cache_bytes(reference)


# ------------------------------------------------------------------ fuzz: any damage

KINDS = ("flip", "truncate", "delete", "folder", "link", "junk", "link-folder")


def _mutate(cache: Path, outside: Path, rng: np.random.Generator) -> tuple[str, Path]:
    """One random damage; returns (what, the path damaged)."""
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    kind = KINDS[rng.integers(len(KINDS))]
    target = files[rng.integers(len(files))]
    if kind == "flip":
        data = bytearray(target.read_bytes())
        data[rng.integers(len(data))] ^= int(rng.integers(1, 256))
        target.write_bytes(bytes(data))
    elif kind == "truncate":
        target.write_bytes(target.read_bytes()[: rng.integers(target.stat().st_size)])
    elif kind == "delete":
        target.unlink()
    elif kind == "folder":
        target.unlink()
        target.mkdir()
        (target / "kept.txt").write_text("someone's")
    elif kind == "link":
        target.unlink()
        pointed = [outside / "thesis.tex", outside / "000000", outside][rng.integers(3)]
        target.symlink_to(pointed)
    elif kind == "junk":
        folders = sorted({cache, cache / "shards", *(p.parent for p in files)})
        target = folders[rng.integers(len(folders))] / f"junk-{rng.integers(1000)}.bin"
        target.write_bytes(b"junk")
    else:  # a folder of the cache replaced by a link to someone's folder
        folders = sorted({cache / "shards", *(p.parent for p in files)} - {cache})
        target = folders[rng.integers(len(folders))]
        shutil.rmtree(target)
        target.symlink_to(outside)
    return kind, target


@pytest.mark.slow
def test_fuzz_damage_is_refused_or_repaired_never_served(
    dataset: Path, reference: Path, served, tmp_path: Path, outside: Path
) -> None:
    before = tree(outside)
    seen = set()
    for seed in range(28):
        rng = np.random.default_rng(seed)
        cache = tmp_path / f"cache-{seed}"
        shutil.copytree(reference, cache)
        kind, target = _mutate(cache, outside, rng)
        what = f"seed {seed}: {kind} {target.relative_to(cache)}"
        seen.add(kind)
        for checksums in (True, False):
            try:
                source = open_cache(cache, root=dataset, checksums=checksums)
            except CacheError:
                continue
            if not checksums and kind == "flip":
                continue  # without checksums, sizes and structure only: as documented
            # Served: it must be the original data, sample for sample.
            for k, (image, i_mask, has_o) in enumerate(served):
                got_image, got_mask = source.read(k, "i")
                assert np.array_equal(got_image, image) and np.array_equal(got_mask, i_mask), what
                assert bool(source.has("o")[k]) == has_o, what
        try:
            report = verify_cache(cache, root=dataset, strict=False)
        except CacheError:  # no complete cache to verify (its manifest is gone or unreadable)
            report = None
        # Only the top-level manifest has no checksum of its own; a flip there that keeps it
        # valid JSON changes nothing served (checked above) and makes the build rewrite it.
        if report is not None and report.ok:
            assert kind == "flip" and target == cache / "manifest.json", what
        try:
            build_cache(dataset, cache, shard_size=SHARD)
        except CacheError as exc:
            # Refused: only for what the cache did not write, and the message names it.
            assert kind in ("folder", "link", "junk", "link-folder"), f"{what}: {exc}"
            assert str(target.relative_to(cache)) in str(exc), f"{what}: {exc}"
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
            build_cache(dataset, cache, shard_size=SHARD)
        assert cache_bytes(cache) == cache_bytes(reference), what
        assert verify_cache(cache, root=dataset).ok, what
        assert tree(outside) == before, what
        shutil.rmtree(cache)
    assert seen == set(KINDS)  # every kind of damage was tried
