"""Reading and writing a cache's files on a :class:`~dicontour.storage.Location`.

Every write is atomic: a reader (or a build resumed after ``kill -9``) sees a
file either complete or absent, never half written.

* Local folders: the bytes go to a hidden temporary file in the destination
  folder, are flushed to disk, and the file is renamed over the destination.
* Object stores (S3, GCS, Azure, memory): one PUT or one completed multipart
  upload is atomic by the store's own guarantee, so the final key is written
  directly (an object store has no rename; a copy would double the traffic).
  An upload killed half-way leaves an invisible incomplete multipart upload,
  which a bucket lifecycle rule cleans up.
* Other fsspec filesystems (SFTP, ...): a temporary name, then ``fs.mv``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import uuid
from typing import Any, BinaryIO

import numpy as np

from ..errors import CacheError
from ..storage import Location

#: Marker of temporary files, removed by a finished build.
TEMP_MARK = ".tmp-"
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"}
_CHUNK = 1 << 22


def protocols(where: Location) -> set[str]:
    """The protocol names of ``where``'s filesystem."""
    protocol = where.fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def is_object_store(where: Location) -> bool:
    """True where one PUT is atomic and there are no real folders."""
    return bool(protocols(where) & _OBJECT_STORES)


def dumps(document: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, fixed separators, so builds are byte-identical."""
    return (json.dumps(document, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode()


def read_json(where: Location, relative: str) -> Any:
    """Parse the JSON file ``relative``.

    Raises
    ------
    CacheError
        Missing, unreadable, or not JSON; the message names the file.
    """
    try:
        data = where.fs.cat_file(where.path(relative))
    except FileNotFoundError as exc:
        raise CacheError(f"{name(where, relative)}: missing") from exc
    except OSError as exc:
        raise CacheError(f"{name(where, relative)}: cannot read ({words(exc)})") from exc
    return parse_json(where, relative, data)


def parse_json(where: Location, relative: str, data: bytes) -> Any:
    """Parse ``data``, the bytes already read from the JSON file ``relative``.

    Raises
    ------
    CacheError
        Not JSON; the message names the file.
    """
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheError(f"{name(where, relative)}: not valid JSON ({exc})") from exc


def name(where: Location, relative: str) -> str:
    """``relative`` inside ``where``, for messages (no credentials)."""
    return f"{where.redacted().rstrip('/')}/{relative}" if relative else where.redacted()


_WORDS = {
    errno.ENOENT: "does not exist",
    errno.EEXIST: "something is in the way (it already exists)",
    errno.ENOTDIR: "a file is in the way where a folder should be",
    errno.EISDIR: "a folder is in the way where a file should be",
    errno.ENOTEMPTY: "the folder is not empty",
    errno.ELOOP: "a symbolic link is in the way",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error (a failing disk or network mount)",
}


def words(exc: OSError) -> str:
    """What an ``OSError`` means, in words (``FileExistsError: [Errno 17]`` is not a reason).

    Examples
    --------
    >>> words(NotADirectoryError(20, "Not a directory"))
    'a file is in the way where a folder should be'
    """
    if exc.errno in _WORDS:
        return _WORDS[exc.errno]
    return exc.strerror or str(exc) or type(exc).__name__


def cache_error(where: Location, exc: OSError) -> CacheError:
    """A :class:`CacheError` for ``exc`` met in the cache ``where``, naming the file in words."""
    path = exc.filename if isinstance(exc.filename, str) and exc.filename else where.redacted()
    return CacheError(f"{path}: {words(exc)}")


def exists(where: Location, relative: str) -> bool:
    path = where.path(relative)
    if not where.is_local:
        where.fs.invalidate_cache(path)  # another process may have written it since a listing
    return bool(where.fs.exists(path))


def _temporary(path: str) -> str:
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}{TEMP_MARK}{uuid.uuid4().hex}"


def _ensure_folder(where: Location, relative: str) -> None:
    folder = where.path(relative).rpartition("/")[0]
    if where.is_local:
        _make_folders(where, relative)
    elif not is_object_store(where):
        where.fs.makedirs(folder, exist_ok=True)


def _make_folders(where: Location, relative: str) -> None:
    # Level by level with lstat: os.makedirs would follow a link (shards -> /elsewhere)
    # and write the shards there.
    parts = relative.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        path = where.path("/".join(parts[:depth]))
        try:
            os.mkdir(path)
            continue
        except FileExistsError:
            pass
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise CacheError(
                f"{path}: something else than a folder (a file or a link) is in the way "
                "where the cache keeps a folder"
            )


def write_bytes(where: Location, relative: str, data: bytes) -> None:
    """Write ``data`` to ``relative`` atomically."""
    _ensure_folder(where, relative)
    final = where.path(relative)
    if is_object_store(where):
        where.fs.pipe_file(final, data)
        return
    if where.is_local:
        temporary = _temporary(final)
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return
    temporary = _temporary(final)
    where.fs.pipe_file(temporary, data)
    where.fs.mv(temporary, final)


class _HashingWriter:
    """A write-only file that also feeds a sha256 (numpy writes ``.npy`` through it)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.size += view.nbytes
        return self.handle.write(view)


def save_array(where: Location, relative: str, array: np.ndarray, scratch: str) -> dict[str, Any]:
    """Write ``array`` as ``.npy`` to ``relative`` atomically; return its checksum entry.

    ``scratch`` is a local folder for the staging file of a remote write.

    Returns
    -------
    dict
        ``{"sha256", "bytes", "dtype", "shape"}`` of the written file.
    """
    _ensure_folder(where, relative)
    final = where.path(relative)
    staging = _temporary(final) if where.is_local else os.path.join(scratch, uuid.uuid4().hex)
    try:
        with open(staging, "wb") as handle:
            writer = _HashingWriter(handle)
            # version pinned so the header, hence the checksum, never depends on numpy's choice
            np.lib.format.write_array(writer, array, version=(1, 0), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        if where.is_local:
            os.replace(staging, final)
        elif is_object_store(where):
            where.fs.put_file(staging, final)
        else:
            temporary = _temporary(final)
            where.fs.put_file(staging, temporary)
            where.fs.mv(temporary, final)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return {
        "sha256": writer.digest.hexdigest(),
        "bytes": writer.size,
        "dtype": array.dtype.str,
        "shape": list(array.shape),
    }


def sha256_of(where: Location, relative: str) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file, read in chunks.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    """
    digest = hashlib.sha256()
    size = 0
    opener = open if where.is_local else where.fs.open
    with opener(where.path(relative), "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
