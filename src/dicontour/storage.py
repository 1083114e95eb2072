"""Where a dataset lives: a local folder or an fsspec URL (``s3://``, ``gs://``, ``file://``).

Paths inside a dataset are always relative, with forward slashes; this module
joins them to the root and opens them.  Credentials for object stores come
from fsspec's usual sources (environment, config files), never from dicontour.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .errors import LayoutError

#: The dicontour extra that installs the fsspec implementation of a URL scheme.
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


@dataclass(frozen=True)
class Location:
    """A dataset root: ``url`` as given, the fsspec ``fs`` and its ``base`` path.

    Pickles to its URL, so worker processes re-open the filesystem themselves.
    """

    url: str

    @cached_property
    def _resolved(self) -> tuple[fsspec.AbstractFileSystem, str]:
        try:
            fs, base = fsspec.core.url_to_fs(self.url)
        except ImportError as exc:  # fsspec knows the scheme; its package is not installed
            extra = _EXTRAS.get(self.url.partition("://")[0])
            hint = f"pip install 'dicontour[{extra}]'" if extra else "install the package it names"
            raise LayoutError(f"{self.redacted()}: {exc}; {hint}") from exc
        except ValueError as exc:
            if "Protocol not known" not in str(exc):
                raise
            scheme = self.url.partition("://")[0]
            raise LayoutError(
                f"{self.redacted()}: unknown storage scheme {scheme!r}; use a local folder or "
                "an fsspec URL such as s3://bucket/data or gs://bucket/data"
            ) from exc
        return fs, base.rstrip("/") or "/"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._resolved[0]

    @property
    def base(self) -> str:
        return self._resolved[1]

    @property
    def is_local(self) -> bool:
        """True for a local folder, where files are opened with plain ``open``."""
        return isinstance(self.fs, LocalFileSystem)

    def path(self, relative: str) -> str:
        """The full path (local) or store key (remote) of ``relative``."""
        return f"{self.base}/{relative}" if relative else self.base

    def open(self, relative: str) -> BinaryIO:
        """Open ``relative`` for binary reading."""
        if self.is_local:
            return open(self.path(relative), "rb")
        return self.fs.open(self.path(relative), "rb")

    def redacted(self) -> str:
        """The URL without any user:password part, safe for logs and errors."""
        scheme, sep, rest = self.url.partition("://")
        if sep and "@" in rest.split("/", 1)[0]:
            rest = rest.split("@", 1)[1]
        return f"{scheme}{sep}{rest}"

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (Location, (self.url,))


def location(root: str | os.PathLike[str] | Location) -> Location:
    """Make a :class:`Location` from a local path or an fsspec URL.

    Raises
    ------
    LayoutError
        When the filesystem is first used (``.fs``): the scheme is unknown, or
        the package that implements it (``gcsfs`` for ``gs://``) is missing.
    LayoutError
        The URL carries credentials (``s3://key:secret@bucket``): they would
        end up in shell history, process lists and logs.  Use the store's usual
        environment variables or config files instead.
    """
    if isinstance(root, Location):
        return root
    text = os.fspath(root)
    if "://" not in text:
        text = os.path.abspath(text)
    elif "@" in text.split("://", 1)[1].split("/", 1)[0]:
        scheme = text.split("://", 1)[0]
        raise LayoutError(
            f"{scheme}://...: credentials in URLs are not accepted; set them in the "
            "environment or the store's config file (for S3: AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials)"
        )
    return Location(text)
