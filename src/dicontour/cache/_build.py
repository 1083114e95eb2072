"""Build a cache: list and scan the dataset, plan shards, run one task per shard, seal it.

Layout of a cache folder (local or an fsspec URL)::

    CACHE/manifest.json            written last: its presence means "complete"; its
                                   "source" is the dataset root (absolute path, or URL
                                   without credentials) that open_cache checks freshness
                                   against when no root is given
    CACHE/fingerprint.json         per-group hashes of the dataset's files
    CACHE/has.npy                  bool (N, 2): sample k has an [i, o] mask
    CACHE/shards/<nnnnnn>/images.npy     float32 (n, H, W)
    CACHE/shards/<nnnnnn>/masks.npy      bool (n, 2, H, W), [i, o]; all False where absent
    CACHE/shards/<nnnnnn>/has.npy        bool (n, 2)
    CACHE/shards/<nnnnnn>/manifest.json  the samples (ids, files, file versions), checksums

Samples are the scan's records, grouped by image shape (shapes in order of
first appearance, records in index order within a shape) and cut into shards
of at most ``shard_size``: every shard holds one shape, so its arrays are
plain 3-D and 4-D ``.npy`` files that ``np.memmap`` reads directly.  A dataset
of one shape (the usual case) keeps the index order exactly.

Resuming: a shard whose manifest describes exactly the planned samples (same
files, same sizes and versions, same dicontour version) and whose arrays
match their checksums is kept; any other is rebuilt.  Shards are written
deterministically, so a build killed at any point and run again ends
byte-identical to an uninterrupted one.  A complete cache is "up to date"
only once every checksum holds: a damaged shard is rebuilt, never trusted.

Safety: the build refuses to start on a cache folder holding anything
outside the cache's naming scheme, or any symbolic link (see
:mod:`dicontour.cache._layout`); it removes only regular files of that
scheme, one by one; and it holds the cache's build lock throughout
(:mod:`dicontour.cache._lock`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._reach import check_cache, check_root
from ..engine import Engine, LocalEngine
from ..errors import CacheError, DicontourError
from ..index import Index, SampleRecord, load_sample, read_image
from ..raster import polygon_to_mask
from ..scan import Patient, PatientScan, scan
from ..storage import Location, location
from . import _layout, _store
from ._check import ShardCheck, check_shard, check_small_files, check_written
from ._fingerprint import Fingerprint, fingerprint, list_files
from ._format import (
    ARRAYS,
    DEFAULT_SHARD_SIZE,
    FINGERPRINT,
    FORMAT,
    FORMAT_VERSION,
    HAS,
    LOCK,
    MANIFEST,
    SHARDS,
    CacheReport,
    shard_folder,
)
from ._format import dicontour_version as _version
from ._lock import build_lock

#: Contour files from which :func:`build_cache`'s default engine runs one worker
#: process per CPU (about 700 samples: over a second of work in one process).
PARALLEL_CONTOURS = 1000


@dataclass(frozen=True)
class ShardTask:
    """One unit of a build: write shard ``name`` of ``cache`` from these records of ``root``.

    ``head`` is the shard manifest without its checksums; it names every
    sample's files with their size and version, so a kept shard is provably
    built from today's files.
    """

    root: Location
    cache: Location
    name: str
    shape: tuple[int, int]
    records: tuple[SampleRecord, ...]
    head: dict[str, Any] = field(repr=False)
    #: The scan's checked points of each record (``{"i": points, "o": points}``),
    #: rasterised instead of reading the contours again; None: read them.
    polygons: tuple[dict[str, np.ndarray], ...] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """How an engine error names this task."""
        return f"shard {self.name}"


@dataclass(frozen=True)
class ShardResult:
    """What a shard task did: ``reused`` a verified shard or built it."""

    name: str
    count: int
    reused: bool
    manifest_sha256: str
    bytes: int


def _kept(task: ShardTask) -> ShardResult | None:
    """The shard already on store, if it is exactly the planned one and its checksums hold."""
    folder = shard_folder(task.name)
    try:
        raw = task.cache.fs.cat_file(task.cache.path(f"{folder}/{MANIFEST}"))
        manifest = json.loads(raw)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or raw != _store.dumps(manifest):
        return None
    arrays = manifest.pop("arrays", None)
    if manifest != task.head or not isinstance(arrays, dict) or sorted(arrays) != sorted(ARRAYS):
        return None
    total = 0
    for name, entry in arrays.items():
        if not isinstance(entry, dict):
            return None
        try:
            digest, size = _store.sha256_of(task.cache, f"{folder}/{name}")
        except (OSError, ValueError):
            return None
        if digest != entry.get("sha256") or size != entry.get("bytes"):
            return None
        total += size
    return ShardResult(task.name, len(task.records), True, hashlib.sha256(raw).hexdigest(), total)


def build_shard(task: ShardTask) -> ShardResult:
    """Keep shard ``task.name`` if it is intact and current, else decode its samples and write it.

    Idempotent: running it twice, or on two workers at once, leaves the same bytes.

    Raises
    ------
    DicomError, ContourError
        A file that became unreadable since the scan (the message names it).
    """
    if task.head["dicontour_version"] != _version():
        # A worker with another version could decode differently under the same label.
        raise CacheError(
            f"this worker runs dicontour {_version()}, the build was planned with "
            f"{task.head['dicontour_version']}: install the same version on every worker"
        )
    kept = _kept(task)
    if kept is not None:
        return kept
    try:
        return _write_shard(task)
    except DicontourError:
        raise
    except OSError as exc:  # in words, naming the file: this travels back from a worker
        raise _store.cache_error(task.cache, exc) from exc


def _write_shard(task: ShardTask) -> ShardResult:
    cache, folder = task.cache, shard_folder(task.name)
    # The old manifest goes first: until the new one lands, the shard reads as unfinished.
    _layout.remove_file(cache, f"{folder}/{MANIFEST}")
    count, (rows, columns) = len(task.records), task.shape
    images = np.empty((count, rows, columns), np.float32)
    masks = np.zeros((count, 2, rows, columns), bool)
    has = np.zeros((count, 2), bool)
    for j, record in enumerate(task.records):
        if task.polygons is not None:
            _decode_into(task, j, record, images[j], masks[j], has[j])
            continue
        sample = load_sample(task.root, record)
        if sample.image.shape != task.shape:
            raise CacheError(
                f"{record.dicom}: image is {sample.image.shape}, the scan said {task.shape}"
            )
        images[j] = sample.image
        for channel, mask in enumerate((sample.i_mask, sample.o_mask)):
            if mask is not None:
                masks[j, channel] = mask
                has[j, channel] = True
    arrays = {
        name: _store.save_array(cache, f"{folder}/{name}", array)
        for name, array in zip(ARRAYS, (images, masks, has), strict=True)
    }
    data = _store.dumps({**task.head, "arrays": arrays})
    _store.write_bytes(cache, f"{folder}/{MANIFEST}", data)
    total = sum(entry["bytes"] for entry in arrays.values())
    return ShardResult(task.name, count, False, hashlib.sha256(data).hexdigest(), total)


def _decode_into(
    task: ShardTask,
    j: int,
    record: SampleRecord,
    image: np.ndarray,
    masks: np.ndarray,
    has: np.ndarray,
) -> None:
    """Decode ``task.records[j]`` straight into its rows of the shard's arrays.

    From the points the scan read and checked (index.read_polygon) for this
    record: what load_sample would read and check again.  The pixels are read
    into ``image`` and the polygons rasterised into ``masks`` (one copy less
    each than decoding into new arrays).  A file whose shape changed since the
    scan raises DicomError (read_dicom_pixels checks it against the scan's header).
    """
    assert task.polygons is not None
    read_image(task.root, record, out=image)
    points = task.polygons[j]
    for channel, kind in enumerate(("i", "o")):
        if kind in points:
            polygon_to_mask(points[kind], record.shape, out=masks[channel])
            has[channel] = True


def plan_shards(
    records: Sequence[SampleRecord], shard_size: int
) -> list[tuple[tuple[int, int], list[int]]]:
    """Cut record positions into shards of one shape each, at most ``shard_size`` long.

    Examples
    --------
    >>> from types import SimpleNamespace as R
    >>> plan_shards([R(shape=(2, 2)), R(shape=(3, 3)), R(shape=(2, 2))], 5)
    [((2, 2), [0, 2]), ((3, 3), [1])]
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size!r}")
    by_shape: dict[tuple[int, int], list[int]] = {}
    for k, record in enumerate(records):
        height, width = record.shape
        by_shape.setdefault((height, width), []).append(k)
    return [
        (shape, positions[start : start + shard_size])
        for shape, positions in by_shape.items()
        for start in range(0, len(positions), shard_size)
    ]


