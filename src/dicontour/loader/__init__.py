"""Training batches: :class:`BatchLoader` over a :class:`SampleSource`.

The modules, in the order a batch meets them::

    source.py        SampleSource, the protocol a loader reads from
    index_source.py  IndexSource, an Index's samples as compact arrays
    order.py         the order of an epoch, a pure function of (seed, epoch)
    batches.py       BatchLoader: tasks out, batches back, in order
    pool.py          the worker processes: start, replace, shut down
    worker.py        what a worker does with one task
    prepare.py       normalisation and centre crop/pad, per sample
    slots.py         the shared-memory batch slots
    state.py         the resumable state_dict
"""

from .batches import BatchLoader
from .index_source import IndexSource
from .order import batch_count, epoch_order, rank_share
from .source import SampleSource

__all__ = ["BatchLoader", "IndexSource", "SampleSource", "batch_count", "epoch_order", "rank_share"]
