"""The worker side of the loader: fill batch slots, reply with a few numbers.

A worker process receives the sample source and a :class:`WorkerConfig` once,
attaches to the slot segment, says ``("ready", pid)`` and then serves
:class:`Task` messages from its own pipe until it reads the stop message, the
stop flag is set, or the pipe closes (the loader is gone).  For each task it
reads the samples into the given slot and sends back a :class:`Result`: the
slot, how many samples it holds, and the samples that failed.  Arrays never
travel through the pipe.

Messages are raw bytes (``Connection.send_bytes``), not pickles, on the hot
path: a task is 32 bytes of header and the int64 sample indices, a plain
result 34 bytes (see :func:`encode_task`, :func:`encode_result`); pickling the
dataclasses cost more than the rest of the hand-off.  Anything rarer (a
result with failures, ``ready``, ``fatal``) is pickled behind a tag byte.

Errors travel as data.  A ``DicomError`` or ``ContourError`` becomes a
:class:`Failure` (the loader skips the sample or raises it), and so does any
exception raised by the ``transform`` or a result of the wrong shape or type
(code ``transform-failed``); any other exception in the source is a bug or an
unusable source and becomes a :class:`Crash`, which the loader raises as
``LoaderError`` with the worker's traceback.

Per sample, in this order: read, normalise (``normalize``), transform
(``transform(image, mask, rng)`` with ``rng = default_rng([seed, epoch, k])``,
mask as (C, H, W)), fit to ``size`` (centre crop or zero pad), write into the
slot.  The generator depends on the sample and the epoch only, never on the
worker or the batch, so augmented epochs are the same for any worker count and
after a resume.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import sys
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import numpy as np

from ..errors import ContourError, DicomError
from .prepare import Normalize, normalize, place
from .slots import EPOCH, STOP, SlotLayout, SlotSegment
from .source import SampleSource, Target, Transform

#: The problem code of a sample whose transform raised or returned something unusable.
TRANSFORM_FAILED = "transform-failed"


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker needs besides the source: the same for all tasks.

    ``fit`` is True when the loader was given ``size``: images of any shape are
    then centre-cropped or padded to the layout's (H, W).  ``transform`` runs
    on each sample with a generator seeded by ``[seed, epoch, sample]``.
    """

    target: Target
    normalize: Normalize
    layout: SlotLayout
    fit: bool = False
    segment: str = ""
    transform: Transform | None = None
    seed: int = 0


@dataclass(frozen=True)
class Task:
    """Fill ``slot`` with ``samples`` (source indices), batch ``batch`` of iteration ``token``.

    ``epoch`` seeds the transform's generators.
    """

    token: int
    batch: int
    slot: int
    samples: np.ndarray
    attempts: int = 1
    epoch: int = 0


@dataclass(frozen=True)
class Failure:
    """A sample whose file could not be read: the error's fields, to rebuild it."""

    sample: int
    kind: str
    path: str
    reason: str
    code: str
    line: int | None
    traceback: str

    @classmethod
    def of(cls, sample: int, error: DicomError | ContourError) -> Failure:
        return cls(
            sample=sample,
            kind=type(error).__name__,
            path=error.path,
            reason=error.reason,
            code=error.code,
            line=getattr(error, "line", None),
            traceback=traceback.format_exc(),
        )

    @classmethod
    def of_transform(cls, sample: int, error: BaseException | str) -> Failure:
        """A transform that raised ``error`` (or returned what the message says)."""
        if isinstance(error, BaseException):
            reason, kind, text = f"{type(error).__name__}: {error}", type(error).__name__, None
        else:
            reason, kind, text = error, "ValueError", ""
        return cls(
            sample=sample,
            kind=kind,
            path="",
            reason=reason,
            code=TRANSFORM_FAILED,
            line=None,
            traceback=traceback.format_exc() if text is None else text,
        )

    def error(self) -> DicomError | ContourError:
        """The error, re-created with its file, reason and code."""
        if self.kind == "ContourError":
            return ContourError(self.path, self.reason, line=self.line, code=self.code)
        return DicomError(self.path, self.reason, code=self.code)


@dataclass(frozen=True)
class Crash:
    """An unexpected exception while reading ``sample``."""

    sample: int
    kind: str
    message: str
    traceback: str


@dataclass(frozen=True)
class Result:
    """Task done: ``count`` samples are in ``slot``, in task order, failed ones left out."""

    token: int
    batch: int
    slot: int
    count: int
    failures: tuple[Failure, ...] = ()
    crash: Crash | None = None
    cancelled: bool = False
    worker: int = field(default=-1, compare=False)


