"""Open a local path only when it is a regular file: the one place that decides.

``open("fifo")`` blocks until a writer appears, ``/dev/zero`` never ends and a
socket cannot be opened at all.  :func:`open_regular` opens without blocking
(``O_NONBLOCK``), checks what it opened with ``fstat`` on the descriptor itself
(so nothing can be swapped in between) and hands back an ordinary binary file
only for a regular file.  :mod:`dicontour.dicom`, :mod:`dicontour.contour` and
:class:`dicontour.storage.Location` all open local files through it.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Callable, Sequence
from typing import BinaryIO, cast

from .errors import DicontourError, RefusedFileError

_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once instead of waiting for a writer
    | getattr(os, "O_NOCTTY", 0)  # a terminal device never becomes our controlling tty
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)  # Windows
)


#: ``st_mode`` tests and their words, first match wins (see :func:`mode_in_words`).
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def mode_in_words(
    mode: int, kinds: Sequence[tuple[Callable[[int], bool], str]], otherwise: str
) -> str:
    """The words of the first of ``kinds`` whose test accepts ``mode``, else ``otherwise``."""
    return next((words for test, words in kinds if test(mode)), otherwise)


def kind_of(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words (``"a FIFO"``, ``"a folder"``...)."""
    return mode_in_words(mode, _KINDS, "not a regular file")


def open_regular(path: str | os.PathLike[str], *, name: str | None = None) -> BinaryIO:
    """Open ``path`` for binary reading if, and only if, it is a regular file.

    Symbolic links are followed (the dataset-level policy on links lives in
    :class:`dicontour.storage.Location`).

    Parameters
    ----------
    path : str or path
        The file.
    name : str, optional
        The name used in errors (defaults to ``path``).

    Returns
    -------
    binary file object
        Positioned at the start; blocking reads, like ``open(path, "rb")``.

    Raises
    ------
    RefusedFileError
        A FIFO, socket, device or folder (``not-a-regular-file``), or a loop of
        symbolic links (``broken-link``).  Nothing has been read.
    FileNotFoundError, PermissionError, OSError
        As ``open`` raises them.

    Examples
    --------
    >>> import os, tempfile
    >>> fifo = os.path.join(tempfile.mkdtemp(), "pipe")
    >>> os.mkfifo(fifo)
    >>> open_regular(fifo)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dicontour.errors.RefusedFileError: .../pipe: a FIFO (named pipe), not a regular file; not read
    """
    where = name or os.fspath(path)
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RefusedFileError(
                where, "a loop of symbolic links; not read", code="broken-link"
            ) from exc
        if exc.errno in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):  # sockets, some devices
            raise RefusedFileError(where, "not a regular file; not read") from exc
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise RefusedFileError(where, f"{kind_of(mode)}, not a regular file; not read")
        if _FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)  # no effect on a regular file; keeps plain semantics
        handle = os.fdopen(fd, "rb")
        # like open(path): readers print and use the name (fdopen's raw stream is a FileIO)
        cast(io.FileIO, handle.raw).name = os.fspath(path)
        return handle
    except BaseException:
        os.close(fd)
        raise


def open_for(
    path: str | os.PathLike[str], where: str, error: Callable[..., DicontourError], missing: str
) -> BinaryIO:
    """:func:`open_regular`, each failure raised as ``error(where, reason, code=...)``.

    ``missing`` is the problem code of a file that does not exist; a refused
    file keeps its own code, any other ``OSError`` gets the error's default.
    """
    try:
        return open_regular(path, name=where)
    except RefusedFileError as exc:
        raise error(where, exc.reason, code=exc.code) from exc
    except FileNotFoundError as exc:
        raise error(where, "file does not exist", code=missing) from exc
    except OSError as exc:
        raise error(where, f"cannot read file ({exc})") from exc
