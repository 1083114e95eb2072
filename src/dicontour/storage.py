"""Where a dataset lives: a local folder or an fsspec URL (``s3://``, ``gs://``, ``file://``).

Paths inside a dataset are always relative, with forward slashes; this module
joins them to the root, lists folders and opens files.  It is the one place
that decides what of a dataset may be read:

* only regular files are opened (a FIFO would block forever, a device never
  ends); local files through :func:`dicontour._files.open_regular`;
* a symbolic link is followed only when it resolves inside the root;
* everything else is *refused*: :meth:`Location.entries` lists it with a
  problem code (``not-a-regular-file``, ``link-outside-root``,
  ``broken-link``), :meth:`Location.open` raises
  :class:`~dicontour.errors.RefusedFileError`, and a folder that cannot be
  listed is ``unreadable-folder``.

Object stores have no links, FIFOs or devices: there, folders and files are
what the store says.  Credentials for object stores come from fsspec's usual
sources (environment, config files), never from dicontour.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO, Literal

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ._files import kind_of, open_regular
from .errors import LayoutError, RefusedFileError

#: Linux's view of this process's open files: readlink gives an fd's real path.
_PROC_FD = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else ""


@dataclass(frozen=True)
class Entry:
    """One name in a listed folder, classified before anything is opened.

    Attributes
    ----------
    name : str
        The name inside the folder.
    kind : {"folder", "file", "refused"}
        A folder or regular file that may be read (links resolved inside the
        root count as what they point to), or something that is never read.
    code, reason : str or None
        For a refused entry: its problem code and why.
    """

    name: str
    kind: Literal["folder", "file", "refused"]
    code: str | None = None
    reason: str | None = None


#: The dicontour extra that installs the fsspec implementation of a URL scheme.
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


@dataclass(frozen=True)
class Location:
    """A dataset root: ``url`` as given, the fsspec ``fs`` and its ``base`` path.

    Pickles to its URL, so worker processes re-open the filesystem themselves.
    """

    url: str

    @cached_property
    def _resolved(self) -> tuple[fsspec.AbstractFileSystem, str]:
        try:
            fs, base = fsspec.core.url_to_fs(self.url)
        except ImportError as exc:  # fsspec knows the scheme; its package is not installed
            extra = _EXTRAS.get(self.url.partition("://")[0])
            hint = f"pip install 'dicontour[{extra}]'" if extra else "install the package it names"
            raise LayoutError(f"{self.redacted()}: {exc}; {hint}") from exc
        except ValueError as exc:
            if "Protocol not known" not in str(exc):
                raise
            scheme = self.url.partition("://")[0]
            raise LayoutError(
                f"{self.redacted()}: unknown storage scheme {scheme!r}; use a local folder or "
                "an fsspec URL such as s3://bucket/data or gs://bucket/data"
            ) from exc
        return fs, base.rstrip("/") or "/"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._resolved[0]

    @property
    def base(self) -> str:
        return self._resolved[1]

    @property
    def is_local(self) -> bool:
        """True for a local folder, where files are opened with plain ``open``."""
        return isinstance(self.fs, LocalFileSystem)

    def path(self, relative: str) -> str:
        """The full path (local) or store key (remote) of ``relative``."""
        return f"{self.base}/{relative}" if relative else self.base

    @cached_property
    def _real_base(self) -> str:
        return os.path.realpath(self.base)

    def _inside(self, real: str) -> bool:
        base = self._real_base
        return real == base or real.startswith(base.rstrip(os.sep) + os.sep)

    def _check_inside(self, relative: str) -> None:
        """Raise ``link-outside-root`` when ``relative`` resolves outside the root."""
        if not self._inside(os.path.realpath(self.path(relative))):
            raise RefusedFileError(
                relative,
                "a symbolic link (or a path through one) leading outside the dataset root; "
                "not followed",
                code="link-outside-root",
            )

    def open(self, relative: str) -> BinaryIO:
        """Open the regular file ``relative`` for binary reading.

        Raises
        ------
        RefusedFileError
            (local roots) ``relative`` resolves outside the root, is a loop of
            links, or is not a regular file.  Nothing has been read.
        FileNotFoundError, OSError
            As the filesystem raises them.
        """
        if not self.is_local:
            return self.fs.open(self.path(relative), "rb")
        if not _PROC_FD:
            self._check_inside(relative)
            return open_regular(self.path(relative), name=relative)
        handle = open_regular(self.path(relative), name=relative)
        try:
            # Where the opened descriptor really is: one readlink instead of a realpath
            # (a stat per path component), and nothing can be swapped in after it.
            real = os.readlink(f"{_PROC_FD}/{handle.fileno()}")
        except OSError:
            real = os.path.realpath(self.path(relative))
        if not self._inside(real.removesuffix(" (deleted)")):
            handle.close()
            self._check_inside(relative)  # raises, with the reason
            raise RefusedFileError(relative, "outside the dataset root", code="link-outside-root")
        return handle

    def entries(self, relative: str) -> list[Entry]:
        """The entries of the folder ``relative``, sorted by name, each classified.

        Nothing is opened: local entries are classified from ``lstat`` and, for
        links, from where they resolve (see the module docstring).

        Returns
        -------
        list of Entry
            Empty when ``relative`` does not exist or is not a folder.

        Raises
        ------
        RefusedFileError
            The folder itself cannot be listed (``unreadable-folder``: no
            permission, an I/O error) or resolves outside the root
            (``link-outside-root``).
        """
        if not self.is_local:
            return self._remote_entries(relative)
        folder = self.path(relative)
        if relative:
            # The folder gets the verdict its parent's listing gave it, so a refused
            # folder is refused with the same code and reason wherever it is asked for.
            if not os.path.lexists(folder):
                return []
            verdict = self._classify(relative.rsplit("/", 1)[-1], folder)
            if verdict.kind == "refused":
                raise RefusedFileError(
                    relative, verdict.reason or "not read", code=verdict.code or "broken-link"
                )
            if verdict.kind == "file":
                return []
            self._check_inside(relative)  # a link further up the path
        try:
            # os.scandir answers from one directory read; fsspec's ls stats every entry.
            with os.scandir(folder) as listing:
                found = sorted(listing, key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise RefusedFileError(
                relative or ".",
                f"cannot list folder ({exc.strerror or type(exc).__name__}); its contents are "
                "not used",
                code="unreadable-folder",
            ) from exc
        return [self._classify(entry.name, entry.path, entry) for entry in found]

    def _classify(self, name: str, path: str, entry: os.DirEntry | None = None) -> Entry:
        # A plain folder or file is told by the directory read itself (d_type), no stat.
        if entry is not None and not entry.is_symlink():
            if entry.is_dir(follow_symlinks=False):
                return Entry(name, "folder")
            if entry.is_file(follow_symlinks=False):
                return Entry(name, "file")
        try:
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                real = os.path.realpath(path, strict=True)
                if not self._inside(real):
                    return Entry(
                        name,
                        "refused",
                        "link-outside-root",
                        "a symbolic link leading outside the dataset root; not followed",
                    )
                mode = os.stat(real).st_mode
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                why = "a loop of symbolic links"
            elif isinstance(exc, FileNotFoundError):
                why = "a symbolic link to nothing (dangling)"
            else:
                why = f"cannot be examined ({exc.strerror or type(exc).__name__})"
            return Entry(name, "refused", "broken-link", f"{why}; not read")
        if stat.S_ISDIR(mode):
            return Entry(name, "folder")
        if stat.S_ISREG(mode):
            return Entry(name, "file")
        return Entry(
            name, "refused", "not-a-regular-file", f"{kind_of(mode)}, not a regular file; not read"
        )

    def _remote_entries(self, relative: str) -> list[Entry]:
        try:
            listed = self.fs.ls(self.path(relative), detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except PermissionError as exc:
            raise RefusedFileError(
                relative or ".",
                f"cannot list folder ({exc}); its contents are not used",
                code="unreadable-folder",
            ) from exc
        found = []
        for info in listed:
            name = info["name"].rstrip("/").rsplit("/", 1)[-1]
            kind = info.get("type")
            if kind == "directory":
                found.append(Entry(name, "folder"))
            elif kind == "file":
                found.append(Entry(name, "file"))
            else:
                found.append(
                    Entry(name, "refused", "not-a-regular-file", f"a store entry of type {kind!r}")
                )
        return sorted(found, key=lambda entry: entry.name)

    def size(self, relative: str) -> int:
        """The size in bytes of the file ``relative`` (links followed like :meth:`open`)."""
        if self.is_local:
            self._check_inside(relative)
            return os.stat(self.path(relative)).st_size
        return int(self.fs.size(self.path(relative)))

    def redacted(self) -> str:
        """The URL without any user:password part, safe for logs and errors."""
        scheme, sep, rest = self.url.partition("://")
        if sep and "@" in rest.split("/", 1)[0]:
            rest = rest.split("@", 1)[1]
        return f"{scheme}{sep}{rest}"

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (Location, (self.url,))


def location(root: str | os.PathLike[str] | Location) -> Location:
    """Make a :class:`Location` from a local path or an fsspec URL.

    Raises
    ------
    LayoutError
        When the filesystem is first used (``.fs``): the scheme is unknown, or
        the package that implements it (``gcsfs`` for ``gs://``) is missing.
    LayoutError
        The URL carries credentials (``s3://key:secret@bucket``): they would
        end up in shell history, process lists and logs.  Use the store's usual
        environment variables or config files instead.
    """
    if isinstance(root, Location):
        return root
    text = os.fspath(root)
    if "://" not in text:
        text = os.path.abspath(text)
    elif "@" in text.split("://", 1)[1].split("/", 1)[0]:
        scheme = text.split("://", 1)[0]
        raise LayoutError(
            f"{scheme}://...: credentials in URLs are not accepted; set them in the "
            "environment or the store's config file (for S3: AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials)"
        )
    return Location(text)