def _sample_entry(record: SampleRecord, files: dict[str, str]) -> dict[str, Any]:
    paths = [p for p in (record.dicom, record.i_contour, record.o_contour) if p]
    return {
        "patient_id": record.patient_id,
        "original_id": record.original_id,
        "slice": record.slice,
        "dicom": record.dicom,
        "i_contour": record.i_contour,
        "o_contour": record.o_contour,
        "files": {path: files.get(path, "missing") for path in paths},
    }


def _shard_head(
    shape: tuple[int, int], records: Sequence[SampleRecord], files: dict[str, str]
) -> dict[str, Any]:
    """A shard's manifest without its checksums (see :class:`ShardTask`)."""
    return {
        "format": FORMAT + "-shard",
        "format_version": FORMAT_VERSION,
        "dicontour_version": _version(),
        "shape": list(shape),
        "count": len(records),
        "samples": [_sample_entry(record, files) for record in records],
    }


def _digest(head: dict[str, Any]) -> str:
    return hashlib.sha256(_store.dumps(head)).hexdigest()


@dataclass(frozen=True)
class _PatientTask:
    """One patient's scan, as a task of the streamed build (see :class:`_Streamed`)."""

    scanner: Callable[[Patient], PatientScan]
    patient: Patient

    @property
    def label(self) -> str:
        return self.patient.label