#: Task header: token, batch, slot, attempts, epoch; the sample indices follow as int64.
_TASK = struct.Struct("<qqqqq")
#: A result without failures: tag, token, batch, slot, count, cancelled.
_DONE = struct.Struct("<cqqqq?")
_DONE_TAG = b"D"
_PICKLED_TAG = b"P"
#: The stop message (an empty task).
STOP_MESSAGE = b""


def encode_task(task: Task) -> bytes:
    """The bytes of ``task`` on the pipe (see :func:`decode_task`).

    Examples
    --------
    >>> task = Task(3, 5, 1, np.array([7, 2]))
    >>> decoded = decode_task(encode_task(task))
    >>> decoded.batch, decoded.slot, decoded.samples.tolist()
    (5, 1, [7, 2])
    """
    header = _TASK.pack(task.token, task.batch, task.slot, task.attempts, task.epoch)
    return header + np.asarray(task.samples, dtype="<i8").tobytes()


def decode_task(data: bytes) -> Task:
    """The :class:`Task` that :func:`encode_task` turned into ``data``."""
    token, batch, slot, attempts, epoch = _TASK.unpack_from(data)
    samples = np.frombuffer(data, dtype="<i8", offset=_TASK.size)
    return Task(token, batch, slot, samples, attempts, epoch)


def encode_result(message: Result | tuple[str, object]) -> bytes:
    """The bytes of a result (or a ``("ready", pid)``/``("fatal", text)`` note) on the pipe."""
    if isinstance(message, Result) and not message.failures and message.crash is None:
        return _DONE.pack(
            _DONE_TAG, message.token, message.batch, message.slot, message.count, message.cancelled
        )
    return _PICKLED_TAG + pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode_result(data: bytes, worker: int = -1) -> Result | tuple[str, object]:
    """What :func:`encode_result` sent.

    Raises
    ------
    pickle.UnpicklingError
        ``data`` is no message of the loader's (a damaged pipe).

    Examples
    --------
    >>> decode_result(encode_result(Result(1, 4, 2, 8)))
    Result(token=1, batch=4, slot=2, count=8, failures=(), crash=None, cancelled=False, worker=-1)
    >>> decode_result(encode_result(("ready", 123)))
    ('ready', 123)
    """
    tag = data[:1]
    if tag == _DONE_TAG and len(data) == _DONE.size:
        _, token, batch, slot, count, cancelled = _DONE.unpack(data)
        return Result(token, batch, slot, count, cancelled=cancelled, worker=worker)
    if tag == _PICKLED_TAG:
        return pickle.loads(data[1:])
    raise pickle.UnpicklingError(f"not a loader message: {data[:16]!r}")


def fill(
    source: SampleSource,
    config: WorkerConfig,
    images: np.ndarray,
    masks: np.ndarray,
    control: np.ndarray,
    task: Task,
    worker: int = -1,
) -> Result | None:
    """Read the samples of ``task`` into ``images[slot]`` and ``masks[slot]``.

    Returns None when the stop flag is set (the worker should exit), and a
    cancelled result for a task of an abandoned iteration.

    A source with a ``read_into(k, target, image, mask)`` method writes each
    sample straight into the slot when nothing is to be done to it (no
    ``normalize``, no ``size``): no intermediate array, no per-sample checks
    here (the method checks the shapes).
    """
    if task.token < control[EPOCH]:
        return Result(task.token, task.batch, task.slot, 0, cancelled=True, worker=worker)
    height, width = config.layout.height, config.layout.width
    direct = None
    if config.normalize is None and not config.fit and config.transform is None:
        direct = getattr(source, "read_into", None)
    slot_images, slot_masks = images[task.slot], masks[task.slot]
    count = 0
    failures: list[Failure] = []
    for k in task.samples.tolist():
        if control[STOP]:
            return None
        try:
            if direct is not None:
                direct(k, config.target, slot_images[count], slot_masks[count])
                count += 1
                continue
            image, mask = source.read(k, config.target)
            if mask.shape[-2:] != image.shape:
                raise ValueError(f"mask shape {mask.shape} does not match image {image.shape}")
            if config.layout.channels != 0 and mask.shape[0] != config.layout.channels:
                raise ValueError(f"mask shape {mask.shape}: expected {config.layout.channels} maps")
            if image.shape != (height, width) and not config.fit:
                raise ValueError(
                    f"image shape {image.shape} differs from the loader's {(height, width)} "
                    "(the source reported another shape when the loader was built)"
                )
            image = normalize(np.asarray(image, dtype=np.float32), config.normalize)
            if config.transform is not None:
                transformed = _transform(config, image, mask, task.epoch, k)
                if isinstance(transformed, Failure):
                    failures.append(transformed)
                    continue
                image, mask = transformed
            place(image, slot_images[count])
            place(mask, slot_masks[count])
        except (DicomError, ContourError) as exc:
            failures.append(Failure.of(k, exc))
            continue
        except Exception as exc:  # a bug in the source: stop and tell the loader
            crash = Crash(k, type(exc).__name__, str(exc), traceback.format_exc())
            return Result(
                task.token, task.batch, task.slot, count, tuple(failures), crash, worker=worker
            )
        count += 1
    return Result(task.token, task.batch, task.slot, count, tuple(failures), worker=worker)


