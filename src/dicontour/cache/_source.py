"""Open a cache for reading: :func:`open_cache` and :class:`CacheSource`.

``CacheSource`` implements the loader's
:class:`~dicontour.loader.source.SampleSource`.  It pickles to a few small
arrays and the cache's URL; each process opens the shards itself, lazily:

* a local cache through ``np.load(mmap_mode="r")``: a sample is one slice
  of a memory map, which the loader's workers copy straight into their
  shared-memory slot (:meth:`CacheSource.read_into`; the page cache does
  the rest);
* a remote cache (``s3://...``) with two ranged reads per sample, one into
  ``images.npy`` and one into ``masks.npy``, at offsets computed from the
  ``.npy`` header, which is read once per shard and process.

What :func:`open_cache` checks, before anything is served: the manifest's
format, version and structure; the dataset's freshness (and that it is the
dataset the cache was built from); that the folder holds no link and nothing
in the way of the cache's files; the size of every shard file; and, unless
``checksums=False``, the sha256 of every byte (the cost of reading the cache
once: 0.02 s for the real data's 38 MB).
"""

from __future__ import annotations

import bisect
import io
import logging
import os
from typing import Any, Literal

import numpy as np

from .._docstrings import fill_doc
from ..batch import BatchMeta, case_id, out_of_range
from ..errors import CacheError
from ..storage import Location, location
from ..targets import Target, check_target
from . import _layout, _store
from ._check import ShardCheck, check_shard, check_small_files, manifest_problem, refuse
from ._fingerprint import Fingerprint, fingerprint, list_files
from ._format import FINGERPRINT, FORMAT, FORMAT_VERSION, HAS, LOCK, MANIFEST, SHARDS, shard_folder
from ._format import dicontour_version as _version

log = logging.getLogger("dicontour.cache")


