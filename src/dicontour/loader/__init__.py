"""Training batches: :class:`BatchLoader` over a :class:`SampleSource`.

The modules, in the order a batch meets them::

    source.py        SampleSource, the protocol a loader reads from; Transform
    meta.py          Batch (images, masks) and its per-sample BatchMeta
    index_source.py  IndexSource, an Index's samples as compact arrays
    order.py         the order of an epoch, a pure function of (seed, epoch)
    batches.py       BatchLoader: tasks out, batches back, in order
    pool.py          the worker processes: start, replace, shut down
    worker.py        what a worker does with one task
    prepare.py       normalisation and centre crop/pad, per sample
    slots.py         the shared-memory batch slots
    state.py         the resumable state_dict
    stats.py         EpochStats: per-epoch telemetry
"""

from ..batch import Batch, BatchMeta
from .batches import MAX_BATCH_BYTES, BatchLoader
from .index_source import IndexSource
from .options import LoaderOptions
from .order import batch_count, epoch_order, rank_share
from .source import SampleSource, Transform
from .stats import EpochStats

__all__ = [
    "MAX_BATCH_BYTES",
    "Batch",
    "BatchLoader",
    "BatchMeta",
    "EpochStats",
    "IndexSource",
    "LoaderOptions",
    "SampleSource",
    "Transform",
    "batch_count",
    "epoch_order",
    "rank_share",
]
