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
what the store says.

:class:`Location` is the one place where local and remote behaviour differ;
other modules call its methods and never ask which kind of store they have:
listing and walking (:meth:`~Location.entries`, :meth:`~Location.walk`,
:meth:`~Location.file_versions`), reading (:meth:`~Location.open`,
:meth:`~Location.open_npy`: memory-mapped locally, range requests remotely),
atomic writes (:meth:`~Location.write_atomic`, :meth:`~Location.staged`: a
renamed temporary file locally, one PUT on an object store), removal that
never follows a link (:meth:`~Location.remove`,
:meth:`~Location.remove_folder`) and a lock (:meth:`~Location.hold`: ``flock``
locally, a marker file elsewhere).  Credentials for object stores come from fsspec's usual
sources (environment, config files), never from dicontour.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, BinaryIO, Literal

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from ._files import kind_of, mode_in_words, open_regular
from .errors import DicontourError, LayoutError, RefusedFileError

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


try:
    import fcntl
except ImportError:  # Windows: Location.hold uses a marker file
    fcntl = None  # type: ignore[assignment]


class LockHeld(Exception):
    """A lock held by someone else (:meth:`Location.hold`).

    Attributes
    ----------
    holder : str
        What the holder wrote into the lock ("" when unknown).
    released_on_exit : bool
        True for a kernel lock, which dies with its process; False for a marker
        file, which stays until deleted (a killed holder leaves it behind).
    """

    def __init__(self, holder: str, *, released_on_exit: bool) -> None:
        super().__init__(holder)
        self.holder, self.released_on_exit = holder, released_on_exit


class LockUnavailable(OSError):
    """The lock file cannot be created (permissions, a link in its place)."""


_NOFOLLOW_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


_MODE_WORDS = (
    (stat.S_ISDIR, "folder"),
    (stat.S_ISREG, "file"),
    (stat.S_ISLNK, "symbolic link"),
)


def mode_words(mode: int) -> str:
    """What an ``st_mode`` is, in words: folder, file, symbolic link or special file."""
    return mode_in_words(mode, _MODE_WORDS, "special file (device, pipe or socket)")


@dataclass(frozen=True)
class Walked:
    """One entry of :meth:`Location.walk`: its path, ``lstat`` mode and size, or the error met."""

    relative: str
    mode: int
    size: int
    error: OSError | None = None


class NotRemoved(Exception):
    """:meth:`Location.remove` refused to delete ``path``.

    Attributes
    ----------
    path : str
        The full path of what is in the way.
    what : str
        What it is (:func:`mode_words`), or ``"foreign"`` for a name the caller does not own.
    through : bool
        True when ``path`` is a folder on the way (a link or a file there), not the target.
    """

    def __init__(self, path: str, what: str, *, through: bool = False) -> None:
        super().__init__(f"{path}: {what}")
        self.path, self.what, self.through = path, what, through


#: Stores where one PUT is atomic and folders do not exist.
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"}
#: Marker of temporary files (a cache's finished build removes any left over).
TEMP_MARK = ".tmp-"


def _temporary(path: str) -> str:
    """A hidden temporary name beside ``path``."""
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}{TEMP_MARK}{uuid.uuid4().hex}"


# Version tags in order of preference: content hashes first, then times.
_TAG_KEYS = (
    "ETag",
    "etag",
    "md5Hash",
    "md5",
    "crc32c",
    "generation",
    "mtime",
    "LastModified",
    "last_modified",
    "updated",
    "created",
)