def _transform(
    config: WorkerConfig, image: np.ndarray, mask: np.ndarray, epoch: int, k: int
) -> tuple[np.ndarray, np.ndarray] | Failure:
    """Run the transform on one sample; a Failure if it raises or returns something unusable.

    The transform gets writable arrays (a read-only cache view is copied), the
    mask always as (C, H, W), and ``default_rng([seed, epoch, k])``.  It must
    return a float image (h, w) and a bool mask (C, h, w); (h, w) must be the
    loader's (H, W) unless the loader fits samples to ``size``.
    """
    layout = config.layout
    if not image.flags.writeable:
        image = image.copy()
    mask = mask.copy() if not mask.flags.writeable else mask
    planes = mask if mask.ndim == 3 else mask[None]
    rng = np.random.default_rng([config.seed, epoch, k])
    try:
        result = config.transform(image, planes, rng)  # type: ignore[misc]
    except Exception as exc:
        return Failure.of_transform(k, exc)
    name = getattr(config.transform, "__name__", type(config.transform).__name__)
    problem = _check_transformed(result, planes.shape[0], layout, config.fit)
    if problem:
        return Failure.of_transform(k, f"transform {name} {problem}")
    image, planes = result
    return np.asarray(image, dtype=np.float32), planes if mask.ndim == 3 else planes[0]


def _check_transformed(result: object, channels: int, layout: SlotLayout, fit: bool) -> str:
    """What is wrong with a transform's result ("" if nothing)."""
    if not isinstance(result, tuple) or len(result) != 2:
        return f"returned {type(result).__name__}, not an (image, mask) tuple"
    image, mask = result
    if not isinstance(image, np.ndarray) or not isinstance(mask, np.ndarray):
        return f"returned ({type(image).__name__}, {type(mask).__name__}), not two numpy arrays"
    if image.ndim != 2 or image.dtype.kind not in "fiu":
        return f"returned an image {image.dtype} {image.shape}: expected a real (H, W) array"
    if mask.dtype != np.bool_:
        return f"returned a mask of dtype {mask.dtype}: masks stay bool (use nearest-neighbour)"
    if mask.shape != (channels, *image.shape):
        return f"returned image {image.shape}, mask {mask.shape}: expected mask ({channels}, H, W)"
    if not fit and image.shape != (layout.height, layout.width):
        return (
            f"changed the shape to {image.shape}, the loader's is {(layout.height, layout.width)}"
            "; pass size=(H, W) to the loader to allow transforms that change shapes"
        )
    return ""


def run_worker(
    conn: Connection, payload: bytes, worker: int, inherited: tuple[int, ...] = ()
) -> None:
    """Entry point of a worker process (see the module docs).

    ``payload`` is the pickled ``(source, config)``; ``inherited`` lists the
    loader's descriptors that a forked worker closes first.
    """
    # Ctrl-C reaches the whole process group; the loader shuts workers down
    # itself, so a worker must not die mid-write with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    torch = sys.modules.get("torch")
    if torch is not None:
        # One thread, as in torch's DataLoader workers: a forked copy of torch's
        # OpenMP pool hangs at its first parallel operation (a transform using
        # torch), and more threads per worker only oversubscribe the cores.
        torch.set_num_threads(1)
    try:
        source, config = pickle.loads(payload)
    except BaseException:
        conn.send_bytes(encode_result(("fatal", traceback.format_exc())))
        raise
    _serve(conn, source, config, worker)
    # A spawned interpreter takes about half a second to tear down numpy,
    # pydicom and the rest at exit.  The segment and the pipe are closed and
    # nothing else needs tidying, so leave at once: close() returns sooner.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _serve(conn: Connection, source: SampleSource, config: WorkerConfig, worker: int) -> None:
    try:
        segment = SlotSegment.attach(config.segment, config.layout)
    except BaseException:
        conn.send_bytes(encode_result(("fatal", traceback.format_exc())))
        raise
    try:
        conn.send_bytes(encode_result(("ready", os.getpid())))
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                return  # the loader closed the pipe or died
            if message == STOP_MESSAGE or segment.control[STOP]:
                return
            task = decode_task(message)
            result = fill(
                source, config, segment.images, segment.masks, segment.control, task, worker
            )
            if result is None:
                return
            try:
                conn.send_bytes(encode_result(result))
            except (BrokenPipeError, OSError):
                return
    finally:
        segment.close()
        conn.close()