class CacheSource:
    """The samples of a cache, for :class:`~dicontour.loader.BatchLoader` (a ``SampleSource``).

    Made by :func:`open_cache`.  Sample k is the k-th sample of the cache (the
    scan's order, grouped by image shape).

    Examples
    --------
    >>> source = open_cache("cache")                           # doctest: +SKIP
    >>> image, mask = source.read(0, "i")                      # doctest: +SKIP
    >>> image.dtype, mask.shape                                # doctest: +SKIP
    (dtype('float32'), (256, 256))
    """

    def __init__(self, cache: str | Location, manifest: dict[str, Any], has: np.ndarray) -> None:
        self.url = location(cache).url
        shards = manifest["shards"]
        counts = np.array([entry["count"] for entry in shards], dtype=np.int64)
        self._names = tuple(entry["name"] for entry in shards)
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._shard_shapes = np.array([entry["shape"] for entry in shards], dtype=np.int64)
        self._has = np.asarray(has, dtype=bool)
        self._reset()
        if self._has.shape != (int(self._starts[-1]), 2):
            raise CacheError(
                f"{self.location.redacted()}: has.npy is {self._has.shape}, "
                f"the manifest counts {int(self._starts[-1])} samples"
            )

    def _reset(self) -> None:
        # Per-process state: open memory maps, remote .npy layouts, shard manifests.
        self._pid = os.getpid()
        self._location = location(self.url)
        self._open: dict[int, Any] = {}
        self._manifests: dict[int, dict[str, Any]] = {}
        # Python ints for the per-sample lookups (numpy scalars cost ~1 us each).
        self._start_list = self._starts.tolist()
        # What meta() learnt from the shard manifests: patient codes and slices.
        self._known = np.zeros(len(self._names), dtype=bool)
        self._all_known = False
        self._patients: list[str] = []
        self._codes: dict[str, int] = {}
        self._patient = np.zeros(int(self._starts[-1]), dtype=np.int32)
        self._slice = np.zeros(int(self._starts[-1]), dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        keep = ("url", "_names", "_starts", "_shard_shapes", "_has")
        return {name: self.__dict__[name] for name in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def location(self) -> Location:
        """Where the cache is; rebuilt after a fork, so a child never uses the parent's fs."""
        if self._pid != os.getpid():
            self._reset()
        return self._location

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        return (
            f"CacheSource({self.location.redacted()!r}, samples={len(self)}, "
            f"shards={len(self._names)})"
        )

    def shapes(self) -> np.ndarray:
        """int64 array (N, 2): (H, W) of each sample's image."""
        return np.repeat(self._shard_shapes, np.diff(self._starts), axis=0)

    def has(self, target: Target) -> np.ndarray:
        """bool array (N,): whether each sample has the mask(s) ``target`` needs."""
        target = check_target(target)
        if target == "i":
            return self._has[:, 0].copy()
        if target == "o":
            return self._has[:, 1].copy()
        return self._has[:, 0] & self._has[:, 1]

    def _where(self, k: int) -> tuple[int, int]:
        if not 0 <= k < len(self):
            raise IndexError(f"sample {k} is out of range for a cache of {len(self)} samples")
        shard = bisect.bisect_right(self._start_list, k) - 1
        return shard, k - self._start_list[shard]

    def _read_manifest(self, shard: int) -> dict[str, Any]:
        folder = shard_folder(self._names[shard])
        return _store.read_json(self.location, f"{folder}/{MANIFEST}")

    def _shard_manifest(self, shard: int) -> dict[str, Any]:
        if shard not in self._manifests:
            self._manifests[shard] = self._read_manifest(shard)
        return self._manifests[shard]

    def describe(self, k: int) -> str:
        """``patient P slice n (dicoms/P/n.dcm), shard S position j of CACHE``."""
        shard, j = self._where(k)
        where = f"shard {self._names[shard]} position {j} of {self.location.redacted()}"
        try:
            sample = self._shard_manifest(shard)["samples"][j]
            who = f"patient {sample['patient_id']} slice {sample['slice']} ({sample['dicom']})"
            return f"{who}, {where}"
        except (CacheError, KeyError, IndexError, TypeError):
            return where

    def meta(self, indices: np.ndarray) -> BatchMeta:
        """Patient, slice and case id of the samples at ``indices``; spacing NaN.

        From the shards' manifests, each read once per process when first
        needed and kept as two numbers a sample (the loader calls this in the
        training process, once per batch).
        The cache does not record the pixel spacing (its format predates the
        need), so ``pixel_spacing`` is NaN; scan the dataset and use an
        ``IndexSource`` where spacing matters.

        Raises
        ------
        CacheError
            A shard manifest is missing or unreadable.

        Examples
        --------
        >>> open_cache("cache").meta(np.array([0])).case_id      # doctest: +SKIP
        ('SCD0000101_0048',)
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = out_of_range(indices, len(self))
        if bad is not None:
            raise IndexError(f"sample {bad} is out of range for a cache of {len(self)} samples")
        if not self._all_known:
            shards = np.searchsorted(self._starts, indices, side="right") - 1
            for shard in np.unique(shards).tolist():
                if not self._known[shard]:
                    self._learn(shard)
            self._all_known = bool(self._known.all())
        codes = self._patient[indices].tolist()
        patients = [self._patients[code] for code in codes]
        slices = self._slice[indices]
        return BatchMeta(
            patient_id=tuple(patients),
            slice=slices,
            pixel_spacing=np.full((len(indices), 2), np.nan),
            case_id=tuple(map(case_id, patients, slices.tolist())),
            index=indices,
        )

    def _learn(self, shard: int) -> None:
        """Each sample of ``shard``'s patient and slice, as codes (not its manifest's dicts)."""
        manifest = self._manifests.get(shard) or self._read_manifest(shard)  # not kept
        start, end = int(self._starts[shard]), int(self._starts[shard + 1])
        for j in range(end - start):
            try:
                sample = manifest["samples"][j]
                patient, number = str(sample["patient_id"]), int(sample["slice"])
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise CacheError(
                    f"{self.location.redacted()}: shard {self._names[shard]}'s manifest has no "
                    f"patient and slice for position {j} ({type(exc).__name__}: {exc})"
                ) from exc
            code = self._codes.setdefault(patient, len(self._patients))
            if code == len(self._patients):
                self._patients.append(patient)
            self._patient[start + j] = code
            self._slice[start + j] = number
        self._known[shard] = True

    def _arrays(self, shard: int) -> Any:
        opened = self._open.get(shard)
        if opened is not None:
            return opened
        where, folder = self.location, shard_folder(self._names[shard])
        count = int(self._starts[shard + 1] - self._starts[shard])
        rows, columns = (int(v) for v in self._shard_shapes[shard])
        expected = {
            "images.npy": ((count, rows, columns), np.dtype(np.float32)),
            "masks.npy": ((count, 2, rows, columns), np.dtype(bool)),
        }
        found = {}
        for name, (shape, dtype) in expected.items():
            relative = f"{folder}/{name}"
            try:
                array = where.open_npy(relative)
                found[name] = array
                layout = (array.shape, array.dtype)
            except FileNotFoundError as exc:
                raise CacheError(f"{where.redacted()}/{relative}: missing") from exc
            except (OSError, ValueError) as exc:
                raise CacheError(f"{where.redacted()}/{relative}: unreadable ({exc})") from exc
            if layout != (shape, dtype):
                raise CacheError(
                    f"{where.redacted()}/{relative}: holds {layout[1]} {layout[0]}, "
                    f"the manifest says {dtype} {shape}"
                )
        opened = (found["images.npy"], found["masks.npy"])
        self._open[shard] = opened
        return opened

    def read(self, k: int, target: Target) -> tuple[np.ndarray, np.ndarray]:
        """Sample k's image and its ``target`` mask(s), from the cache.

        Returns
        -------
        image : float32 ndarray of shape (H, W)
        mask : bool ndarray of shape (H, W), or (2, H, W) [i, o] for ``"both"``
            From a local cache, read-only views of the memory-mapped shard
            (copy them to modify); from a remote one, fresh arrays.

        Raises
        ------
        ValueError
            The sample has no such mask, or ``target`` is unknown.
        CacheError
            A shard file is missing or does not match the manifest.
        """
        target = check_target(target)
        shard, j = self._where(k)
        column = int(target == "o")  # an int: a bool index would add an axis
        if not (self._has[k].all() if target == "both" else self._has[k, column]):
            raise ValueError(f"sample {k} ({self.describe(k)}) has no {target}-mask")
        _ = self.location  # first: after a fork this drops the parent's handles
        images, masks = self._arrays(shard)
        # Locally, read-only views of the memory maps: the loader's worker copies them
        # straight into its shared-memory slot, and a copy here would cost a fresh
        # allocation and its page faults per sample (3x the copy itself).  Remotely,
        # one range request per array (see Location.open_npy).
        return images[j], (masks[j] if target == "both" else masks[j, column])

    def read_into(self, k: int, target: Target, image: np.ndarray, mask: np.ndarray) -> None:
        """Write sample k into ``image`` and ``mask`` (the loader's slot), with no array between.

        The loader's workers call this instead of :meth:`read` when nothing is
        to be done to a sample (no normalisation, no resizing): from a local
        cache, one copy from the memory-mapped shard into the slot.

        Parameters
        ----------
        k : int
        target : {"i", "o", "both"}
        image : float32 ndarray of shape (H, W)
            Written with the image.
        mask : bool ndarray of shape (H, W), or (2, H, W) for ``"both"``
            Written with the mask(s).

        Raises
        ------
        ValueError
            The sample has no such mask, ``target`` is unknown, or ``image``
            or ``mask`` has another shape than the sample's.
        CacheError
            A shard file is missing or does not match the manifest.

        Examples
        --------
        >>> image, mask = np.empty((256, 256), np.float32), np.empty((256, 256), bool)
        >>> source.read_into(0, "i", image, mask)                # doctest: +SKIP
        """
        source_image, source_mask = self.read(k, target)
        if source_image.shape != image.shape or source_mask.shape != mask.shape:
            raise ValueError(
                f"sample {k} ({self.describe(k)}) is image {source_image.shape}, mask "
                f"{source_mask.shape}; it cannot be written into {image.shape} and {mask.shape}"
            )
        image[...] = source_image
        mask[...] = source_mask


def _check_format(where: Location, manifest: Any) -> dict[str, Any]:
    name = f"{where.redacted()}/{MANIFEST}"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CacheError(f"{name}: not a dicontour cache manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CacheError(
            f"{name}: cache format {manifest.get('format_version')}, this dicontour reads "
            f"format {FORMAT_VERSION}; rebuild it with `dicontour cache build`"
        )
    if manifest.get("dicontour_version") != _version():
        raise CacheError(
            f"{where.redacted()}: stale: built by dicontour {manifest.get('dicontour_version')}, "
            f"this is dicontour {_version()}, whose decoding may differ; rebuild it with "
            f"`dicontour cache build ROOT {where.redacted()}` (it rewrites every shard)"
        )
    problem = manifest_problem(manifest)
    if problem:
        raise CacheError(
            f"{name}: damaged ({problem}); rebuild it with "
            f"`dicontour cache build ROOT {where.redacted()}` (intact shards are kept)"
        )
    return manifest


def read_manifest(cache: str | Location) -> dict[str, Any]:
    """The top-level manifest of a complete cache, checked for format and version.

    Raises
    ------
    CacheError
        No cache there, an unfinished build, another format or dicontour version.
    """
    where = location(cache)
    if not _layout.check_folder(where, link_ok=True):
        raise CacheError(f"{where.redacted()}: no cache here (the folder does not exist)")
    if not _store.exists(where, MANIFEST):
        if _store.exists(where, LOCK):
            raise CacheError(
                f"{where.redacted()}: unfinished cache (a build is running, or was killed); "
                "wait for it, or run `dicontour cache build` again to finish it"
            )
        if _store.exists(where, SHARDS):
            raise CacheError(
                f"{where.redacted()}: unfinished cache (a build was interrupted or is running); "
                "run `dicontour cache build` again to finish it"
            )
        raise CacheError(f"{where.redacted()}: no cache here (no {MANIFEST})")
    return _check_format(where, _store.read_json(where, MANIFEST))


class _NotTheDataset(CacheError):
    """The root given is missing, holds no dataset, or holds another dataset (not stale)."""


def _listing(data: Location) -> Fingerprint:
    """The fingerprint of the dataset at ``data``, refusing a missing root or an empty one."""
    try:
        kind = data.root_kind()
    except Exception as exc:  # any store error (credentials, network)
        raise _NotTheDataset(
            f"{data.redacted()}: the dataset root is not reachable ({type(exc).__name__}: {exc})"
        ) from exc
    if kind != "folder":
        what = "is a file, not a folder" if kind == "file" else "does not exist"
        raise _NotTheDataset(f"{data.redacted()}: the dataset root {what}")
    now = fingerprint(list_files(data))
    if not now.files:
        raise _NotTheDataset(
            f"{data.redacted()}: no dataset there (no link.csv, dicoms/ or contourfiles/)"
        )
    return now


def _refuse_if_changed(
    where: Location, manifest: dict[str, Any], data: Location, now: Fingerprint
) -> None:
    """Raise the stale-cache error if ``now`` differs from the fingerprint recorded.

    Another dataset altogether (fewer than half of the patient folders in
    common) is named as such, not as a stale cache: rebuilding would not help.
    """
    if now.sha256 == manifest["dataset"]["sha256"]:
        return
    try:
        then = Fingerprint.from_dict(_store.read_json(where, FINGERPRINT))
        detail = then.differences(now)
    except (CacheError, AttributeError, KeyError, TypeError, ValueError):
        then = None
        detail = f"{manifest['dataset'].get('files')} files at build time, {now.files} now"
    if then is not None:
        folders = {g for g in then.groups if "/" in g}
        common = folders & set(now.groups)
        if folders and 2 * len(common) < len(folders | {g for g in now.groups if "/" in g}):
            raise _NotTheDataset(
                f"{where.redacted()}: {data.redacted()} is not the dataset this cache was built "
                f"from ({manifest.get('source')}): {len(common)} of the cache's {len(folders)} "
                "patient folders are there; give that dataset's root, or build a cache for "
                f"this one with `dicontour cache build {data.redacted()} NEW_CACHE`"
            )
    raise CacheError(
        f"{where.redacted()}: stale: the dataset {data.redacted()} changed since the cache was "
        f"built ({detail}); rebuild it with `dicontour cache build` (unchanged shards are kept)"
    )


def check_fresh(cache: str | Location, root: str | Location) -> None:
    """Refuse a cache whose dataset changed since the build.

    Recomputes the fingerprint of ``root``'s files (sizes and versions from a
    listing; no file is read) and compares it with the one recorded.

    Raises
    ------
    CacheError
        Stale: the message names the patients' folders that changed.  Or
        ``root`` does not exist, holds no dataset, or holds another dataset
        (fewer than half of the cache's patient folders): the message says
        which.
    """
    where, data = location(cache), location(root)
    manifest = read_manifest(where)
    _refuse_if_changed(where, manifest, data, _listing(data))


def _check_recorded_root(where: Location, manifest: dict[str, Any]) -> None:
    """Check freshness against the dataset the build recorded, if it can be reached from here.

    Unreachable (no file of the layout there, or the store refuses the
    listing): the cache is served as built, with a warning on the
    ``dicontour.cache`` logger that names the recorded root.
    """
    recorded = manifest.get("source")
    if not isinstance(recorded, str) or not recorded:
        log.warning(
            "%s: cannot check that the cache is fresh: its manifest records no dataset root; "
            "pass root= to check it, or root=False to silence this warning",
            where.redacted(),
        )
        return
    data = location(recorded)
    try:
        now = fingerprint(list_files(data))
    except Exception as exc:  # any store error (credentials, network): the check is optional
        reason = f"{type(exc).__name__}: {exc}"
    else:
        if now.files:  # a dataset is there: compare, and refuse a changed one
            _refuse_if_changed(where, manifest, data, now)
            return
        # Nothing of the layout: moved away, or an empty mount point on another machine.
        reason = "no link.csv, dicoms/ or contourfiles/ there"
    log.warning(
        "%s: cannot check that the cache is fresh: the dataset it was built from, %s, "
        "is not reachable here (%s); serving the cache as built. Pass root= to check "
        "against a copy of the dataset, or root=False to skip the check",
        where.redacted(),
        recorded,
        reason,
    )


def _check_integrity(where: Location, manifest: dict[str, Any], checksums: bool) -> None:
    """Refuse a damaged cache before serving it (see the module's docstring)."""
    found = _layout.audit(where, link_ok=True)
    failures = list(found.in_the_way)  # a foreign file is left alone: it is not read
    small, _ = check_small_files(where, manifest)
    failures += small
    for entry in manifest["shards"]:
        shard, _ = check_shard(ShardCheck.of(where, entry, checksums), sizes=found.files)
        failures += shard
    refuse(where, failures)


#: The ``cache`` parameter of the readers, :func:`open_cache` and ``verify_cache``.
CACHE_DOC = """cache : str or Location
    The cache folder or URL."""


@fill_doc(cache=CACHE_DOC)
def open_cache(
    cache: str | Location,
    *,
    root: str | Location | Literal[False] | None = None,
    checksums: bool = True,
) -> CacheSource:
    """Open a complete cache for reading, refusing it if its dataset changed since the build.

    Parameters
    ----------
    %(cache)s
    root : str, Location or False, optional
        The dataset to check freshness against (see :func:`check_fresh`).
        By default (None), the dataset root recorded at build time (an
        absolute path, or a URL without credentials): if it holds no dataset
        here (training from a copied cache on a machine without the data) or
        the store refuses the listing, the cache is served and a warning
        naming that root is logged on the ``dicontour.cache`` logger.  Give
        the dataset's path here when it moved; ``False`` skips the check (no
        listing, no warning: for callers who checked already, e.g. with
        ``dicontour cache verify CACHE --root ROOT``).
    checksums : bool
        Read every byte of the cache once and check its sha256 (the default:
        0.02 s for the real data, about one epoch's reading for a cache too
        large for memory).  ``False`` checks only the structure and the size
        of every file: for a large cache checked already with
        ``dicontour cache verify``.

    Returns
    -------
    CacheSource

    Raises
    ------
    CacheError
        Missing, unfinished, another format or dicontour version, stale (the
        message names the patients' folders that changed), ``root`` missing
        or another dataset, or damaged (the message names each damaged file
        and says to run ``dicontour cache build``, which rebuilds it).

    Notes
    -----
    The check lists the dataset's files (no file is read): milliseconds for a
    local dataset, about one request per 1,000 files on an object store.
    Every process that opens the cache pays it; with many training processes
    over a large remote dataset, check once and open with ``root=False``.

    Examples
    --------
    >>> source = open_cache("cache")                       # doctest: +SKIP
    >>> len(source), source.has("o").sum()                 # doctest: +SKIP
    (96, 46)
    >>> source = open_cache("cache", root="/data/moved")   # doctest: +SKIP
    >>> source = open_cache("cache", root=False)           # doctest: +SKIP
    """
    where = location(cache)
    manifest = read_manifest(where)
    if root is None:
        _check_recorded_root(where, manifest)
    elif root is not False:
        data = location(root)
        _refuse_if_changed(where, manifest, data, _listing(data))
    _check_integrity(where, manifest, checksums)
    try:
        raw = where.fs.cat_file(where.path(HAS))
        has = np.load(io.BytesIO(raw), allow_pickle=False)
    except OSError as exc:
        raise CacheError(f"{where.redacted()}/{HAS}: unreadable ({_store.words(exc)})") from exc
    except ValueError as exc:
        raise CacheError(f"{where.redacted()}/{HAS}: unreadable ({exc})") from exc
    return CacheSource(where, manifest, has)
