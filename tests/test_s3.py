"""Object storage: a real S3-compatible server (moto) on loopback, credentials from the environment.

The dataset is uploaded to one bucket, scanned there, cached into another
bucket (in this process, on a process pool and on a Dask cluster), verified,
and trained from.  URLs stay plain ``s3://bucket/prefix``: the endpoint and
the (fake) credentials come from the environment, and the secret must never
show in output, logs, errors or files.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dicontour
from dicontour.cache import build_cache, open_cache, verify_cache
from dicontour.cli import main
from dicontour.engine import DaskEngine, LocalEngine
from dicontour.errors import CacheError, LayoutError
from dicontour.loader import BatchLoader
from dicontour.phantom import write_phantom

moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]  # S3 (a moto server)

SECRET = "sEcReT-7f3a9c-never-print-me"
KEY_ID = "AKIDDICONTOURTEST"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 server on 127.0.0.1 with a dataset uploaded to s3://data/phantom.

    Yields the environment the server needs (endpoint and fake credentials),
    which is also set in ``os.environ`` for the module's duration.
    """
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        fs = s3fs.S3FileSystem()
        for bucket in ("data", "caches"):
            fs.mkdir(bucket)
        local = tmp_path_factory.mktemp("s3") / "phantom"
        write_phantom(local, patients=3, slices=8, shape=(32, 32), labelled_every=1, faults=True)
        fs.put(f"{local}/", "data/phantom/", recursive=True)
        yield env
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture(scope="module")
def local_copy(s3, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same dataset downloaded to a folder (so local and S3 results can be compared)."""
    target = tmp_path_factory.mktemp("download") / "phantom"
    s3fs.S3FileSystem().get("data/phantom/", f"{target}/", recursive=True)
    return target


@pytest.fixture(scope="module")
def s3_cache(s3) -> str:
    url = "s3://caches/serial"
    build_cache("s3://data/phantom", url, shard_size=5)
    return url


def test_scan_of_s3_equals_the_scan_of_the_same_files_on_disk(s3, local_copy: Path) -> None:
    remote = dicontour.scan("s3://data/phantom")
    here = dicontour.scan(local_copy)
    assert len(remote) == len(here) > 0
    assert remote.to_dict()["samples"] == here.to_dict()["samples"]
    assert [p.code for p in remote.problems] == [p.code for p in here.problems]
    np.testing.assert_array_equal(remote.load(3).image, here.load(3).image)


def test_cache_built_in_a_bucket_reads_like_a_local_one(
    s3_cache: str, local_copy: Path, tmp_path: Path
) -> None:
    build_cache(local_copy, tmp_path / "cache", shard_size=5)
    here = open_cache(tmp_path / "cache")
    remote = open_cache(s3_cache, root="s3://data/phantom")
    assert len(remote) == len(here) and remote.has("o").tolist() == here.has("o").tolist()
    for k in range(len(here)):
        for target in [t for t in ("i", "o", "both") if here.has(t)[k]]:
            a, b = remote.read(k, target), here.read(k, target)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    # Arrays are the same bytes wherever they were written.
    fs = s3fs.S3FileSystem()
    for name in ("images.npy", "masks.npy", "has.npy"):
        local_bytes = (tmp_path / "cache" / "shards" / "000002" / name).read_bytes()
        assert fs.cat_file(f"caches/serial/shards/000002/{name}") == local_bytes
    assert verify_cache(s3_cache, root="s3://data/phantom").ok


def test_build_on_a_process_pool_matches_the_serial_build(s3, s3_cache: str) -> None:
    # The workers start with this environment and rebuild s3fs from the URL themselves.
    with LocalEngine(workers=2) as engine:
        report = build_cache("s3://data/phantom", "s3://caches/pool", shard_size=5, engine=engine)
    assert report.built == report.shards > 1
    fs = s3fs.S3FileSystem()
    serial = sorted(fs.find("caches/serial"))
    pooled = sorted(fs.find("caches/pool"))
    assert [p.split("/", 2)[2] for p in serial] == [p.split("/", 2)[2] for p in pooled]
    for a, b in zip(serial, pooled, strict=True):
        assert fs.cat_file(a) == fs.cat_file(b)


def test_build_on_dask_workers_with_their_own_credentials(s3, s3_cache: str) -> None:
    with DaskEngine(workers=1) as engine:
        report = build_cache("s3://data/phantom", "s3://caches/dask", shard_size=5, engine=engine)
    assert report.built == report.shards
    fs = s3fs.S3FileSystem()
    assert fs.cat_file("caches/dask/manifest.json") == fs.cat_file("caches/serial/manifest.json")


def test_interrupted_remote_build_resumes(s3, s3_cache: str) -> None:
    fs = s3fs.S3FileSystem()
    fs.copy("caches/serial/shards", "caches/resumed/shards", recursive=True)
    fs.rm("caches/resumed/shards/000001/manifest.json")  # that shard never got sealed
    fs.pipe_file("caches/resumed/shards/000003/images.npy", b"torn")  # a damaged one
    report = build_cache("s3://data/phantom", "s3://caches/resumed", shard_size=5)
    assert report.built == 2 and report.reused == report.shards - 2
    assert fs.cat_file("caches/resumed/manifest.json") == fs.cat_file("caches/serial/manifest.json")


def test_a_flipped_byte_in_the_bucket_is_refused_then_rebuilt(s3, s3_cache: str) -> None:
    fs = s3fs.S3FileSystem()
    fs.copy("caches/serial", "caches/flipped", recursive=True)
    key = "caches/flipped/shards/000002/masks.npy"
    data = bytearray(fs.cat_file(key))
    data[-1] ^= 1
    fs.pipe_file(key, bytes(data))
    url = "s3://caches/flipped"
    with pytest.raises(CacheError, match=r"damaged \(shards/000002/masks.npy: sha256 mismatch"):
        open_cache(url, root="s3://data/phantom")
    report = build_cache("s3://data/phantom", url, shard_size=5)
    assert not report.up_to_date and report.built == 1
    assert fs.cat_file(key) == fs.cat_file("caches/serial/shards/000002/masks.npy")
    assert not fs.exists("caches/flipped/.dicontour-build.lock")


def test_a_remote_build_lock_names_its_holder(s3, s3_cache: str) -> None:
    fs = s3fs.S3FileSystem()
    fs.copy("caches/serial", "caches/locked", recursive=True)
    lock = "caches/locked/.dicontour-build.lock"
    fs.pipe_file(lock, b"pid 4242 on host elsewhere, started 2026-01-01 00:00:00")
    with pytest.raises(
        CacheError,
        match=r"another build of this cache is running \(pid 4242 on host elsewhere.*"
        r"if no build is running .* delete s3://caches/locked/.dicontour-build.lock",
    ):
        build_cache("s3://data/phantom", "s3://caches/locked", shard_size=5)
    # A holder on this host whose process is gone: a killed build, taken over.
    fs.pipe_file(lock, f"pid 999999 on host {socket.gethostname()}, started x".encode())
    assert build_cache("s3://data/phantom", "s3://caches/locked", shard_size=5).up_to_date
    assert not fs.exists(lock)


def test_train_from_the_bucket_with_worker_processes(s3, s3_cache: str) -> None:
    source = open_cache(s3_cache)
    with_i = np.flatnonzero(source.has("i"))
    expected = sorted(source.read(int(k), "i")[0].tobytes() for k in with_i)
    with BatchLoader.from_cache(
        s3_cache, batch_size=4, root="s3://data/phantom", workers=2, seed=1
    ) as loader:
        seen = sorted(image.tobytes() for images, _ in loader for image in images)
    assert seen == expected


def test_a_changed_object_makes_the_bucket_cache_stale(s3, s3_cache: str) -> None:
    fs = s3fs.S3FileSystem()
    fs.copy("data/phantom", "data/changed", recursive=True)
    url = "s3://caches/changing"
    build_cache("s3://data/changed", url, shard_size=5)
    fresh = len(open_cache(url, root="s3://data/changed"))
    path = "data/changed/contourfiles/PH-2/o-contours"
    contour = sorted(fs.ls(path))[0]
    fs.pipe_file(contour, fs.cat_file(contour) + b"\n")  # new content, new ETag
    with pytest.raises(CacheError, match=r"stale: .*changed: contourfiles/PH-2"):
        open_cache(url, root="s3://data/changed")
    # Without root=, against the root the build recorded in the manifest.
    with pytest.raises(CacheError, match=r"stale: the dataset s3://data/changed changed"):
        open_cache(url)
    assert len(open_cache(url, root=False)) == fresh  # the opt-out serves it as built


def test_the_secret_never_shows(s3, s3_cache: str, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    texts = []
    assert main(["scan", "s3://data/phantom", "--json"]) == 0
    assert (
        main(["cache", "build", "s3://data/phantom", "s3://caches/cli", "--workers", "1", "--json"])
        == 0
    )
    assert (
        main(["cache", "verify", "s3://caches/cli", "--root", "s3://data/phantom", "--json"]) == 0
    )
    assert main(["scan", "s3://no-such-bucket/x"]) == 2
    assert main(["cache", "verify", "s3://caches/none"]) == 1
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    assert "no cache here" in captured.err
    errors = []
    for call in (
        lambda: dicontour.scan("s3://no-such-bucket/x"),
        lambda: open_cache("s3://caches/none"),
        lambda: build_cache("s3://data/phantom", "s3://data/phantom"),
    ):
        with pytest.raises((CacheError, LayoutError)) as caught:
            call()
        errors.append(f"{caught.value!r} {caught.value} {caught.value.__cause__!r}")
    assert "not a dicontour cache" in errors[2]
    fs = s3fs.S3FileSystem()
    texts += [fs.cat_file(path).decode("latin-1") for path in fs.find("caches/cli")]
    assert all(SECRET not in text for text in texts + errors)


def test_cli_in_a_fresh_process_with_fsspec_config_from_the_environment(s3) -> None:
    # FSSPEC_S3_ENDPOINT_URL is fsspec's own configuration (read when fsspec is
    # imported), an alternative to AWS_ENDPOINT_URL_S3; credentials stay in the environment.
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL_S3"}
    env["FSSPEC_S3_ENDPOINT_URL"] = s3["AWS_ENDPOINT_URL_S3"]
    done = subprocess.run(
        [sys.executable, "-m", "dicontour", "cache", "verify", "s3://caches/serial", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    assert SECRET not in done.stdout + done.stderr


def _read_in_child(source, k: int, queue) -> None:
    try:
        queue.put(source.read(k, "i")[0].tobytes())
    except BaseException as exc:  # report, never hang the parent
        queue.put(repr(exc))


def test_a_forked_child_rebuilds_its_filesystem(s3, s3_cache: str) -> None:
    import multiprocessing

    source = open_cache(s3_cache)
    k = int(np.flatnonzero(source.has("i"))[0])
    expected = source.read(k, "i")[0].tobytes()  # the parent's s3fs and event loop are live
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(source, k, queue))
    child.start()
    try:
        assert queue.get(timeout=30) == expected
    finally:
        child.join(timeout=30)
    assert child.exitcode == 0
