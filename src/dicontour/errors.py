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
        The scan's problem code (``unreadable-dicom``, ``missing-dicom``,
        ``no-pixel-data``, ``image-too-large``, ``file-too-large``,
        ``header-too-large``, ``invalid-rescale``).
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
        ``non-finite-coordinate``, ``too-few-points``, ``too-many-points``,
        ``out-of-bounds``, ``too-many-crossings``).
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


class RefusedFileError(_FileError, OSError):
    """A path that dicontour will not read: not a regular file, or a link it does not follow.

    Raised before any byte is read (a FIFO would block a read forever, a device
    never ends, a link out of the dataset root would leak what it points to).

    Attributes
    ----------
    path : str
        The path as asked for (never the link's target).
    reason : str
        What it is, and why it is not read.
    code : str
        The scan's problem code: ``not-a-regular-file``, ``link-outside-root``,
        ``broken-link`` or ``unreadable-folder``.
    """

    default_code = "not-a-regular-file"


class LayoutError(DicontourError, ValueError):
    """The dataset root cannot be used at all (missing, no or malformed ``link.csv``)."""


class LoaderError(DicontourError, RuntimeError):
    """The batch loader cannot go on (a timeout, a worker that keeps dying, bad options)."""


class EngineError(DicontourError, RuntimeError):
    """An engine cannot start, its cluster cannot run the work, or a task failed untyped.

    Raised for a Dask scheduler that cannot be reached or is lost, workers that
    die or never come, workers that run another dicontour version or do not see
    the dataset and cache as this process does (see :mod:`dicontour.engine`).
    """


class CacheError(DicontourError, OSError):
    """A preprocessed cache that is missing, corrupt or stale."""


class SplitsError(DicontourError, ValueError):
    """A splits file (``splits_final.json``) that is not JSON or not in the expected shape."""
