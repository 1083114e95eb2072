"""What a cache folder may hold, and the only way the cache removes anything.

A cache owns exactly the names of its naming scheme, nothing else::

    manifest.json  fingerprint.json  has.npy  .dicontour-build.lock   files
    shards/                                                           a folder
    shards/<6 digits>/                                                folders
    shards/<6 digits>/{images,masks,has}.npy, manifest.json           files
    .<one of those file names>.tmp-<hex>                              a build's temporaries

:func:`audit` lists every entry of a cache folder without following a
symbolic link, and names what does not fit: a link (whatever it points to),
a folder where the scheme has a file or the reverse, a name outside the
scheme.  A build refuses to start on any of them, and :func:`remove_file`
and :func:`remove_shard` delete only regular files of the scheme, one by one
(never ``rmtree``), through folder descriptors opened without following a
link: a cache folder pointed at the wrong place, or a link planted inside
one, even after the audit, can make a build fail but never makes it delete
what it did not write.

Examples
--------
>>> own_file("shards/000003/images.npy"), own_file("shards/000003/notes.txt")
(True, False)
>>> own_file(".manifest.json.tmp-0a1b"), is_temporary(".manifest.json.tmp-0a1b")
(True, True)
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

from ..errors import CacheError
from ..storage import Location, NotRemoved, mode_words
from . import _store
from ._format import ARRAYS, FINGERPRINT, HAS, LOCK, MANIFEST, SHARDS

_TOP_FILES = (MANIFEST, FINGERPRINT, HAS)
_SHARD_FILES = (*ARRAYS, MANIFEST)
_SHARD_NAME = re.compile(r"[0-9]{6}")


def _alternatives(names: tuple[str, ...]) -> str:
    return "|".join(re.escape(name) for name in names)


_TEMPORARY = re.compile(rf"\.(?:{_alternatives((*_TOP_FILES, *ARRAYS))})\.tmp-[0-9a-f]+")
_TOP_FILE = re.compile(rf"(?:{_alternatives((*_TOP_FILES, LOCK))})|{_TEMPORARY.pattern}")
_IN_SHARD = re.compile(rf"(?:{_alternatives(_SHARD_FILES)})|{_TEMPORARY.pattern}")


def is_temporary(relative: str) -> bool:
    """Whether ``relative`` names a temporary file of a build (left behind by a kill)."""
    return _TEMPORARY.fullmatch(relative.rsplit("/", 1)[-1]) is not None


def own_file(relative: str) -> bool:
    """Whether the scheme has a file at ``relative`` (a path inside the cache)."""
    parts = relative.split("/")
    if len(parts) == 1:
        return _TOP_FILE.fullmatch(parts[0]) is not None
    return (
        len(parts) == 3
        and parts[0] == SHARDS
        and _SHARD_NAME.fullmatch(parts[1]) is not None
        and _IN_SHARD.fullmatch(parts[2]) is not None
    )


def _own_folder(relative: str) -> bool:
    parts = relative.split("/")
    return parts == [SHARDS] or (
        len(parts) == 2 and parts[0] == SHARDS and _SHARD_NAME.fullmatch(parts[1]) is not None
    )


@dataclass(frozen=True)
class Audit:
    """What :func:`audit` found in a cache folder.

    Attributes
    ----------
    files : dict of str to int
        The regular files of the scheme (relative path -> size in bytes).
    shards : set of str
        The shard folders (``"000003"``).
    in_the_way : list of str
        ``"<relative path>: <what is wrong>"`` for each symbolic link (anywhere)
        and each entry of the wrong type where the scheme has a file or folder.
    foreign : list of str
        The same for names outside the scheme (files and folders someone added).
    """

    files: dict[str, int] = field(default_factory=dict)
    shards: set[str] = field(default_factory=set)
    in_the_way: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Everything that is not the cache's own, sorted by path."""
        return sorted(self.in_the_way + self.foreign)


def _classify(found: Audit, relative: str, mode: int, size: int, path: str) -> bool:
    """Record one entry; True when it is one of the scheme's folders (to descend into)."""
    kind = mode_words(mode)
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        found.in_the_way.append(
            f"{relative}: a symbolic link (to {target}); a cache holds no links and "
            "dicontour never follows one inside a cache"
        )
        return False
    if own_file(relative):
        if kind == "file":
            found.files[relative] = size
            return False
        found.in_the_way.append(f"{relative}: a {kind} is in the way where the cache keeps a file")
        return False
    if _own_folder(relative):
        if kind == "folder":
            if relative != SHARDS:
                found.shards.add(relative.rsplit("/", 1)[-1])
            return True
        found.in_the_way.append(
            f"{relative}: a {kind} is in the way where the cache keeps a folder"
        )
        return False
    found.foreign.append(f"{relative}: not a file of the cache (a {kind} dicontour did not write)")
    return False


