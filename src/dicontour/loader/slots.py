"""Shared-memory batch slots: where workers write batches and the loader reads them.

One ``SharedMemory`` segment holds a small control block and ``slots`` batch
slots, each one batch of images float32 (B, H, W) and masks bool (B, H, W) or
(B, 2, H, W).  The loader process creates the segment and is its only owner:
it alone unlinks it, exactly once.  Workers attach by name.  Ownership of each
slot passes by message: the loader hands a free slot to one worker with a
task, the worker fills it and replies, and the loader copies the batch out and
marks the slot free again.

The control block holds two int64 words the loader writes and workers read
without locks (a killed worker can never leave a lock held):

* ``STOP``: non-zero asks workers to exit at their next sample;
* ``EPOCH``: the current iteration's token; tasks from an older token are
  abandoned iterations, and workers skip them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import numpy as np

#: Index of the stop flag in the control block.
STOP = 0
#: Index of the current iteration token in the control block.
EPOCH = 1
_CONTROL_WORDS = 8
_ALIGN = 64

#: Every segment's name starts with this, so leaks are easy to spot in /dev/shm.
PREFIX = "dicontour_"


def _aligned(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


@dataclass(frozen=True)
class SlotLayout:
    """Shapes of the slots; the same on both sides of the segment.

    Attributes
    ----------
    slots : int
        Number of batch slots.
    batch_size : int
        Samples per slot, B.
    height, width : int
        (H, W) of every image.
    channels : int
        0 for masks of shape (B, H, W); 2 for (B, 2, H, W) [i, o].
    """

    slots: int
    batch_size: int
    height: int
    width: int
    channels: int = 0

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(slots, B, H, W)."""
        return (self.slots, self.batch_size, self.height, self.width)

    @property
    def mask_shape(self) -> tuple[int, ...]:
        """(slots, B, H, W), or (slots, B, 2, H, W) with two channels."""
        channels = (self.channels,) if self.channels else ()
        return (self.slots, self.batch_size, *channels, self.height, self.width)

    @property
    def batch_bytes(self) -> int:
        """Bytes of one slot: the images and the masks of one batch."""
        per_sample = self.height * self.width * (4 + max(self.channels, 1))
        return self.batch_size * per_sample

    @property
    def nbytes(self) -> int:
        """Size of the whole segment."""
        images = _aligned(int(np.prod(self.image_shape)) * 4)
        masks = _aligned(int(np.prod(self.mask_shape)))
        return _CONTROL_WORDS * 8 + images + masks

    def views(self, buffer: memoryview) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(control int64 (8,), images float32 (slots, B, H, W), masks bool) over ``buffer``."""
        control = np.ndarray((_CONTROL_WORDS,), dtype=np.int64, buffer=buffer)
        offset = _CONTROL_WORDS * 8
        images = np.ndarray(self.image_shape, dtype=np.float32, buffer=buffer, offset=offset)
        offset += _aligned(images.nbytes)
        masks = np.ndarray(self.mask_shape, dtype=np.bool_, buffer=buffer, offset=offset)
        return control, images, masks


class SlotSegment:
    """One attached shared-memory segment with numpy views of its slots.

    Use :meth:`create` in the loader (the owner) and :meth:`attach` in a
    worker.  :meth:`close` drops the views and detaches; on the owner it
    also unlinks the segment, once.

    Examples
    --------
    >>> layout = SlotLayout(slots=2, batch_size=4, height=8, width=8)
    >>> segment = SlotSegment.create(layout)
    >>> segment.images.shape, segment.masks.dtype
    ((2, 4, 8, 8), dtype('bool'))
    >>> segment.close()
    """

    def __init__(self, shm: SharedMemory, layout: SlotLayout, *, owner: bool) -> None:
        self._shm: SharedMemory | None = shm
        self.name = shm.name
        self.layout = layout
        self.owner = owner
        self.control, self.images, self.masks = layout.views(shm.buf)

    @classmethod
    def create(cls, layout: SlotLayout) -> SlotSegment:
        """Create a fresh, zeroed segment (named ``dicontour_<pid>_<random>``)."""
        name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(6)}"
        shm = SharedMemory(name=name, create=True, size=layout.nbytes)
        return cls(shm, layout, owner=True)

    @classmethod
    def attach(cls, name: str, layout: SlotLayout) -> SlotSegment:
        """Attach to the segment ``name`` created by the loader."""
        return cls(SharedMemory(name=name), layout, owner=False)

    @property
    def closed(self) -> bool:
        return self._shm is None

    def close(self) -> None:
        """Drop the views, detach, and unlink if this is the owner; safe to call twice."""
        shm, self._shm = self._shm, None
        if shm is None:
            return
        # Views must go before the mapping closes, or close() raises BufferError.
        self.control = self.images = self.masks = None  # type: ignore[assignment]
        # BufferError: someone still holds a view; the mapping stays until it is
        # freed, but the name is removed below all the same.
        with contextlib.suppress(BufferError):
            shm.close()
        if self.owner:
            with contextlib.suppress(FileNotFoundError):
                shm.unlink()