def _run_task(task: _PatientTask | ShardTask) -> PatientScan | ShardResult:
    """The streamed build's one task function: a patient's scan or a shard."""
    if isinstance(task, ShardTask):
        return build_shard(task)
    return task.scanner(task.patient)


class _Streamed:
    """A mapper for :func:`scan` that builds shards while the scan runs.

    The patients' scans and the shards of the first image shape run as tasks
    of one engine: as soon as ``shard_size`` records of that shape have arrived
    in index order, their shard is cut and built from the scan's own checked
    points (each DICOM is then read once more for its pixels, at the offset
    its header recorded; no contour is read twice).  These are exactly the
    shards :func:`plan_shards` plans first, under the same names (the first
    shape's, numbered from 0, in index order); ``_build`` checks each against
    the plan before sealing.  Held here: the records and points of the one
    shard being filled (under ``shard_size`` records), and the tasks cut but
    not yet sent.  Shards of other shapes are numbered after all of the first
    shape's, so they are built after the scan, reading their contours again.
    """

    def __init__(
        self,
        where: Location,
        store: Location,
        shard_size: int,
        files: dict[str, str],
        engine: Engine,
        bar: Any,
    ) -> None:
        self.where, self.store, self.shard_size, self.files = where, store, shard_size, files
        self.engine, self.bar = engine, bar
        self.shape: tuple[int, int] | None = None
        self.records: list[SampleRecord] = []
        self.points: list[dict[str, np.ndarray]] = []
        self.cut = 0  # shards of the first shape cut so far
        self.ready: deque[ShardTask] = deque()
        self.built: dict[str, ShardResult] = {}
        self.heads: dict[str, str] = {}  # the digest of each built shard's head

    def map(
        self, fn: Callable[[Patient], PatientScan], patients: Iterable[Patient]
    ) -> Iterator[PatientScan]:
        """Scan ``patients`` with ``fn``, yielding the results in order; build shards meanwhile."""
        scans: dict[int, int] = {}  # task position -> patient number

        def tasks() -> Iterator[_PatientTask | ShardTask]:
            position = 0
            for number, patient in enumerate(patients):
                while self.ready:  # a full shard goes first: its points are freed sooner
                    yield self.ready.popleft()
                    position += 1
                scans[position] = number
                yield _PatientTask(fn, patient)
                position += 1

        arrived: dict[int, PatientScan] = {}
        following = 0
        for position, result in self.engine.run(_run_task, tasks()):
            if isinstance(result, ShardResult):
                self.built[result.name] = result
                if self.bar is not None:
                    self.bar.update(result.count)
                continue
            arrived[scans.pop(position)] = result
            while following in arrived:
                scanned = arrived.pop(following)
                following += 1
                self._take(scanned)
                yield scanned

    def _take(self, scanned: PatientScan) -> None:
        """Add a patient's records of the first shape to the shard being filled."""
        points = scanned.polygons or []
        scanned.polygons = None
        for record, polygons in zip(scanned.records, points, strict=True):
            if self.shape is None:
                self.shape = record.shape
            if record.shape != self.shape:
                continue
            self.records.append(record)
            self.points.append(polygons)
            if len(self.records) == self.shard_size:
                self.ready.append(self._task())

    def _task(self) -> ShardTask:
        """The shard of the records held, which are then released."""
        assert self.shape is not None
        name, head = f"{self.cut:06d}", _shard_head(self.shape, self.records, self.files)
        task = ShardTask(
            self.where,
            self.store,
            name,
            self.shape,
            tuple(self.records),
            head,
            tuple(self.points),
        )
        self.heads[name] = _digest(head)
        self.cut += 1
        self.records, self.points = [], []
        return task

    def left(self) -> dict[str, ShardTask]:
        """The tasks cut but not sent, and the last (partial) shard of the first shape."""
        if self.records:
            self.ready.append(self._task())
        left = {task.name: task for task in self.ready}
        self.ready.clear()
        return left


