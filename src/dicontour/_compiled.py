"""Compiled kernels: numba's nopython mode, cached on disk where a cache directory is writable.

The rasteriser's fill and the contour parser's number scan are loops over
pixels and bytes, which numpy can only run as many whole-array calls; numba
compiles them to machine code once and caches it (in ``__pycache__`` beside
the source, else numba's user-wide cache directory, or ``$NUMBA_CACHE_DIR``).
Where none of these is writable, numba refuses to decorate a cached
function at import; :func:`kernel` then compiles without the cache, in each
process, and says so once.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

Function = TypeVar("Function", bound=Callable[..., Any])


def kernel(function: Function) -> Function:
    """``numba.njit(cache=True, nogil=True)``, without the cache where none can be written.

    No fastmath: every floating-point operation is the IEEE one the code
    spells, so a kernel gives the doubles its Python text gives.  The GIL is
    released, so threads may run kernels side by side.

    Parameters
    ----------
    function : callable
        A function numba can compile in nopython mode.

    Returns
    -------
    callable
        The numba dispatcher: compiles on the first call per argument types.
    """
    try:
        compiled = numba.njit(cache=True, nogil=True)(function)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        if "no locator available" not in str(exc):
            raise
        _warn_uncached()
        compiled = numba.njit(nogil=True)(function)
    return cast(Function, compiled)  # called as the function it compiles


@functools.cache  # once per process, not once per kernel (numba resets warning registries)
def _warn_uncached() -> None:
    warnings.warn(
        "dicontour: numba finds no writable cache directory, so its kernels compile "
        "in every process (a few seconds); set NUMBA_CACHE_DIR to a writable folder",
        stacklevel=3,
    )