def _audit(where: Location) -> Audit:
    found = Audit()
    for entry in where.walk(descend=_own_folder):
        if entry.error is not None:
            action = "list" if stat.S_ISDIR(entry.mode) else "inspect"
            found.in_the_way.append(
                f"{entry.relative or '.'}: cannot {action} ({_store.words(entry.error)})"
            )
            continue
        _classify(found, entry.relative, entry.mode, entry.size, where.path(entry.relative))
    # A store without folders names its shards only through their files' keys.
    found.shards.update(name.split("/")[1] for name in found.files if name.startswith(f"{SHARDS}/"))
    return found


def check_folder(where: Location, *, link_ok: bool = False) -> bool:
    """Refuse a cache path that is not a real folder; return whether it exists.

    ``link_ok`` accepts a link to a folder (reading a cache through a link
    touches nothing; a build refuses it, since it deletes files there).

    Raises
    ------
    CacheError
        The path is a symbolic link (unless ``link_ok``), a file, or another
        non-folder.
    """
    try:
        mode = where.root_mode(follow_links=link_ok)
    except OSError as exc:
        raise CacheError(f"{where.base}: cannot inspect ({_store.words(exc)})") from exc
    if mode is None:
        return False
    if stat.S_ISLNK(mode):
        raise CacheError(
            f"{where.base}: a symbolic link (to {os.readlink(where.base)}); dicontour writes "
            f"and removes only inside a real folder: give the folder itself "
            f"({os.path.realpath(where.base)})"
        )
    if not stat.S_ISDIR(mode):
        raise CacheError(f"{where.base}: exists and is a {mode_words(mode)}, not a folder")
    return True


def audit(where: Location, *, link_ok: bool = False) -> Audit:
    """Every entry of the cache folder ``where``, links inside it never followed.

    Raises
    ------
    CacheError
        ``where`` itself is a link (unless ``link_ok``) or not a folder (see
        :func:`check_folder`).
    """
    if not check_folder(where, link_ok=link_ok):
        return Audit()
    return _audit(where)


def _refuse_unless_own_file(where: Location, relative: str) -> None:
    if not own_file(relative):  # a programming error: no caller may ask for this
        raise CacheError(f"{_store.name(where, relative)}: not a file of the cache, not removed")


def _not_removed(exc: NotRemoved) -> CacheError:
    """The cache's words for a removal that :class:`~dicontour.storage.Location` refused."""
    if exc.through:
        return CacheError(
            f"{exc.path}: not a folder (a {exc.what}); dicontour removes nothing through it"
        )
    if exc.what == "foreign":
        return CacheError(
            f"{exc.path}: not a file of the cache; the shard folder is left in place: "
            "remove it yourself"
        )
    return CacheError(
        f"{exc.path}: a {exc.what} is in the way where the cache keeps a file; dicontour "
        "removes only files it wrote: remove it yourself"
    )


def remove_file(where: Location, relative: str) -> None:
    """Delete one regular file of the scheme; a missing one is fine.

    Raises
    ------
    CacheError
        ``relative`` is outside the scheme, or it (or a folder above it) is a
        link, or it is anything but a regular file: then nothing is removed.
    """
    _refuse_unless_own_file(where, relative)
    try:
        where.remove(relative)
    except NotRemoved as exc:
        raise _not_removed(exc) from exc


def remove_shard(where: Location, name: str) -> None:
    """Delete shard folder ``name``: its files of the scheme one by one, then the folder.

    Raises
    ------
    CacheError
        The folder holds anything else (a link, a subfolder, a foreign file):
        then those are named and left in place.
    """
    if _SHARD_NAME.fullmatch(name) is None:
        raise CacheError(f"{_store.name(where, SHARDS)}/{name}: not a shard folder, not removed")
    try:
        where.remove_folder(f"{SHARDS}/{name}", own=own_file)
    except NotRemoved as exc:
        raise _not_removed(exc) from exc
