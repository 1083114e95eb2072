"""``BatchLoader``: training batches from worker processes, exact, reproducible, bounded.

How a batch travels
-------------------
The loader owns ``prefetch`` batch slots in one shared-memory segment and
``workers`` persistent processes.  For each free slot it sends one worker a
task (slot, batch number, sample indices).  The worker reads the samples into
the slot and replies with (slot, batch number, count, failures).  The loader
delivers batches strictly in order, either copying each out of its slot into
fresh arrays that belong to the caller (``copy=True``) and freeing the slot at
once, or lending the slot itself as read-only views (``copy=False``); a lent
slot goes back to work once no array viewing it is left.  At most ``prefetch``
batches are in flight or waiting, so memory is ``prefetch x batch bytes`` (one
slot more with ``copy=False``) plus the compact source, whatever the dataset
size.

Each iteration has a token.  Tasks carry it; results of an abandoned
iteration (a ``break``, a superseded iterator, ``load_state_dict``) are
recognised by it and only give their slot back.  Workers skip tasks older than
the token the loader publishes in the segment's control block.
"""

from __future__ import annotations

import gc
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..batch import Batch, BatchMeta
from ..cache import open_cache
from ..errors import ContourError, DicomError, LoaderError
from ..index import Index
from ..problems import Problem, problem
from ..targets import Target
from .index_source import IndexSource
from .options import LoaderOptions, OnError
from .order import batch_count, epoch_order, rank_share, samples_per_rank
from .pool import (
    DEFAULT_START_METHOD,
    InlinePool,
    ProcessPool,
    RemoteTraceback,
    StartMethod,
)
from .pool import START_METHODS as START_METHODS  # re-exported
from .prepare import Normalize
from .slots import SlotLayout
from .source import SampleSource, Transform
from .state import VERSION, check_state
from .stats import EpochStats, Meter
from .worker import TRANSFORM_FAILED, Failure, Result, Task, WorkerConfig

log = logging.getLogger("dicontour.loader")


#: The most shared memory a loader's batch slots may take: (prefetch + 1) slots of
#: one batch each must fit.  8 GiB is far above any sensible batch (8 x 256 x 256
#: images and masks are 2.6 MB) and below what a training machine has; the check
#: runs before anything is allocated, so a typo in batch_size or size fails at once
#: with the computed size instead of a MemoryError (or a SIGBUS when /dev/shm fills).
MAX_BATCH_BYTES = 8 * 2**30


def _shm_free() -> int | None:
    """Free bytes in /dev/shm (where shared-memory segments live on Linux), if it exists."""
    try:
        stat = os.statvfs("/dev/shm")
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize


def _check_memory(layout: SlotLayout, workers: int) -> None:
    """Refuse slots over :data:`MAX_BATCH_BYTES` or the free space of /dev/shm."""
    total = layout.slots * layout.batch_bytes
    shape = f"{layout.slots} slots x {layout.batch_size} x {layout.height} x {layout.width}"
    if total > MAX_BATCH_BYTES:
        raise LoaderError(
            f"the batch slots would take {total / 2**30:,.1f} GiB ({shape}, "
            f"{layout.batch_bytes:,} bytes per batch), over the loader's limit "
            f"MAX_BATCH_BYTES = {MAX_BATCH_BYTES / 2**30:g} GiB; lower batch_size, size or prefetch"
        )
    free = _shm_free() if workers else None
    if free is not None and total > free:
        raise LoaderError(
            f"the batch slots need {total / 2**20:,.1f} MiB of shared memory ({shape}), "
            f"/dev/shm has {free / 2**20:,.1f} MiB free; lower batch_size, size or prefetch, "
            "or give the machine (container) more shared memory"
        )


@dataclass
class _Ahead:
    """The next epoch's batches already sent while the current one finished."""

    token: int
    epoch: int
    order: np.ndarray
    sent: int = 0
    ready: dict[int, Result] = field(default_factory=dict)

    def batch(self, number: int, size: int) -> np.ndarray:
        return self.order[number * size : (number + 1) * size]