@dataclass(frozen=True)
class BuildReport(CacheReport):
    """What :func:`build_cache` did: ``cache``, ``samples`` and ``shards``
    (see :class:`CacheReport`), then:

    Attributes
    ----------
    built, reused : int
        Shards written by this run, and shards kept from an earlier run.
    up_to_date : bool
        The cache was complete and current: nothing was done.
    seconds : dict of str to float
        Time spent listing the dataset (``list``), scanning it (``scan``),
        checking the checksums of a complete cache (``check``), writing
        shards (``build``) and in total.
    problems : dict of str to int
        The scan's problems by severity.
    """

    built: int
    reused: int
    up_to_date: bool
    seconds: dict[str, float]
    problems: dict[str, int]


def _is_a_cache(store: Location, found: _layout.Audit) -> bool:
    """Whether a folder is a cache (or an unfinished one), judged before touching it.

    Names of the scheme alone are not enough: a user's own ``manifest.json``
    or ``has.npy`` must not pass.  A cache has a shards folder, or a
    dicontour manifest, or nothing at all but a build's lock and temporaries.
    """
    if _store.exists(store, SHARDS):
        return True
    if MANIFEST in found.files:
        try:
            return _store.read_json(store, MANIFEST).get("format") == FORMAT
        except (CacheError, AttributeError):
            return False
    return not found.problems and all(
        name == LOCK or _layout.is_temporary(name) for name in found.files
    )


def _check_destination(store: Location) -> _layout.Audit:
    """Refuse a destination holding anything the cache did not write; return its audit."""
    found = _layout.audit(store)
    if not _is_a_cache(store, found):
        held = sorted(
            {p.split(":", 1)[0].split("/")[0] for p in found.problems}
            | {name.split("/")[0] for name in found.files}
        )
        raise CacheError(
            f"{store.redacted()}: not empty and not a dicontour cache (it holds "
            f"{', '.join(held[:3])}{' ...' if len(held) > 3 else ''}); "
            "give a new or empty folder"
        )
    if not found.problems:
        return found
    listed = "; ".join(found.problems[:5])
    more = f"; and {len(found.problems) - 5} more" if len(found.problems) > 5 else ""
    raise CacheError(
        f"{store.redacted()}: holds what dicontour did not write ({listed}{more}); a build "
        "never removes or follows those: remove them, or give another folder"
    )