def _tag(info: dict[str, Any]) -> str:
    for key in _TAG_KEYS:
        value = info.get(key)
        if value not in (None, ""):
            return str(value).strip('"')
    return "-"


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

    @cached_property
    def _real_prefix(self) -> str:
        return self._real_base.rstrip(os.sep) + os.sep

    def _inside(self, real: str) -> bool:
        return real == self._real_base or real.startswith(self._real_prefix)

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

    # -- questions whose answer depends on the kind of store ---------------------------

    @property
    def is_object_store(self) -> bool:
        """True where one PUT is atomic and there are no real folders (S3, GCS, Azure, memory)."""
        protocol = self.fs.protocol
        return bool(({protocol} if isinstance(protocol, str) else set(protocol)) & _OBJECT_STORES)

    def exists(self, relative: str) -> bool:
        """Whether ``relative`` exists now (a remote listing cache is refreshed first)."""
        path = self.path(relative)
        if not self.is_local:
            self.fs.invalidate_cache(path)  # another process may have written it since a listing
        return bool(self.fs.exists(path))

    def lacks_file(self, relative: str) -> bool:
        """True when the store says there is no file at ``relative``.

        Local roots always answer False: :meth:`open` then decides, and names
        what is there instead (a FIFO, a link outside the root, nothing).
        """
        return False if self.is_local else not self.fs.isfile(self.path(relative))

    def root_kind(self) -> Literal["folder", "file", "missing"]:
        """What the root itself is (remote: "folder" when the prefix exists)."""
        if not self.is_local:
            return "folder" if self.fs.exists(self.base) else "missing"
        if os.path.isdir(self.base):
            return "folder"
        return "file" if os.path.exists(self.base) else "missing"

    def open_any(self, relative: str) -> BinaryIO:
        """Open ``relative`` for reading as the store does, links followed (own files only)."""
        return (
            open(self.path(relative), "rb")
            if self.is_local
            else self.fs.open(self.path(relative), "rb")
        )

    def make_parents(self, relative: str) -> None:
        """Make the folders above the file ``relative`` (none on an object store).

        Locally level by level with ``lstat``: ``os.makedirs`` would follow a
        link (``shards -> /elsewhere``) and write there.

        Raises
        ------
        NotADirectoryError
            Something other than a folder (a file, a link) is where a folder belongs.
        """
        if not self.is_local:
            if not self.is_object_store:
                self.fs.makedirs(self.path(relative).rpartition("/")[0], exist_ok=True)
            return
        parts = relative.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            path = self.path("/".join(parts[:depth]))
            try:
                os.mkdir(path)
                continue
            except FileExistsError:
                pass
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", path)

    def make_root(self) -> None:
        """Make the root folder (none on an object store), parents included."""
        if self.is_local:
            os.makedirs(self.base, exist_ok=True)
        elif not self.is_object_store:
            self.fs.makedirs(self.base, exist_ok=True)

    def write_atomic(self, relative: str, data: bytes) -> None:
        """Write ``data`` to ``relative`` so that a reader sees it complete or absent.

        Local: a hidden temporary file in the same folder, flushed to disk and
        renamed over ``relative``.  Object stores: one PUT (atomic there).
        Other stores: a temporary name, then a move.  The folders above must exist.
        """
        final = self.path(relative)
        if self.is_object_store:
            self.fs.pipe_file(final, data)
            return
        temporary = _temporary(final)
        if not self.is_local:
            self.fs.pipe_file(temporary, data)
            self.fs.mv(temporary, final)
            return
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    @contextlib.contextmanager
    def staged(self, relative: str) -> Iterator[BinaryIO]:
        """A local file to write ``relative`` through, published atomically on success.

        Local: a hidden temporary file beside ``relative``, flushed and renamed.
        Remote: a local temporary file, then uploaded (object stores: one PUT;
        other stores: to a temporary name, then moved).  On an exception
        nothing is published and the temporary file is removed.
        """
        final = self.path(relative)
        if self.is_local:
            staging = _temporary(final)
        else:
            handle_, staging = tempfile.mkstemp(prefix="dicontour-staged-")
            os.close(handle_)
        try:
            with open(staging, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            if self.is_local:
                os.replace(staging, final)
            elif self.is_object_store:
                self.fs.put_file(staging, final)
            else:
                temporary = _temporary(final)
                self.fs.put_file(staging, temporary)
                self.fs.mv(temporary, final)
        finally:
            if os.path.exists(staging):
                os.remove(staging)

    def file_versions(self, *, files: Sequence[str], folders: Sequence[str]) -> dict[str, str]:
        """``{relative path: "<size> <tag>"}`` for ``files`` and every file under ``folders``.

        The tag is what the store keeps per file: the modification time in
        nanoseconds on a local disk, the ETag, MD5 or generation on an object
        store.  Locally the folders are listed through :meth:`entries` (links
        followed only inside the root, never through a loop) and a refused
        entry is tagged ``refused <code>``; missing paths are left out.
        """
        found: dict[str, str] = {}
        if self.is_local:
            for name in files:
                try:
                    info = os.stat(self.path(name))
                    found[name] = f"{info.st_size} {info.st_mtime_ns}"
                except OSError:
                    pass
            pending = list(folders)
            while pending:
                folder = pending.pop()
                try:
                    entries = self.entries(folder)
                except RefusedFileError as exc:
                    found[folder] = f"refused {exc.code}"
                    continue
                for entry in entries:
                    relative = f"{folder}/{entry.name}"
                    if entry.kind == "folder":
                        pending.append(relative)
                    elif entry.kind == "refused":
                        found[relative] = f"refused {entry.code}"
                    else:
                        try:
                            info = os.stat(self.path(relative))
                        except OSError:  # vanished since the listing
                            continue
                        found[relative] = f"{info.st_size} {info.st_mtime_ns}"
            return dict(sorted(found.items()))
        fs, base = self.fs, self.base.rstrip("/")
        for top in (*files, *folders):
            path = self.path(top)
            fs.invalidate_cache(path)
            try:
                # find() on a file key would also match longer keys with the same prefix
                entries_ = {path: fs.info(path)} if top in files else fs.find(path, detail=True)
            except FileNotFoundError:
                continue
            for name, detail in entries_.items():
                if detail.get("type") == "directory":
                    continue
                relative = name.rstrip("/")[len(base) + 1 :] if name.startswith(base) else name
                found[relative] = f"{detail.get('size', '-')} {_tag(detail)}"
        return found

    def open_npy(self, relative: str) -> np.ndarray | RemoteNpy:
        """The ``.npy`` array at ``relative``, indexable by sample without reading it all.

        Local: a read-only memory map (as a plain ndarray over the map:
        indexing an ``np.memmap`` runs Python code per slice), whose rows are
        views.  Remote: a :class:`RemoteNpy` that fetches each row indexed with
        one range request and returns fresh arrays.

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            Not a C-order ``.npy`` file.
        """
        if self.is_local:
            return np.load(self.path(relative), mmap_mode="r", allow_pickle=False).view(np.ndarray)
        return RemoteNpy(self.fs, self.path(relative))

    @contextlib.contextmanager
    def hold(
        self, relative: str, holder: str, *, stale: Callable[[str], bool] = lambda _: False
    ) -> Iterator[None]:
        """Hold the lock file ``relative`` for a ``with`` block, writing ``holder`` into it.

        Local folders (POSIX): an exclusive ``flock``, not waiting; the kernel
        drops it when the process dies, so a killed holder never blocks the
        next one.  The file is opened with ``O_NOFOLLOW`` (a link planted at
        its name is refused).  Elsewhere (object stores, Windows): a marker
        file, written at the start and deleted at the end; one found is taken
        over only when ``stale(its holder)`` says so.

        Raises
        ------
        LockHeld
            Someone else holds it.
        LockUnavailable
            The lock file cannot be created (locally).
        """
        if self.is_local and fcntl is not None:
            with self._flock(relative, holder):
                yield
            return
        if self.exists(relative):
            try:
                found = self.fs.cat_file(self.path(relative)).decode(errors="replace").strip()
            except OSError:
                found = ""
            if not stale(found):
                raise LockHeld(found, released_on_exit=False)
        self.write_atomic(relative, holder.encode())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                self.fs.rm_file(self.path(relative))

    @contextlib.contextmanager
    def _flock(self, relative: str, holder: str) -> Iterator[None]:
        path = self.path(relative)
        while True:
            try:
                handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise LockUnavailable(exc.errno, exc.strerror, path) from exc
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                found = os.read(handle, 400).decode(errors="replace").strip()
                os.close(handle)
                raise LockHeld(found, released_on_exit=True) from None
            # A finishing holder unlinks its lock file after we opened it: then we hold a
            # lock on a deleted file, and must lock the one now at the path instead.
            try:
                opened, current = os.fstat(handle), os.lstat(path)
                same = (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(handle)
        try:
            os.ftruncate(handle, 0)
            os.write(handle, holder.encode())
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(handle)  # releases the flock

    # -- walking and removing without following links ---------------------------------

    def root_mode(self, *, follow_links: bool = False) -> int | None:
        """The ``st_mode`` of the root itself, None when it does not exist.

        Locally from ``lstat`` (``stat`` with ``follow_links``), so a root that
        is a link says so.  A remote root is a prefix that acts as a folder
        (created by the first write): always a folder.
        """
        if not self.is_local:
            return stat.S_IFDIR
        try:
            return (os.stat if follow_links else os.lstat)(self.base).st_mode
        except FileNotFoundError:
            return None

    def walk(self, *, descend: Callable[[str], bool]) -> Iterator[Walked]:
        """Every entry under the root, links never followed, in name order per folder.

        Locally each entry comes with its ``lstat`` mode and size; a folder is
        entered only when ``descend(its relative path)`` says so; a folder that
        cannot be listed, or an entry that cannot be inspected, comes with the
        ``OSError``.  Remotely, one entry per file key (a store has no real
        folders, links or special files).
        """
        if not self.is_local:
            base = self.base.rstrip("/")
            self.fs.invalidate_cache(base)
            try:
                listing = self.fs.find(base, detail=True)
            except FileNotFoundError:
                return
            for key, info in sorted(listing.items()):
                relative = key.rstrip("/")[len(base) + 1 :]
                if relative and info.get("type") != "directory":
                    yield Walked(relative, stat.S_IFREG, int(info.get("size") or 0))
            return
        pending = [""]
        while pending:
            folder = pending.pop()
            try:
                entries = sorted(os.scandir(self.path(folder)), key=lambda e: e.name)
            except FileNotFoundError:  # removed since it was listed
                continue
            except OSError as exc:
                yield Walked(folder, stat.S_IFDIR, 0, exc)
                continue
            for entry in entries:
                relative = f"{folder}/{entry.name}" if folder else entry.name
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # renamed since the listing
                    continue
                except OSError as exc:
                    yield Walked(relative, 0, 0, exc)
                    continue
                yield Walked(relative, info.st_mode, info.st_size)
                if stat.S_ISDIR(info.st_mode) and descend(relative):
                    pending.append(relative)

    def remove(self, relative: str) -> None:
        """Delete the regular file ``relative``; a missing one (or folder above it) is fine.

        Locally no link is followed on the way: the folders are opened with
        ``O_NOFOLLOW`` one level at a time and the file is unlinked through its
        folder's descriptor, so a folder swapped for a link cannot redirect the
        removal.

        Raises
        ------
        NotRemoved
            Locally, a folder on the way is a link or a file, or ``relative``
            is not a regular file: nothing is removed.
        """
        if not self.is_local:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path(relative))
            return
        with self._folder(relative.split("/")[:-1]) as handle:
            if handle is not None:
                self._unlink(handle, relative)

    def remove_folder(self, relative: str, *, own: Callable[[str], bool]) -> None:
        """Delete the folder ``relative``: each of its files, then the (empty) folder.

        Every entry must be a regular file whose relative path ``own`` accepts;
        locally no link is followed (see :meth:`remove`).  A missing folder is fine.

        Raises
        ------
        NotRemoved
            An entry that ``own`` refuses, or a link or folder inside: it is
            named, and the folder is left in place.
        """
        if not self.is_local:
            base = self.path(relative).rstrip("/")
            self.fs.invalidate_cache(base)
            try:
                keys = self.fs.find(base)
            except FileNotFoundError:
                return
            for key in keys:
                inner = key.rstrip("/")[len(self.base.rstrip("/")) + 1 :]
                if not own(inner):
                    raise NotRemoved(self.path(inner), "foreign")
                self.remove(inner)
            return
        parts = relative.split("/")
        with self._folder(parts) as handle:
            if handle is None:
                return
            for name in sorted(os.listdir(handle)):
                inner = f"{relative}/{name}"
                if not own(inner):
                    raise NotRemoved(self.path(inner), "foreign")
                self._unlink(handle, inner)
        with self._folder(parts[:-1]) as handle:
            if handle is not None:
                os.rmdir(parts[-1], dir_fd=handle)  # only an empty folder goes

    @contextlib.contextmanager
    def _folder(self, parts: list[str]) -> Iterator[int | None]:
        """A descriptor of the local folder ``parts``, no link followed; None if it is missing."""
        handle = os.open(self.base, _NOFOLLOW_FOLDER)
        try:
            for depth, part in enumerate(parts):
                try:
                    inner = os.open(part, _NOFOLLOW_FOLDER, dir_fd=handle)
                except FileNotFoundError:
                    yield None
                    return
                except OSError as exc:  # ELOOP or ENOTDIR: a link or a file in the way
                    path = self.path("/".join(parts[: depth + 1]))
                    try:
                        what = mode_words(
                            os.stat(part, dir_fd=handle, follow_symlinks=False).st_mode
                        )
                    except OSError:
                        what = exc.strerror or str(exc)
                    raise NotRemoved(path, what, through=True) from exc
                os.close(handle)
                handle = inner
            yield handle
        finally:
            os.close(handle)

    def _unlink(self, handle: int, relative: str) -> None:
        name = relative.rsplit("/", 1)[-1]
        try:
            info = os.stat(name, dir_fd=handle, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(info.st_mode):
            raise NotRemoved(self.path(relative), mode_words(info.st_mode))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=handle)

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


#: Bytes read for a remote ``.npy`` header (version 1.0 headers are padded to 64-byte blocks).
_NPY_HEADER_BYTES = 512


class RemoteNpy:
    """A C-order ``.npy`` file on a remote store, read by range requests.

    ``array[j]`` and ``array[j, c]`` read that row (or that plane of a row)
    only, as a fresh array.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        self.fs, self.path = fs, path
        handle = io.BytesIO(fs.cat_file(path, start=0, end=_NPY_HEADER_BYTES))
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        if fortran:
            raise ValueError("Fortran order: not a C-order array")
        self.offset, self.shape, self.dtype = handle.tell(), tuple(shape), np.dtype(dtype)

    def __getitem__(self, key: int | tuple[int, int]) -> np.ndarray:
        index = key if isinstance(key, tuple) else (key,)
        inner = self.shape[len(index) :]
        size = int(np.prod(inner, dtype=np.int64)) * self.dtype.itemsize
        flat = int(np.ravel_multi_index(index, self.shape[: len(index)]))
        start = self.offset + flat * size
        raw = self.fs.cat_file(self.path, start=start, end=start + size)
        return np.frombuffer(raw, self.dtype).reshape(inner).copy()


@contextlib.contextmanager
def opened_as(
    where: Location,
    relative: str,
    error: Callable[..., DicontourError],
    *,
    missing: str,
    unreadable: str | None = None,
) -> Iterator[BinaryIO]:
    """:meth:`Location.open`, each failure raised as ``error(relative, reason, code=...)``.

    A refused file keeps its own code (``not-a-regular-file``, ...), a missing
    one gets ``missing``, any other ``OSError`` gets ``unreadable`` (the
    error's default code when None).  The file is closed on leaving.
    """
    try:
        handle = where.open(relative)
    except RefusedFileError as exc:
        raise error(relative, exc.reason, code=exc.code) from exc
    except FileNotFoundError as exc:
        raise error(relative, "file does not exist", code=missing) from exc
    except OSError as exc:
        raise error(
            relative, f"cannot open ({type(exc).__name__}: {exc})", code=unreadable
        ) from exc
    with handle:
        yield handle