class BatchLoader:
    """Batches of (images, masks) for training, loaded by worker processes.

    ``for images, masks in loader:`` runs one epoch; each new ``for`` runs the
    next epoch in a new order.  Every sample that has the ``target`` contour(s)
    is delivered exactly once per epoch (on one rank).

    Parameters
    ----------
    source : Index or SampleSource
        What to load: an :class:`~dicontour.Index` (wrapped in an
        :class:`IndexSource`) or any object following the
        :class:`SampleSource` protocol.
    batch_size : int
        Samples per batch, B.
    target : {"i", "o", "both"}
        The mask: the i-contour's, the o-contour's, or both as (B, 2, H, W)
        [i, o].  Only samples that have the contour(s) take part.
    shuffle : bool
        A new random order every epoch; False keeps the source order.
    seed : int
        The order of epoch e is ``default_rng([seed, e]).permutation(n)``: the
        same for any worker count and timing.
    workers : int
        Worker processes; 0 loads in the calling process (for debugging).
    prefetch : int
        Batch slots: how many batches may be loading or waiting at once.  At
        least ``workers`` keeps every worker busy.
    drop_last : bool
        Drop the last batch of an epoch when it would be short.
    on_error : {"skip", "raise"}
        A file that became unreadable after the scan: ``"skip"`` leaves the
        sample out (the batch is one shorter), logs a warning on the
        ``dicontour.loader`` logger and records it in :attr:`problems`;
        ``"raise"`` raises its ``DicomError`` or ``ContourError`` in the loop.
    normalize : {None, "zscore", "percentile"}
        Per-image intensity normalisation (see :func:`~dicontour.loader.prepare.normalize`).
    size : (int, int), optional
        (H, W) to centre-crop or zero-pad every image and mask to.  Without it
        all images must share one shape, checked here.
    timeout : float
        Seconds any wait may last (a batch, a worker start) before it raises
        :class:`~dicontour.LoaderError` naming what it waited for.
    rank, world_size : int
        For distributed training: this process reads rank ``rank``'s share of
        each epoch (see :func:`~dicontour.loader.order.rank_share`); every rank
        gets the same number of batches.
    start_method : {"fork", "spawn", "forkserver"}
        How workers start.  ``"fork"`` (the default on Linux, ``"spawn"``
        elsewhere) copies this process: workers are ready in milliseconds and
        never re-import the training script (nor torch with it); they run
        torch, if loaded, with one thread.  ``"spawn"`` gives each worker a
        fresh interpreter that re-imports the main module (which then needs an
        ``if __name__ == "__main__":`` guard).  Either way workers get a
        pickled copy of the source.  Measurements: ``docs/loader.md``.
    copy : bool
        True (default): each batch is copied out of shared memory into arrays
        that belong to the caller.  False: each batch is a pair of read-only
        views of its shared-memory slot, with no copy (see Notes).
    channels : bool
        False (default): images (B, H, W), masks (B, H, W) or (B, 2, H, W) for
        ``"both"``.  True: a channel axis as frameworks expect, images
        (B, 1, H, W) and masks (B, C, H, W), C = 1 for ``"i"``/``"o"``, 2 for
        ``"both"`` [i, o] (a view: no copy).
    transform : callable, optional
        ``transform(image, mask, rng) -> (image, mask)``, run on each sample in
        the workers after ``normalize`` and before the ``size`` crop/pad: image
        float32 (H, W), mask bool (C, H, W), ``rng`` a
        ``numpy.random.Generator`` made from ``[seed, epoch, sample index]``,
        so augmented epochs are identical for any ``workers`` and after a
        resume.  Built-in ones and MONAI/TorchIO adapters: :mod:`dicontour.augment`.
        It must be picklable (checked here when ``workers > 0``); one that
        raises or returns another kind of array is a sample problem
        (``transform-failed``), handled by ``on_error``.

    Attributes
    ----------
    problems : list of Problem
        Samples left out with ``on_error="skip"``, once per distinct file and
        reason, across epochs.
    skipped : list of int
        Source indices left out so far in the current (or last) epoch.
    stats : EpochStats
        Telemetry of the current (or last) epoch: samples/s, the time the loop
        waited for data, first-batch latency, restarts, skipped samples.
    history : list of EpochStats
        The stats of every epoch iterated so far (finished or broken off).

    Raises
    ------
    LoaderError
        No sample has the target contour(s), the epoch has no batch, images
        differ in shape and ``size`` is not given, the batch slots would
        exceed :data:`MAX_BATCH_BYTES` (or /dev/shm's free space), or
        ``transform`` cannot be pickled for the workers.
    ValueError
        An option out of range (the message names it).

    Notes
    -----
    With ``copy=True`` each batch is copied out of its shared-memory slot
    (0.06 ms for 8 x 256 x 256 in a quiet process, 0.3-0.5 ms while workers
    load the next batches on a 2-core machine), so the arrays belong to the
    caller and stay valid forever.

    With ``copy=False`` a batch is a view of its slot: read-only (writing
    raises ``ValueError``; copy it with ``np.array(images)`` to modify or
    keep it), valid at least until the next batch is requested.  The slot
    goes back to the workers only once no array viewing it is left (the
    batch, its slices, tensors made with ``torch.from_numpy``), so a view is
    never overwritten while it is referenced, not even after the epoch ends
    or the loader is closed.  The loader has ``prefetch + 1`` slots; holding
    views of more batches than one leaves fewer to load into, and holding
    all of them raises :class:`~dicontour.LoaderError` instead of waiting
    forever.

    A batch is shorter than ``batch_size`` only at the end of an epoch or when
    samples were skipped; it can even be empty (every sample in it failed), so
    that an epoch always has ``len(loader)`` batches (ranks stay in step).

    An epoch ends when its loop ends, breaks or raises: the next ``for`` starts
    the next epoch.  To resume a crashed job mid-epoch, save
    :meth:`state_dict` with your checkpoint and pass it to
    :meth:`load_state_dict`.

    Workers start at the first iteration and stay until :meth:`close` (or the
    end of a ``with`` block, garbage collection, interpreter exit).  Once all
    of an epoch's batches are on their way, the workers start on the next
    epoch's.  Use a loader from one thread.  Design notes and measurements:
    ``docs/loader.md``.

    Examples
    --------
    >>> index = dicontour.scan("final_data")                    # doctest: +SKIP
    >>> with dicontour.BatchLoader(index, batch_size=8) as loader:  # doctest: +SKIP
    ...     for epoch in range(10):
    ...         for images, masks in loader:
    ...             images.shape, masks.dtype       # (8, 256, 256), bool
    >>> loader = dicontour.BatchLoader(index, channels=True)    # doctest: +SKIP
    >>> for batch in loader:                                    # doctest: +SKIP
    ...     batch.images.shape, batch.masks.shape, batch.meta.case_id[0]
    ((8, 1, 256, 256), (8, 1, 256, 256), 'SCD0000101_0048')
    """

    def __init__(
        self,
        source: Index | SampleSource,
        batch_size: int = 8,
        *,
        target: Target = "i",
        shuffle: bool = True,
        seed: int = 0,
        workers: int = 2,
        prefetch: int = 4,
        drop_last: bool = False,
        on_error: OnError = "skip",
        normalize: Normalize = None,
        size: tuple[int, int] | None = None,
        timeout: float = 120.0,
        rank: int = 0,
        world_size: int = 1,
        start_method: StartMethod = DEFAULT_START_METHOD,
        copy: bool = True,
        channels: bool = False,
        transform: Transform | None = None,
    ) -> None:
        self.options = LoaderOptions(
            batch_size=batch_size,
            target=target,
            shuffle=shuffle,
            seed=seed,
            workers=workers,
            prefetch=prefetch,
            drop_last=drop_last,
            on_error=on_error,
            normalize=normalize,
            size=size,
            timeout=timeout,
            rank=rank,
            world_size=world_size,
            start_method=start_method,
            copy=copy,
            channels=channels,
            transform=transform,
        )
        options = self.options
        if isinstance(source, Index):
            source = IndexSource(source)
        elif not isinstance(source, SampleSource):
            raise TypeError(
                f"source must be an Index or a SampleSource; got {type(source).__name__}"
            )
        self.source: SampleSource = source
        self.batch_size, self.seed = options.batch_size, options.seed
        self.workers, self.prefetch = options.workers, options.prefetch
        self.world_size, self.rank = options.world_size, options.rank
        target = self.target = options.target
        self.shuffle, self.drop_last = options.shuffle, options.drop_last
        self.on_error: OnError = options.on_error
        normalize = self.normalize = options.normalize
        size = options.size
        self.timeout, self.start_method = options.timeout, options.start_method
        self.copy, self.channels = options.copy, options.channels
        transform = self.transform = options.transform
        self._meta = getattr(source, "meta", None)

        # Source indices as int32 where they fit: this array and the epoch orders
        # taken from it (current and next) are all the loader keeps per sample.
        eligible = np.flatnonzero(np.asarray(source.has(target), dtype=bool))
        self._eligible = eligible.astype(np.int32) if len(source) < 2**31 else eligible
        if not len(self._eligible):
            raise LoaderError(
                f"no sample has the {target}-contour{'s' if target == 'both' else ''} "
                f"({len(source)} samples in {source!r})"
            )
        self.shape = size or self._common_shape()
        self.samples_per_epoch = samples_per_rank(
            len(self._eligible), world_size=self.world_size, drop_last=self.drop_last
        )
        self._batches = batch_count(
            self.samples_per_epoch, self.batch_size, drop_last=self.drop_last
        )
        if not self._batches:
            raise LoaderError(
                f"an epoch has no batch: {self.samples_per_epoch} samples per epoch "
                f"(rank {self.rank} of {self.world_size}), batch_size={self.batch_size}, "
                "drop_last=True"
            )
        layout = SlotLayout(
            # With copy=False, one slot more: the one the caller is looking at.
            slots=self.prefetch + (0 if self.copy else 1),
            # No batch holds more than an epoch's samples: batch_size=10**9 is one batch.
            batch_size=min(self.batch_size, self.samples_per_epoch),
            height=self.shape[0],
            width=self.shape[1],
            channels=2 if target == "both" else 0,
        )
        _check_memory(layout, self.workers)
        self._config = WorkerConfig(
            target=target,
            normalize=normalize,
            layout=layout,
            fit=size is not None,
            transform=transform,
            seed=self.seed,
        )
        self._epoch = 0
        self._position = 0
        self._token = 0
        self._active: int | None = None
        self._ahead: _Ahead | None = None
        self._pool: ProcessPool | InlinePool | None = None
        self._finalizer: weakref.finalize | None = None
        self._closed = False
        self._seen: set[tuple[str, str, str]] = set()
        self.problems: list[Problem] = []
        self.skipped: list[int] = []
        self.history: list[EpochStats] = []
        self._meter: Meter | None = None

    @classmethod
    def from_cache(
        cls,
        cache: Any,
        batch_size: int = 8,
        *,
        root: Any = None,
        checksums: bool = True,
        **options: Any,
    ) -> BatchLoader:
        """A loader over a preprocessed cache (a folder or URL made by ``dicontour cache build``).

        A cache whose dataset changed since the build refuses to open: it is
        checked against ``root`` if given, else against the dataset root the
        build recorded (served with a logged warning where that root cannot be
        reached); ``root=False`` skips the check (:func:`dicontour.cache.open_cache`).
        A damaged cache refuses to open too, naming the damaged files: every
        byte is checked against its sha256 first, unless ``checksums=False``
        (sizes and structure only).
        Every other option is the constructor's, with the same guarantees (``rank``/``world_size``
        included).  The workers copy each sample from the memory-mapped shard
        straight into its shared-memory slot; ``copy=False`` then hands the
        slot over without a second copy (the fastest path, see Notes of
        :class:`BatchLoader`).

        Examples
        --------
        >>> loader = BatchLoader.from_cache("cache", batch_size=8, workers=2)  # doctest: +SKIP
        >>> fast = BatchLoader.from_cache("cache", copy=False)    # doctest: +SKIP
        """
        return cls(open_cache(cache, root=root, checksums=checksums), batch_size, **options)

    def _common_shape(self) -> tuple[int, int]:
        shapes = np.asarray(self.source.shapes(), dtype=np.int64)[self._eligible]
        differ = np.flatnonzero((shapes != shapes[0]).any(axis=1))
        if len(differ):
            first, other = self._eligible[0], self._eligible[differ[0]]
            a, b = shapes[0], shapes[differ[0]]
            raise LoaderError(
                "images differ in shape (H, W): "
                f"{self.source.describe(int(first))} is {a[0]}x{a[1]}, "
                f"{self.source.describe(int(other))} is {b[0]}x{b[1]}; "
                "pass size=(H, W) to centre-crop or pad every image to one shape"
            )
        return int(shapes[0, 0]), int(shapes[0, 1])

    # -- information -------------------------------------------------------

    def __len__(self) -> int:
        """Batches per epoch (on this rank)."""
        return self._batches

    def __repr__(self) -> str:
        return (
            f"BatchLoader({self.source!r}, batch_size={self.batch_size}, "
            f"target={self.target!r}, workers={self.workers}, batches={len(self)}, "
            f"epoch={self._epoch}, closed={self._closed})"
        )

    @property
    def epoch(self) -> int:
        """The epoch the running (or next) iteration delivers."""
        return self._epoch

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (empty before the first iteration)."""
        return list(self._pool.pids) if self._pool is not None else []

    @property
    def restarts(self) -> int:
        """How many dead workers were replaced so far."""
        return self._pool.restarts if self._pool is not None else 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> EpochStats | None:
        """Telemetry of the running epoch, or of the last one; None before the first.

        Examples
        --------
        >>> for images, masks in loader:                         # doctest: +SKIP
        ...     step(images, masks)
        >>> s = loader.stats                                     # doctest: +SKIP
        >>> print(f"{s.samples_per_s:.0f} samples/s, waited {s.wait_s:.2f} s")  # doctest: +SKIP
        """
        return self._meter.snapshot() if self._meter is not None else None

    def order(self, epoch: int) -> np.ndarray:
        """Source indices of ``epoch`` in delivery order, for this rank (a pure function).

        Batch j of the epoch holds ``order(epoch)[j * batch_size : (j + 1) * batch_size]``,
        minus any skipped samples.  int32 (int64 for a source of 2**31 samples or more):
        the loader holds two epochs' orders, the current one and the next.
        """
        positions = epoch_order(
            len(self._eligible), seed=self.seed, epoch=epoch, shuffle=self.shuffle
        )
        share = rank_share(
            positions, rank=self.rank, world_size=self.world_size, drop_last=self.drop_last
        )
        return self._eligible[share[: self._batches * self.batch_size]]

    # -- state -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: epoch and next batch, with the settings that fix the order.

        Examples
        --------
        >>> loader.state_dict()                                  # doctest: +SKIP
        {'version': 1, 'epoch': 3, 'batch': 5, 'seed': 0, ...}
        """
        return {
            "version": VERSION,
            "epoch": self._epoch,
            "batch": self._position,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "n": len(self._eligible),
            "target": self.target,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved :meth:`state_dict`: the next ``for`` starts at its batch.

        Raises
        ------
        LoaderError
            The state is malformed or was saved by a loader with other settings
            (each mismatch is listed as ``key: state ..., loader ...``).
        """
        epoch, batch = check_state(state, self.state_dict(), self._batches)
        self._active = None  # a running iteration may not go on from the old position
        self._ahead = None  # batches started for the old position are wasted
        self._epoch, self._position = epoch, batch

    # -- lifetime ----------------------------------------------------------

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and free the shared memory; safe to call more than once."""
        self._closed = True
        self._active = None
        if self._finalizer is not None:
            self._finalizer()

    def _ensure_pool(self) -> ProcessPool | InlinePool:
        if self._closed:
            raise LoaderError("the loader is closed")
        if self._pool is None or self._pool.closed:
            if self.workers == 0:
                self._pool = InlinePool(self.source, self._config)
            else:
                self._pool = ProcessPool(
                    self.source,
                    self._config,
                    workers=self.workers,
                    start_method=self.start_method,
                    timeout=self.timeout,
                )
            # The finaliser holds the pool, never the loader: it runs when the
            # loader is collected or at interpreter exit, whichever is first.
            self._finalizer = weakref.finalize(self, self._pool.close)
        return self._pool

    # -- iteration ---------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        """One epoch of :class:`Batch` ``(images, masks)`` pairs, from the current position."""
        if self._closed:
            raise LoaderError("the loader is closed")
        if self._active is not None:
            # An iteration still open (kept alive elsewhere) is abandoned.
            self._end_epoch(self._active)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and (ahead.epoch, 0) == (self._epoch, self._position):
            token = ahead.token  # the previous epoch already started this one
        else:
            ahead = None
            self._token += 1
            token = self._token
        self._active = token
        return self._run(token, ahead)

    def _end_epoch(self, token: int) -> None:
        if self._active == token:
            self._active = None
            self._epoch += 1
            self._position = 0

    def _run(self, token: int, ahead: _Ahead | None) -> Iterator[Batch]:
        epoch, start = self._epoch, self._position
        meter = Meter(epoch, start, self.restarts)
        self._meter = meter
        complete = False
        # Once every batch of this epoch is on its way, free slots start the next
        # epoch under a token of its own, so that the workers never idle at an
        # epoch boundary.  The next `for` adopts that work if it starts there.
        upcoming: _Ahead | None = None
        try:
            pool = self._ensure_pool()
            pool.set_token(token)
            order = ahead.order if ahead else self.order(epoch)
            self.skipped = []
            ready: dict[int, Result] = dict(ahead.ready) if ahead else {}
            held = pool.busy_slots() | {result.slot for result in ready.values()}
            idle = [slot for slot in range(self._config.layout.slots) if slot not in held]
            # Slots lent to the caller (copy=False) come back once unreferenced.
            lent = [slot for slot in idle if pool.lent(slot)]
            free = [slot for slot in idle if slot not in lent]
            next_send = ahead.sent if ahead else start
            next_yield = start
            deadline: float | None = None
            restarts = pool.restarts
            while next_yield < self._batches:
                self._check(token)
                if lent:
                    free += [slot for slot in lent if not pool.lent(slot)]
                    lent = [slot for slot in lent if slot not in free]
                # In-process, one task at a time into the slot freed last, and only
                # once the batch ready is delivered (so with copy=False the caller's
                # slot and the one being filled alternate, not three): each slot more
                # in the rotation costs ~6% of the copy, its lines being cold
                # (docs/loader.md, "Warm"), and nothing is gained by queueing.
                while (
                    free
                    and next_send < self._batches
                    and (self.workers or not (pool.busy() or next_yield in ready))
                ):
                    samples = order[next_send * self.batch_size : (next_send + 1) * self.batch_size]
                    pool.submit(Task(token, next_send, free.pop(), samples, epoch=epoch))
                    next_send += 1
                if free and self.workers and upcoming is None:
                    self._token += 1
                    upcoming = _Ahead(self._token, epoch + 1, self.order(epoch + 1))
                while free and upcoming is not None and upcoming.sent < self._batches:
                    samples = upcoming.batch(upcoming.sent, self.batch_size)
                    task = Task(upcoming.token, upcoming.sent, free.pop(), samples, epoch=epoch + 1)
                    pool.submit(task)
                    upcoming.sent += 1
                result = ready.pop(next_yield, None)
                if result is None:
                    if lent and not pool.busy():
                        self._held_by_caller(pool, lent)  # nothing in flight: wait for no one
                        continue
                    if deadline is None or pool.restarts != restarts:
                        deadline, restarts = time.monotonic() + self.timeout, pool.restarts
                    waiting = self._waiting_for(epoch, next_yield, order)
                    for received in pool.receive(deadline, waiting):
                        if received.token == token:
                            ready[received.batch] = received
                        elif upcoming is not None and received.token == upcoming.token:
                            upcoming.ready[received.batch] = received
                        else:
                            free.append(received.slot)  # a task of an abandoned iteration
                    continue
                deadline = None
                self._settle(result, epoch)
                meter.skipped = len(self.skipped)
                if self.copy:
                    images = pool.images[result.slot, : result.count].copy()
                    masks = pool.masks[result.slot, : result.count].copy()
                    free.append(result.slot)
                else:
                    images, masks = pool.lend(result.slot, result.count)
                    lent.append(result.slot)
                if self.channels:  # views: a lent slot's loan still sees them
                    images = images[:, None]
                    masks = masks if masks.ndim == 4 else masks[:, None]
                meta = self._batch_meta(order, next_yield, result)
                next_yield += 1
                self._position = next_yield
                meter.restarts = pool.restarts - meter.restarts_at_start
                meter.deliver(result.count)
                yield Batch(images, masks, meta)
                meter.ask()
                # The caller's loop variable keeps a lent batch alive until the
                # next one arrives; the generator must not keep it any longer.
                del images, masks
            complete = True
        finally:
            if self._pool is not None:
                meter.restarts = self._pool.restarts - meter.restarts_at_start
            meter.skipped = len(self.skipped)
            meter.end(complete=complete)
            self.history.append(meter.snapshot())
            if self._active == token and not self._closed:
                self._ahead = upcoming
            self._end_epoch(token)

    def _batch_meta(self, order: np.ndarray, batch: int, result: Result) -> BatchMeta:
        """The metadata of the samples a result delivered (the batch's, minus failures)."""
        samples = order[batch * self.batch_size : (batch + 1) * self.batch_size]
        if result.failures:
            failed = {failure.sample for failure in result.failures}
            samples = np.array([k for k in samples.tolist() if k not in failed], dtype=np.int64)
        if self._meta is None:
            return BatchMeta.unknown(samples)
        return self._meta(samples)

    @staticmethod
    def _held_by_caller(pool: ProcessPool | InlinePool, lent: list[int]) -> None:
        """Every slot is lent to views still referenced: free them or raise."""
        gc.collect()  # views caught in reference cycles
        if any(not pool.lent(slot) for slot in lent):
            return
        raise LoaderError(
            f"copy=False: all {len(lent)} free batch slots are held by batches still referenced "
            "(kept in a list, a tensor, or a variable left from an earlier loop); the loader "
            "cannot load the next batch without overwriting one.  Drop or copy the batches you "
            "keep (np.array(images)), raise prefetch, or use copy=True"
        )

    def _check(self, token: int) -> None:
        if self._closed:
            raise LoaderError("the loader was closed during the epoch")
        if self._active != token:
            raise LoaderError(
                "this iteration was superseded: the loader was iterated again or "
                "load_state_dict() was called; start a new `for` loop"
            )

    def _waiting_for(self, epoch: int, batch: int, order: np.ndarray) -> Callable[[], str]:
        def describe() -> str:
            samples = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            return f"batch {batch} of epoch {epoch} (samples {samples.tolist()})"

        return describe

    def _settle(self, result: Result, epoch: int) -> None:
        """Record or raise the failures of a delivered batch; raise a worker crash."""
        if result.crash is not None:
            crash = result.crash
            raise LoaderError(
                f"reading sample {crash.sample} ({self.source.describe(crash.sample)}) failed "
                f"in a worker: {crash.kind}: {crash.message}"
            ) from RemoteTraceback(crash.traceback)
        for failure in result.failures:
            self.skipped.append(failure.sample)
            if self.on_error == "raise":
                raise self._error(failure, result.batch, epoch) from RemoteTraceback(
                    failure.traceback
                )
            self._record(failure, result.batch, epoch)

    def _error(
        self, failure: Failure, batch: int, epoch: int
    ) -> DicomError | ContourError | LoaderError:
        where = (
            f"batch {batch} of epoch {epoch}: sample {failure.sample}, "
            f"{self.source.describe(failure.sample)}"
        )
        if failure.code == TRANSFORM_FAILED:
            return LoaderError(f"the transform failed on {where}: {failure.reason}")
        error = failure.error()
        note = f"while loading {where}"
        if hasattr(error, "add_note"):  # Python >= 3.11
            error.add_note(note)
        return error

    def _record(self, failure: Failure, batch: int, epoch: int) -> None:
        log.warning(
            "skipped sample %d (%s) in batch %d of epoch %d: %s: %s",
            failure.sample,
            self.source.describe(failure.sample),
            batch,
            epoch,
            failure.path or "transform",
            failure.reason,
        )
        key = (failure.code, failure.path, failure.reason)
        if failure.code == TRANSFORM_FAILED:
            key = (failure.code, str(failure.sample), failure.reason)
        if key in self._seen:
            return
        self._seen.add(key)
        if failure.code == TRANSFORM_FAILED:
            self.problems.append(self._transform_problem(failure))
            return
        self.problems.append(Problem.from_error(failure.error(), note=" (skipped by the loader)"))

    def _transform_problem(self, failure: Failure) -> Problem:
        """A ``transform-failed`` problem: its path is the sample's case id."""
        meta = (self._meta or BatchMeta.unknown)(np.array([failure.sample], dtype=np.int64))[0]
        message = (
            f"the transform failed on sample {failure.sample} "
            f"({self.source.describe(failure.sample)}): {failure.reason} (skipped by the loader)"
        )
        return problem(
            TRANSFORM_FAILED,
            meta["case_id"],
            message,
            patient_id=meta["patient_id"] or None,
            slice=meta["slice"] if meta["slice"] >= 0 else None,
        )
