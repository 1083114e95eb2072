"""The options of a :class:`~dicontour.loader.BatchLoader`, validated once, frozen.

:class:`LoaderOptions` checks every option when it is made, naming the
argument and the value received; the loader keeps the result and never
re-checks.  ``BatchLoader(source, **options)`` builds one from its keyword
arguments, so its signature is unchanged.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import LoaderError
from ..targets import Target, check_target
from .pool import DEFAULT_START_METHOD, START_METHODS, StartMethod
from .prepare import NORMALIZE, Normalize
from .source import Transform

OnError = Literal["skip", "raise"]


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LoaderOptions:
    """Everything a :class:`~dicontour.loader.BatchLoader` is told, checked.

    The attributes are the loader's keyword arguments (see its docstring);
    ``size`` is normalised to a tuple of two ints, flags to bools.

    Raises
    ------
    ValueError
        An option out of range; the message names it and the value received.
    TypeError
        ``transform`` is not callable.
    LoaderError
        ``transform`` cannot be pickled while worker processes need it.

    Examples
    --------
    >>> LoaderOptions(batch_size=4, size=(64, 64)).size
    (64, 64)
    >>> LoaderOptions(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be an integer >= 1; got 0
    """

    batch_size: int = 8
    target: Target = "i"
    shuffle: bool = True
    seed: int = 0
    workers: int = 2
    prefetch: int = 4
    drop_last: bool = False
    on_error: OnError = "skip"
    normalize: Normalize = None
    size: tuple[int, int] | None = None
    timeout: float = 120.0
    rank: int = 0
    world_size: int = 1
    start_method: StartMethod = DEFAULT_START_METHOD
    copy: bool = True
    channels: bool = False
    transform: Transform | None = None

    def __post_init__(self) -> None:
        checked: dict[str, object] = {
            "batch_size": _positive_int("batch_size", self.batch_size),
            "target": check_target(self.target),
            "seed": _positive_int("seed", self.seed, minimum=0),
            "workers": _positive_int("workers", self.workers, minimum=0),
            "prefetch": _positive_int("prefetch", self.prefetch),
        }
        if self.on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise'; got {self.on_error!r}")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}; got {self.normalize!r}")
        size = self.size
        if size is not None:
            if len(size) != 2:
                raise ValueError(f"size must be (H, W); got {size!r}")
            size = (_positive_int("size[0]", size[0]), _positive_int("size[1]", size[1]))
        if not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds; got {self.timeout!r}")
        world_size = _positive_int("world_size", self.world_size)
        rank = _positive_int("rank", self.rank, minimum=0)
        if rank >= world_size:
            raise ValueError(f"rank must be < world_size={world_size}; got {self.rank!r}")
        if self.start_method not in START_METHODS:
            raise ValueError(
                f"start_method must be one of {START_METHODS}; got {self.start_method!r}"
            )
        if self.transform is not None and not callable(self.transform):
            raise TypeError(
                "transform must be a callable (image, mask, rng) -> (image, mask); "
                f"got {type(self.transform).__name__}"
            )
        if self.transform is not None and checked["workers"]:
            _check_picklable(self.transform)
        checked.update(
            size=size,
            timeout=float(self.timeout),
            world_size=world_size,
            rank=rank,
            shuffle=bool(self.shuffle),
            drop_last=bool(self.drop_last),
            copy=bool(self.copy),
            channels=bool(self.channels),
        )
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: set once, here


def _check_picklable(transform: object) -> None:
    """Refuse a transform the workers cannot receive (spawned processes get a pickle)."""
    try:
        pickle.dumps(transform, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        name = getattr(transform, "__qualname__", type(transform).__name__)
        raise LoaderError(
            f"transform {name} cannot be pickled ({type(exc).__name__}: {exc}); worker "
            "processes receive it as a pickle. Define it at module level (not a lambda or a "
            "nested function), e.g. dicontour.augment.Compose([...]) or a class with "
            "__call__, or pass workers=0 to run it in this process"
        ) from exc
