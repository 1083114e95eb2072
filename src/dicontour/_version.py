"""dicontour's version, written once: in pyproject.toml, read here from the package metadata.

Read on first use (``importlib.metadata`` costs tens of milliseconds to
import, too much for ``dicontour --help``) and remembered.
"""

from __future__ import annotations

from functools import cache


@cache
def version() -> str:
    """The installed distribution's version, e.g. ``"0.1.0"``.

    Examples
    --------
    >>> version()[0].isdigit()
    True
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("dicontour")
    except PackageNotFoundError:  # a source tree on sys.path that was never installed
        return "0+unknown"
