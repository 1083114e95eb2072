"""Exception types.

Every error dicontour raises derives from :class:`DicontourError`, and each
subclass also derives from the matching built-in so that callers who catch
``ValueError`` or ``OSError`` keep working.  Errors about a file name the file
and say why; errors found while scanning carry the stable problem ``code`` the
scan reports for them.
"""

from __future__ import annotations

from functools import partial


class DicontourError(Exception):
    """Base class of every error raised by dicontour."""


class _FileError(DicontourError):
    """An error about one file: ``path``, a stable ``code`` and a ``reason``."""

    default_code = "unreadable-file"

    def __init__(self, path: object, reason: str, *, code: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.code = code or self.default_code
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its fields, so it survives the trip back from a worker process.
        return (partial(type(self), code=self.code), (self.path, self.reason))


class DicomError(_FileError, ValueError):
    """A DICOM file that cannot be used: not DICOM, truncated, no pixels, undecodable.

    Attributes
    ----------
    path : str
        The file.
    reason : str
        What is wrong, in words a person understands.
    code : str
        The scan's problem code (``unreadable-dicom``, ``no-pixel-data``,
        ``image-too-large``).
    """

    default_code = "unreadable-dicom"


class ContourError(_FileError, ValueError):
    """A contour file that cannot be used.

    Attributes
    ----------
    path : str
        The file.
    line : int or None
        1-based line number of the offending line, when one line is at fault.
    reason : str
        What is wrong.
    code : str
        The scan's problem code (``empty-contour``, ``unparseable-contour``,
        ``non-finite-coordinate``, ``too-few-points``, ``too-many-points``).
    """

    default_code = "unparseable-contour"

    def __init__(
        self, path: object, reason: str, *, line: int | None = None, code: str | None = None
    ) -> None:
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(path, f"{where}{reason}", code=code)
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (partial(type(self), line=self.line, code=self.code), (self.path, self.reason))


class LayoutError(DicontourError, ValueError):
    """The dataset root cannot be used at all (missing, no or malformed ``link.csv``)."""


class LoaderError(DicontourError, RuntimeError):
    """The batch loader cannot go on (a timeout, a worker that keeps dying, bad options)."""


class CacheError(DicontourError, OSError):
    """A preprocessed cache that is missing, corrupt or stale."""


class SplitsError(DicontourError, ValueError):
    """A splits file (``splits_final.json``) that is not JSON or not in the expected shape."""
