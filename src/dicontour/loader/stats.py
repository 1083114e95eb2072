"""Loader telemetry: what one epoch delivered, how fast, and how long the loop waited.

The loader measures inside its own generator, so a training script reads
``loader.stats`` (this or the last epoch) and ``loader.history`` (every
finished epoch) instead of timing ``next()`` itself.  "Waited" is the time
spent inside ``next(loader)``: from the moment the loop asks for a batch to
the moment it has it.  Everything else in the epoch is the training step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .._asdict import AsDict


@dataclass(frozen=True)
class EpochStats(AsDict):
    """One epoch of a :class:`~dicontour.BatchLoader`, as the training loop saw it.

    Attributes
    ----------
    epoch : int
        The epoch number.
    start_batch : int
        The batch it started from (0, or the position of a resumed state).
    batches, samples : int
        Batches and samples delivered so far (skipped samples excluded).
    seconds : float
        From the first ``next()`` to the end of the epoch (or to now, while
        it runs; or to the ``break``).
    samples_per_s : float
        ``samples / seconds`` (0 before the first batch).
    wait_s : float
        Time the loop spent waiting inside ``next()`` for a batch.
    first_batch_s : float
        From the first ``next()`` to the first batch; on a loader's first
        epoch this includes starting the workers.  NaN before the first batch.
    restarts : int
        Dead workers replaced during the epoch.
    skipped : int
        Samples left out (``on_error="skip"``) during the epoch.
    complete : bool
        Whether the epoch ran to its end (False while running, or after a
        ``break``, an exception or ``load_state_dict``).

    Examples
    --------
    >>> stats = EpochStats(0, 0, 12, 96, 0.5, 192.0, 0.1, 0.3, 0, 0, True)
    >>> stats.wait_share
    0.2
    """

    epoch: int
    start_batch: int
    batches: int
    samples: int
    seconds: float
    samples_per_s: float
    wait_s: float
    first_batch_s: float
    restarts: int
    skipped: int
    complete: bool

    @property
    def wait_share(self) -> float:
        """The share of the epoch spent waiting for data (0 to 1)."""
        return self.wait_s / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``first_batch_s`` None when not measured)."""
        fields = super().to_dict()
        if fields["first_batch_s"] != fields["first_batch_s"]:  # NaN
            fields["first_batch_s"] = None
        return fields


class Meter:
    """The running measurements of one epoch; :meth:`snapshot` makes an EpochStats."""

    def __init__(self, epoch: int, start_batch: int, restarts: int) -> None:
        self.epoch = epoch
        self.start_batch = start_batch
        self.started = time.perf_counter()
        self.ended: float | None = None
        self.asked = self.started  # when the loop last asked for a batch
        self.batches = 0
        self.samples = 0
        self.wait = 0.0
        self.first_batch = float("nan")
        self.restarts_at_start = restarts
        self.restarts = 0
        self.skipped = 0
        self.complete = False

    def ask(self) -> None:
        """The loop asks for the next batch (the generator resumes)."""
        self.asked = time.perf_counter()

    def deliver(self, samples: int) -> None:
        """A batch of ``samples`` is handed to the loop now."""
        now = time.perf_counter()
        self.wait += now - self.asked
        if not self.batches:
            self.first_batch = now - self.started
        self.batches += 1
        self.samples += samples

    def end(self, *, complete: bool) -> None:
        if self.ended is None:
            self.ended = time.perf_counter()
            if complete:  # the last ask found no batch: it waited for the end
                self.wait += self.ended - self.asked
            self.complete = complete

    def snapshot(self) -> EpochStats:
        seconds = (self.ended or time.perf_counter()) - self.started
        return EpochStats(
            epoch=self.epoch,
            start_batch=self.start_batch,
            batches=self.batches,
            samples=self.samples,
            seconds=seconds,
            samples_per_s=self.samples / seconds if self.batches and seconds > 0 else 0.0,
            wait_s=self.wait,
            first_batch_s=self.first_batch,
            restarts=self.restarts,
            skipped=self.skipped,
            complete=self.complete,
        )
