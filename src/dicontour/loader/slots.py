"""Shared-memory batch slots: where workers write batches and the loader reads them.

One ``SharedMemory`` segment holds a small control block and ``slots`` batch
slots, each one batch of images float32 (B, H, W) and masks bool (B, H, W) or
(B, 2, H, W).  The loader process creates the segment and is its only owner:
it alone unlinks it, exactly once.  Workers attach by name.  Ownership of each
slot passes by message: the loader hands a free slot to one worker with a
task, the worker fills it and replies, and the loader either copies the batch
out or *lends* it to the caller as read-only views (``copy=False``); a lent
slot is free again once no array viewing it is left.

The control block holds two int64 words the loader writes and workers read
without locks (a killed worker can never leave a lock held):

* ``STOP``: non-zero asks workers to exit at their next sample;
* ``EPOCH``: the current iteration's token; tasks from an older token are
  abandoned iterations, and workers skip them.

Every array over the segment is made with ``np.frombuffer``, which holds a
buffer export on the mapping for as long as the array (or any view of it)
lives; the mapping therefore cannot be unmapped under a live array.  (An
``np.ndarray(buffer=...)`` holds no export: closing the mapping under it
leaves a dangling pointer.)
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import secrets
import weakref
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
        return (self.slots, self.batch_size, *self.mask_sample_shape)

    @property
    def mask_sample_shape(self) -> tuple[int, ...]:
        """(H, W), or (2, H, W) with two channels: one sample's mask."""
        channels = (self.channels,) if self.channels else ()
        return (*channels, self.height, self.width)

    @property
    def batch_bytes(self) -> int:
        """Bytes of one slot: the images and the masks of one batch."""
        per_sample = self.height * self.width * (4 + max(self.channels, 1))
        return self.batch_size * per_sample

    @property
    def _masks_offset(self) -> int:
        # math.prod on Python ints: np.prod costs ~10 us, paid per batch lent.
        return _CONTROL_WORDS * 8 + _aligned(math.prod(self.image_shape) * 4)

    @property
    def nbytes(self) -> int:
        """Size of the whole segment."""
        return self._masks_offset + _aligned(math.prod(self.mask_shape))

    def views(self, buffer: memoryview) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(control int64 (8,), images float32 (slots, B, H, W), masks bool) over ``buffer``."""
        control = np.frombuffer(buffer, np.int64, count=_CONTROL_WORDS)
        images = np.frombuffer(
            buffer, np.float32, count=math.prod(self.image_shape), offset=_CONTROL_WORDS * 8
        ).reshape(self.image_shape)
        masks = np.frombuffer(
            buffer, np.bool_, count=math.prod(self.mask_shape), offset=self._masks_offset
        ).reshape(self.mask_shape)
        return control, images, masks

    def slot_views(
        self, buffer: memoryview, slot: int, count: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fresh arrays over the first ``count`` samples of ``slot``: (images, masks).

        Each is a reshape of its own ``np.frombuffer`` array, which every view
        derived from it keeps alive (numpy points a view's ``base`` at the
        first array that is not itself a view of an array): while any of them
        is referenced, the ``base`` of the returned array is alive.
        """
        pixels = self.height * self.width
        mask_pixels = pixels * max(self.channels, 1)
        image_offset = _CONTROL_WORDS * 8 + slot * self.batch_size * pixels * 4
        mask_offset = self._masks_offset + slot * self.batch_size * mask_pixels
        images = np.frombuffer(buffer, np.float32, count=count * pixels, offset=image_offset)
        masks = np.frombuffer(buffer, np.bool_, count=count * mask_pixels, offset=mask_offset)
        return (
            images.reshape(count, self.height, self.width),
            masks.reshape(count, *self.mask_sample_shape),
        )


