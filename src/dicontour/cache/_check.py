"""Integrity checks shared by verify, open and build: a manifest's shape, a shard's bytes.

Two depths:

* *structure* (no file read but the small ones): the top-level manifest is
  well formed and consistent, every file of every shard is a regular file of
  exactly the size its shape implies (computed from the ``.npy`` header
  numpy writes);
* *checksums*: every byte of a shard is read and its sha256 compared with the
  shard manifest, whose own sha256 is compared with the top-level manifest.

Examples
--------
>>> npy_bytes((3, 32, 32), "float32")          # a 128-byte header, then the data
12416
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CacheError
from ..storage import Location
from . import _store
from ._format import ARRAYS, FINGERPRINT, HAS, MANIFEST, SHARDS

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SHARD_NAME = re.compile(r"[0-9]{6}")


def npy_bytes(shape: tuple[int, ...], dtype: Any) -> int:
    """Size of the ``.npy`` file (format 1.0, C order) of an array of this shape and dtype."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header,
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": tuple(int(n) for n in shape),
        },
    )
    return header.tell() + math.prod(shape) * np.dtype(dtype).itemsize


def array_layouts(count: int, shape: tuple[int, int]) -> dict[str, int]:
    """Expected size of each array file of a shard of ``count`` samples of ``shape``."""
    rows, columns = shape
    return {
        "images.npy": npy_bytes((count, rows, columns), np.float32),
        "masks.npy": npy_bytes((count, 2, rows, columns), np.bool_),
        "has.npy": npy_bytes((count, 2), np.bool_),
    }


def _is_count(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _shard_entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "a shard entry is not an object"
    name, shape = entry.get("name"), entry.get("shape")
    if not isinstance(name, str) or _SHARD_NAME.fullmatch(name) is None:
        return f"shard name {name!r} is not 6 digits"
    if not _is_count(entry.get("count"), 1):
        return f"shard {name}: count {entry.get('count')!r}"
    if not (isinstance(shape, list) and len(shape) == 2 and all(_is_count(v, 1) for v in shape)):
        return f"shard {name}: shape {shape!r}"
    if not isinstance(entry.get("manifest_sha256"), str) or not _HEX64.fullmatch(
        entry["manifest_sha256"]
    ):
        return f"shard {name}: no sha256 of its manifest"
    return None


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with a top-level manifest's structure (None: nothing)."""
    shards = manifest.get("shards")
    if not _is_count(manifest.get("samples"), 1):
        return f"samples {manifest.get('samples')!r}"
    if not isinstance(manifest.get("source"), str):
        return "no dataset root recorded"
    dataset = manifest.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("sha256"), str):
        return "no dataset fingerprint"
    for key in ("has", "fingerprint"):
        entry = manifest.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            return f"no checksum of {key}"
    if not isinstance(shards, list) or not shards:
        return "no shard list"
    for entry in shards:
        problem = _shard_entry_problem(entry)
        if problem:
            return problem
    names = [entry["name"] for entry in shards]
    if len(set(names)) != len(names):
        return "a shard is listed twice"
    total = sum(entry["count"] for entry in shards)
    if total != manifest["samples"]:
        return f"shard counts add up to {total}, not {manifest['samples']}"
    return None


@dataclass(frozen=True)
class ShardCheck:
    """One shard to check: what the top-level manifest says about it."""

    cache: Location
    name: str
    manifest_sha256: str
    count: int
    shape: tuple[int, int]
    checksums: bool = True

    @property
    def label(self) -> str:
        """How an engine error names this task."""
        return f"shard {self.name}"

    @classmethod
    def of(cls, cache: Location, entry: dict[str, Any], checksums: bool = True) -> ShardCheck:
        return cls(
            cache,
            entry["name"],
            entry["manifest_sha256"],
            entry["count"],
            tuple(entry["shape"]),
            checksums,
        )


