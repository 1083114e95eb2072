"""dicontour's version, written once: in pyproject.toml, read here from the package metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dicontour")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
