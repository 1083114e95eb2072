"""The cache's on-disk format: names and version tags shared by the writer and the readers.

One place, so the writer (``_build``), the reader (``_source``), the checks
(``_check``, ``_verify``) and the layout guard (``_layout``) can never drift
apart; nothing here imports another cache module.  :class:`CacheReport` holds
what the build's and the verify's reports both say about a cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._asdict import AsDict
from .._version import version

FORMAT = "dicontour-cache"
FORMAT_VERSION = 1
DEFAULT_SHARD_SIZE = 256

MANIFEST = "manifest.json"
FINGERPRINT = "fingerprint.json"
HAS = "has.npy"
SHARDS = "shards"
ARRAYS = ("images.npy", "masks.npy", "has.npy")
LOCK = ".dicontour-build.lock"


def dicontour_version() -> str:
    """The version written into (and demanded of) every manifest: the installed package's."""
    return version()


def shard_folder(name: str) -> str:
    """A shard's folder, relative to the cache."""
    return f"{SHARDS}/{name}"


@dataclass(frozen=True)
class CacheReport(AsDict):
    """What :class:`~dicontour.cache.BuildReport` and :class:`~dicontour.cache.VerifyReport`
    start with.

    Attributes
    ----------
    cache : str
        The cache (credentials removed from the URL).
    samples, shards : int
        Samples and shards in the cache.
    """

    cache: str
    samples: int
    shards: int