def check_shard(task: ShardCheck, sizes: dict[str, int] | None = None) -> tuple[list[str], int]:
    """(failures, bytes read) for one shard; each failure names its file.

    ``sizes`` (relative path -> size, from an :func:`~._layout.audit`) skips
    the listing; without checksums only sizes and the shard manifest's
    presence are checked.
    """
    where, folder = task.cache, f"{SHARDS}/{task.name}"
    expected = array_layouts(task.count, task.shape)
    if not task.checksums:
        failures: list[str] = []
        for name in (MANIFEST, *ARRAYS):
            relative = f"{folder}/{name}"
            size = sizes.get(relative) if sizes is not None else _size(where, relative)
            if size is None:
                failures.append(f"{relative}: missing")
            elif name in expected and size != expected[name]:
                failures.append(f"{relative}: {size} bytes, {expected[name]} expected")
        return failures, 0
    try:
        raw = where.fs.cat_file(where.path(f"{folder}/{MANIFEST}"))
    except FileNotFoundError:
        return [f"{folder}/{MANIFEST}: missing"], 0
    except OSError as exc:
        return [f"{folder}/{MANIFEST}: cannot read ({_store.words(exc)})"], 0
    if hashlib.sha256(raw).hexdigest() != task.manifest_sha256:
        return [f"{folder}/{MANIFEST}: checksum differs from the top-level manifest"], len(raw)
    # The bytes just checked, not a second read that could see another version.
    manifest = _store.parse_json(where, f"{folder}/{MANIFEST}", raw)
    arrays = manifest.get("arrays") if isinstance(manifest, dict) else None
    if not isinstance(arrays, dict):
        return [f"{folder}/{MANIFEST}: lists no arrays"], len(raw)
    failures = []
    if manifest.get("count") != task.count or manifest.get("shape") != list(task.shape):
        failures.append(
            f"{folder}/{MANIFEST}: {manifest.get('count')} samples of {manifest.get('shape')}, "
            f"the top-level manifest says {task.count} of {list(task.shape)}"
        )
    total = len(raw)
    for name in ARRAYS:
        entry = arrays.get(name)
        if not isinstance(entry, dict):
            failures.append(f"{folder}/{name}: not in the shard manifest")
            continue
        read = _sha256_of(where, f"{folder}/{name}", failures)
        if read is None:
            continue
        digest, size = read
        total += size
        if size != entry.get("bytes"):
            failures.append(f"{folder}/{name}: {size} bytes, {entry.get('bytes')} expected")
        elif digest != entry.get("sha256"):
            failures.append(f"{folder}/{name}: sha256 mismatch (corrupted)")
        elif size != expected[name]:
            failures.append(f"{folder}/{name}: {size} bytes, {expected[name]} expected")
    return failures, total


def check_written(task: ShardCheck) -> list[str]:
    """Failures of a shard a worker reports written, as seen from here, reading only its manifest.

    Every file is present with the size its shape implies, and the shard
    manifest has the sha256 the worker reported: these are the worker's very
    files (the manifest holds the arrays' checksums), not another machine's.
    """
    failures, _ = check_shard(dataclasses.replace(task, checksums=False))
    if failures:
        return failures
    relative = f"{SHARDS}/{task.name}/{MANIFEST}"
    try:
        raw = task.cache.fs.cat_file(task.cache.path(relative))
    except OSError as exc:
        return [f"{relative}: cannot read ({_store.words(exc)})"]
    if hashlib.sha256(raw).hexdigest() != task.manifest_sha256:
        return [f"{relative}: not the manifest the worker wrote (its sha256 differs)"]
    return []


def _sha256_of(where: Location, relative: str, failures: list[str]) -> tuple[str, int] | None:
    """(sha256, bytes) of a file, or None with the failure appended (missing, unreadable)."""
    try:
        return _store.sha256_of(where, relative)
    except FileNotFoundError:
        failures.append(f"{relative}: missing")
    except OSError as exc:
        failures.append(f"{relative}: cannot read ({_store.words(exc)})")
    return None


def _size(where: Location, relative: str) -> int | None:
    try:
        return int(where.fs.size(where.path(relative)))
    except (OSError, TypeError, ValueError):
        return None


def check_small_files(where: Location, manifest: dict[str, Any]) -> tuple[list[str], int]:
    """(failures, bytes read) for ``has.npy`` and ``fingerprint.json`` against the manifest."""
    failures: list[str] = []
    total = 0
    for name, entry in ((HAS, manifest.get("has")), (FINGERPRINT, manifest.get("fingerprint"))):
        read = _sha256_of(where, name, failures)
        if read is None:
            continue
        digest, size = read
        total += size
        if not isinstance(entry, dict) or digest != entry.get("sha256"):
            failures.append(f"{name}: sha256 mismatch (corrupted)")
    return failures, total


def refuse(where: Location, failures: list[str], shown: int = 5) -> None:
    """Raise the "damaged cache" error listing ``failures`` (nothing when empty)."""
    if not failures:
        return
    listed = "; ".join(failures[:shown])
    more = f"; and {len(failures) - shown} more" if len(failures) > shown else ""
    raise CacheError(
        f"{where.redacted()}: damaged ({listed}{more}); run `dicontour cache build ROOT "
        f"{where.redacted()}` to rebuild what is damaged (intact shards are kept)"
    )