def _top_manifest(
    where: Location,
    index: Index,
    shard_size: int,
    dataset: Fingerprint,
    plan: list[tuple[tuple[int, int], list[int]]],
) -> dict[str, Any]:
    records = index.samples
    summary = {key: value for key, value in index.summary.items() if key != "per_patient"}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dicontour_version": _version(),
        # The same string for every run over the same root (location() made a local path
        # absolute), so a resumed build stays byte-identical; no credentials in it.
        "source": where.redacted(),
        "options": {"shard_size": shard_size},
        "dataset": {"sha256": dataset.sha256, "files": dataset.files},
        "samples": len(records),
        "i_masks": sum(r.i_contour is not None for r in records),
        "o_masks": sum(r.o_contour is not None for r in records),
        "shards": [
            {"name": f"{n:06d}", "count": len(positions), "shape": list(shape)}
            for n, (shape, positions) in enumerate(plan)
        ],
        "scan": summary,
    }


def _complete(
    store: Location, planned: dict[str, Any], found: _layout.Audit, engine: Engine
) -> bool:
    """Whether ``store`` already holds exactly the planned cache, sealed, every checksum intact."""
    if MANIFEST not in found.files:
        return False
    try:
        current = _store.read_json(store, MANIFEST)
        stripped = {k: v for k, v in current.items() if k not in ("has", "fingerprint")}
        stripped["shards"] = [
            {k: v for k, v in s.items() if k != "manifest_sha256"} for s in current["shards"]
        ]
        if stripped != planned or found.shards != {e["name"] for e in planned["shards"]}:
            return False  # a shard missing, or one left over from another plan
        if any(_layout.is_temporary(name) for name in found.files):
            return False  # a killed build's leftovers: the build removes them
        checks = [ShardCheck.of(store, entry) for entry in current["shards"]]
    except (CacheError, AttributeError, KeyError, TypeError, ValueError):
        return False
    if check_small_files(store, current)[0]:
        return False
    # Every byte once: a flipped bit in a shard must make the build rebuild it, not
    # call the cache up to date (0.02 s for the real data's 38 MB, ~20% of this check).
    results = list(engine.run(check_shard, checks))  # all of them: no task left running
    return not any(failures for _, (failures, _) in results)


def build_cache(
    root: str | Location,
    cache: str | Location,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    engine: Engine | None = None,
    progress: bool = False,
) -> BuildReport:
    """Decode every sample of a dataset once into a cache of ``.npy`` shards.

    Parameters
    ----------
    root : str or Location
        The dataset: a folder or an fsspec URL (``s3://bucket/data``).
    cache : str or Location
        Where to write the cache: a new or empty folder, an earlier cache of
        this dataset (brought up to date, keeping intact current shards), or
        the folder of a build that was interrupted (resumed).
    shard_size : int
        Samples per shard (each shard is one task and one memory-sized unit:
        ``shard_size * H * W * 6`` bytes, 100 MB for 256 samples of 256x256).
    engine : Engine, optional
        Where the scan (one task per patient) and the shards (one task per
        shard) run.  By default ``LocalEngine()``, one worker process per CPU
        (``os.cpu_count()``, closed on return), for a dataset of at least
        :data:`PARALLEL_CONTOURS` contour files; a smaller one is built in
        this process (the pool's forkserver costs about half a CPU-second to
        start, once per process: more than such a build gains).
        ``LocalEngine(workers=0)`` always builds in this process.  See
        :mod:`dicontour.engine`.
    progress : bool
        Progress bars on stderr.

    Returns
    -------
    BuildReport

    Raises
    ------
    CacheError
        ``cache`` is a link or a file, or holds anything but the cache's own
        files (a folder of other files, a symbolic link anywhere in it, a
        folder where the cache keeps a file): nothing is written or removed
        then, and the message names what is in the way.  Or another build of
        this cache is running (the message names its pid and host), the
        dataset has no labelled slice, or writing failed (said in words,
        naming the file).
    LayoutError
        ``root`` is not a dataset.
    DicomError, ContourError
        A file became unreadable between the scan and its decoding.

    Notes
    -----
    The dataset must not change during a build.  Its files are listed before
    the scan, so a change made during the build shows as a stale cache later.

    Examples
    --------
    >>> report = build_cache("final_data", "cache", shard_size=64)   # doctest: +SKIP
    >>> report.samples, report.shards, report.built                  # doctest: +SKIP
    (96, 2, 2)
    """
    where, store = location(root), location(cache)
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size!r}")
    try:
        _check_destination(store)  # before writing anything there, even the lock
        _make_cache_folder(store)
        with build_lock(store):
            return _build(where, store, shard_size, engine, progress)
    except DicontourError:
        raise
    except OSError as exc:  # in words, naming the file (not "FileExistsError: [Errno 17]")
        raise _store.cache_error(store, exc) from exc


