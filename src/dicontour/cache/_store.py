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

How each kind of store does it is :class:`~dicontour.storage.Location`'s
(:meth:`~dicontour.storage.Location.write_atomic`,
:meth:`~dicontour.storage.Location.staged`); this module adds the cache's
JSON, checksums and error words.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
from typing import Any, BinaryIO

import numpy as np

from ..errors import CacheError
from ..storage import Location

_CHUNK = 1 << 22


def is_object_store(where: Location) -> bool:
    """True where one PUT is atomic and there are no real folders."""
    return where.is_object_store


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
    """Whether ``relative`` exists now (see :meth:`Location.exists`)."""
    return where.exists(relative)


def _ensure_folder(where: Location, relative: str) -> None:
    try:
        where.make_parents(relative)
    except NotADirectoryError as exc:
        raise CacheError(
            f"{exc.filename}: something else than a folder (a file or a link) is in the way "
            "where the cache keeps a folder"
        ) from None


def write_bytes(where: Location, relative: str, data: bytes) -> None:
    """Write ``data`` to ``relative`` atomically."""
    _ensure_folder(where, relative)
    where.write_atomic(relative, data)


class _HashingWriter:
    """A write-only file that also feeds a sha256 (numpy writes ``.npy`` through it)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.size += view.nbytes
        return self.handle.write(view)


def _plain(array: np.ndarray) -> bool:
    """Whether ``array``'s buffer is exactly the data ``.npy`` holds (C order, native, plain)."""
    return bool(
        array.flags.c_contiguous
        and array.dtype.isnative
        and not array.dtype.hasobject
        and array.dtype.names is None
        and array.dtype.subdtype is None
        and array.size > 0
        and array.ndim > 0
    )


def save_array(where: Location, relative: str, array: np.ndarray) -> dict[str, Any]:
    """Write ``array`` as ``.npy`` to ``relative`` atomically; return its checksum entry.

    Returns
    -------
    dict
        ``{"sha256", "bytes", "dtype", "shape"}`` of the written file.
    """
    _ensure_folder(where, relative)
    with where.staged(relative) as handle:
        writer = _HashingWriter(handle)
        if _plain(array):
            # The bytes np.lib.format.write_array writes, without its copies: it hands a
            # file-like object the data in 16 MiB pieces, each copied by tobytes().  Here
            # the array's own buffer is hashed and written once.
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, np.lib.format.header_data_from_array_1_0(array)
            )
            writer.write(header.getvalue())
            writer.write(array.data.cast("B"))
        else:
            # version pinned so the header, hence the checksum, never depends on numpy's choice
            np.lib.format.write_array(writer, array, version=(1, 0), allow_pickle=False)
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
    with where.open_any(relative) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
