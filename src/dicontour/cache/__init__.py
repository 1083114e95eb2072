"""A preprocessed cache: every sample decoded once into ``.npy`` shards, read by memory map.

Build it with :func:`build_cache` (or ``dicontour cache build ROOT CACHE``),
check it with :func:`verify_cache`, and train from it with
:func:`open_cache` (a :class:`CacheSource` for the BatchLoader).  The format
is described in :mod:`dicontour.cache._build`; the fingerprint that detects a
stale cache in :mod:`dicontour.cache._fingerprint`.

Examples
--------
>>> from dicontour.cache import build_cache, open_cache
>>> build_cache("final_data", "cache")                      # doctest: +SKIP
>>> source = open_cache("cache", root="final_data")         # doctest: +SKIP
"""

from ._build import DEFAULT_SHARD_SIZE, BuildReport, build_cache, plan_shards
from ._fingerprint import Fingerprint
from ._format import CacheReport
from ._source import CacheSource, check_fresh, open_cache, read_manifest
from ._verify import VerifyReport, verify_cache

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "BuildReport",
    "CacheReport",
    "CacheSource",
    "Fingerprint",
    "VerifyReport",
    "build_cache",
    "check_fresh",
    "open_cache",
    "plan_shards",
    "read_manifest",
    "verify_cache",
]