def _make_cache_folder(store: Location) -> None:
    store.make_root()
    _layout.check_folder(store)  # made by someone else as a link in between


def _default_engine(files: dict[str, str]) -> LocalEngine:
    """One worker process per CPU for a dataset large enough to gain from them, else none."""
    contours = sum(path.startswith("contourfiles/") for path in files)
    return LocalEngine() if contours >= PARALLEL_CONTOURS else LocalEngine(workers=0)


def _build(
    where: Location, store: Location, shard_size: int, given: Engine | None, progress: bool
) -> BuildReport:
    found = _check_destination(store)  # again, now that no other build can change it
    clock = time.perf_counter()
    # Before any work: workers that do not see ROOT and CACHE as this process does
    # would scan empty patients and write shards that only they can see.  (The
    # default engine's workers are processes of this machine: nothing to check.)
    if given is not None:
        check_root(given, where)
        check_cache(given, store, f".{MANIFEST}.tmp-{secrets.token_hex(8)}")
    files = list_files(where)
    dataset = fingerprint(files)
    listed = time.perf_counter()
    engine = given if given is not None else _default_engine(files)
    bar = None
    if progress:
        from tqdm import tqdm  # not a cycle: only when a bar is shown (slow to import)

        bar = tqdm(desc="cache", unit="sample", leave=False)
    try:
        return _scan_and_build(
            where, store, shard_size, engine, progress, found, files, dataset, bar, clock, listed
        )
    finally:
        if bar is not None:
            bar.close()
        if given is None:
            engine.close()