class SlotSegment:
    """Slots in one mapping, with numpy views and loans of read-only batches.

    Use :meth:`create` in the loader (the owner), :meth:`attach` in a worker,
    and :meth:`private` for in-process loading (ordinary memory, no name).
    :meth:`close` drops the views and the mapping and, on the owner, unlinks
    the segment, once.  A batch lent with :meth:`lend` stays readable after
    :meth:`close`: the mapping then lives until the last view of it is gone.

    Examples
    --------
    >>> layout = SlotLayout(slots=2, batch_size=4, height=8, width=8)
    >>> segment = SlotSegment.create(layout)
    >>> segment.images.shape, segment.masks.dtype
    ((2, 4, 8, 8), dtype('bool'))
    >>> images, masks = segment.lend(1, 3)
    >>> images.shape, images.flags.writeable, segment.lent(1)
    ((3, 8, 8), False, True)
    >>> del images, masks
    >>> segment.lent(1)
    False
    >>> segment.close()
    """

    def __init__(
        self,
        mapping: mmap.mmap | bytearray | memoryview,
        layout: SlotLayout,
        *,
        name: str = "",
        owner: bool = False,
        shm: SharedMemory | None = None,
    ) -> None:
        self.name = name
        self.layout = layout
        self.owner = owner
        self._shm = shm
        self._mapping: mmap.mmap | bytearray | memoryview | None = mapping
        self._buffer = memoryview(mapping)
        self._readonly = self._buffer.toreadonly()
        self._loans: dict[int, tuple[weakref.ref[np.ndarray], weakref.ref[np.ndarray]]] = {}
        self.control, self.images, self.masks = layout.views(self._buffer)

    @classmethod
    def create(cls, layout: SlotLayout) -> SlotSegment:
        """Create a fresh, zeroed segment (named ``dicontour_<pid>_<random>``)."""
        name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(6)}"
        shm = SharedMemory(name=name, create=True, size=layout.nbytes)
        try:
            # The loader maps the segment itself rather than through the
            # SharedMemory: batches lent to the caller may outlive close(), and
            # a mapping of our own is simply unmapped when the last of them goes
            # (SharedMemory.close() would raise BufferError and keep its file
            # descriptor open).  The SharedMemory stays for unlink() only.
            # shm._fd is the segment's POSIX file descriptor (CPython 3.8+).
            mapping = mmap.mmap(shm._fd, layout.nbytes)  # type: ignore[attr-defined]  # private, see above
        except BaseException:
            shm.close()
            shm.unlink()
            raise
        shm.close()
        return cls(mapping, layout, name=name, owner=True, shm=shm)

    @classmethod
    def attach(cls, name: str, layout: SlotLayout) -> SlotSegment:
        """Attach to the segment ``name`` created by the loader."""
        shm = SharedMemory(name=name)
        assert shm.buf is not None  # None only after shm.close()
        return cls(shm.buf, layout, name=name, shm=shm)

    @classmethod
    def private(cls, layout: SlotLayout) -> SlotSegment:
        """Slots in this process's ordinary memory (for loading without workers)."""
        return cls(bytearray(layout.nbytes), layout)

    @property
    def closed(self) -> bool:
        return self._mapping is None

    def lend(self, slot: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Read-only (images, masks) views of the first ``count`` samples of ``slot``.

        The slot counts as lent (:meth:`lent`) while any array viewing it is
        alive; the caller must not hand it to a worker until then.
        """
        images, masks = self.layout.slot_views(self._readonly, slot, count)
        # reshapes of np.frombuffer arrays: their base is that array, never None
        assert images.base is not None and masks.base is not None
        self._loans[slot] = (weakref.ref(images.base), weakref.ref(masks.base))
        return images, masks

    def lent(self, slot: int) -> bool:
        """Whether an array lent from ``slot`` by :meth:`lend` is still alive."""
        loan = self._loans.get(slot)
        if loan is None:
            return False
        if loan[0]() is None and loan[1]() is None:
            del self._loans[slot]
            return False
        return True

    def close(self) -> None:
        """Drop the views, detach, and unlink if this is the owner; safe to call twice."""
        mapping, self._mapping = self._mapping, None
        if mapping is None:
            return
        # Our own views go first; lent ones may live on (the caller's).
        self.control = self.images = self.masks = None  # type: ignore[assignment]
        self._loans.clear()
        for view in (self._buffer, self._readonly):
            with contextlib.suppress(BufferError):
                view.release()
        shm, self._shm = self._shm, None
        try:
            # BufferError: a lent batch is still alive.  The mapping then stays
            # until its last view is freed (the views keep it), and is unmapped
            # then; the segment's name is removed below all the same.
            with contextlib.suppress(BufferError):
                if isinstance(mapping, mmap.mmap):
                    mapping.close()
                elif shm is not None:
                    shm.close()
        finally:
            if self.owner and shm is not None:
                with contextlib.suppress(FileNotFoundError):
                    shm.unlink()