def _scan_and_build(
    where: Location,
    store: Location,
    shard_size: int,
    engine: Engine,
    progress: bool,
    found: _layout.Audit,
    files: dict[str, str],
    dataset: Fingerprint,
    bar: Any,
    clock: float,
    listed: float,
) -> BuildReport:
    # A cache not sealed (new, or a build interrupted) is built while the scan runs.
    # A sealed one may be current: it is checked after the scan and left untouched
    # then, so it is never unsealed by a run that has nothing to do.  (DaskEngine
    # keeps the two phases: its scheduler sees one kind of task at a time.)
    streamed = None
    if MANIFEST not in found.files and isinstance(engine, LocalEngine):
        for name in (HAS, FINGERPRINT):
            _layout.remove_file(store, name)
        streamed = _Streamed(where, store, shard_size, files, engine, bar)
    index = scan(
        where,
        progress=progress,
        mapper=streamed.map if streamed else engine.map,
        keep_polygons=streamed is not None,
    )
    scanned = time.perf_counter()
    if not len(index):
        raise CacheError(
            f"{where.redacted()}: no labelled slice to cache "
            f"({index.summary['dicoms']} DICOMs, {len(index.problems)} problems)"
        )
    plan = plan_shards(index.samples, shard_size)
    planned = _top_manifest(where, index, shard_size, dataset, plan)
    problems = dict(index.summary["severity"])

    complete = _complete(store, planned, found, engine)
    checked = time.perf_counter()
    if complete:
        return BuildReport(
            store.redacted(),
            len(index),
            len(plan),
            0,
            len(plan),
            True,
            {
                "list": listed - clock,
                "scan": scanned - listed,
                "check": checked - scanned,
                "build": 0.0,
                "total": checked - clock,
            },
            problems,
        )

    # Unseal first: from here until the new manifest lands, the cache reads as unfinished.
    for name in (MANIFEST, HAS, FINGERPRINT):
        _layout.remove_file(store, name)
    results = dict(streamed.built) if streamed else {}
    left = streamed.left() if streamed else {}
    if bar is not None:
        bar.total = len(index)
        bar.refresh()
    # A generator: the engine pulls tasks as it has room, so the sample entries of
    # only a few shards exist at a time, however many shards there are.
    tasks = (
        _planned_task(where, store, name, shape, positions, index, files, streamed, left)
        for name, (shape, positions) in zip(
            (entry["name"] for entry in planned["shards"]), plan, strict=True
        )
    )
    for _, result in engine.run(build_shard, (task for task in tasks if task is not None)):
        results[result.name] = result
        if bar is not None:
            bar.update(result.count)
    built = time.perf_counter()
    _check_results(store, planned, results)

    names = {entry["name"] for entry in planned["shards"]}
    after = _layout.audit(store)
    for name in sorted(after.shards - names):
        _layout.remove_shard(store, name)
    for relative in after.files:
        if _layout.is_temporary(relative):  # left by a killed build
            _layout.remove_file(store, relative)
    has = np.array(
        [[r.i_contour is not None, r.o_contour is not None] for r in index.samples], bool
    )[np.concatenate([positions for _, positions in plan])]
    has_entry = _store.save_array(store, HAS, has)
    fingerprint_bytes = _store.dumps(dataset.to_dict())
    _store.write_bytes(store, FINGERPRINT, fingerprint_bytes)
    manifest = dict(planned)
    manifest["shards"] = [
        {**entry, "manifest_sha256": results[entry["name"]].manifest_sha256}
        for entry in planned["shards"]
    ]
    manifest["has"] = has_entry
    manifest["fingerprint"] = {"sha256": hashlib.sha256(fingerprint_bytes).hexdigest()}
    _store.write_bytes(store, MANIFEST, _store.dumps(manifest))
    reused = sum(r.reused for r in results.values())
    return BuildReport(
        store.redacted(),
        len(index),
        len(plan),
        len(plan) - reused,
        reused,
        False,
        {
            "list": listed - clock,
            "scan": scanned - listed,
            "check": checked - scanned,
            "build": built - checked,
            "total": time.perf_counter() - clock,
        },
        problems,
    )


def _planned_task(
    where: Location,
    store: Location,
    name: str,
    shape: tuple[int, int],
    positions: list[int],
    index: Index,
    files: dict[str, str],
    streamed: _Streamed | None,
    left: dict[str, ShardTask],
) -> ShardTask | None:
    """The task of planned shard ``name``; None when it was built while scanning.

    A shard cut while scanning must be the planned one, sample for sample:
    else the build stops before sealing anything.
    """
    records = tuple(index.samples[k] for k in positions)
    head = _shard_head(shape, records, files)
    if streamed is not None and name in streamed.heads:
        if streamed.heads[name] != _digest(head):
            raise CacheError(
                f"{store.redacted()}: shard {name} was cut while scanning with other "
                "samples than planned after it; not sealed (a bug: please report it)"
            )
        if name in streamed.built:
            return None
        return left[name]
    return ShardTask(where, store, name, shape, records, head)


def _check_results(
    store: Location, planned: dict[str, Any], results: dict[str, ShardResult]
) -> None:
    """Refuse to seal unless this process sees every shard as the worker that wrote it did.

    Reads each shard's manifest and sizes its arrays (not their bytes): a worker
    that wrote to a disk this process does not see fails here, before the
    top-level manifest would call the cache complete.
    """
    failures = []
    for entry in planned["shards"]:
        result = results.get(entry["name"])
        if result is None:
            failures.append(f"{shard_folder(entry['name'])}: no task reported it")
            continue
        check = ShardCheck.of(store, {**entry, "manifest_sha256": result.manifest_sha256})
        failures += check_written(check)
    if not failures:
        return
    listed = "; ".join(failures[:3])
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    raise CacheError(
        f"{store.redacted()}: the workers reported shards that this process does not see "
        f"({listed}{more}); not sealed. The workers must write CACHE where this process reads "
        "it: the same shared filesystem mounted at the same path on every machine, or an "
        "object store URL (s3://bucket/prefix)"
    )
