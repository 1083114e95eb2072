"""The ``dicontour`` command line: a thin layer over the library.

Each subcommand lives in its own module with ``register(subparsers)``, which
adds its parser and sets ``run(args) -> int``.  :func:`main` is the one place
that turns an exception into one line on stderr and an exit code, for every
command (``--debug`` shows the traceback instead):

=== ==================================================================
0   the command completed (a scan that found problems included)
1   it failed: ``--strict`` with errors, a failed cache verify, a
    :class:`~dicontour.DicontourError`, an ``OSError`` (said in words:
    "file exists", "not a folder", "permission denied"...), out of memory
2   a usage error: bad options (argparse), option values the library
    refuses (``ValueError``), an unusable dataset root (``LayoutError``)
130 interrupted (Ctrl-C)
=== ==================================================================

Everything written for people goes through :func:`._format.echo`, which
escapes control characters (see :mod:`._format`); ``--json`` stays exact.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from .._version import version
from ..errors import DicontourError, LayoutError
from . import batches, cache, check, demo, export, intensity, preview, scan, segment, split
from ._format import Parser, echo, error, printable

#: Modules that each add one subcommand.
COMMANDS = [scan, demo, cache, batches, check, preview, intensity, segment, split, export]

#: An OSError's errno in words; others fall back to ``os.strerror``.
_OS_WORDS = {
    errno.EEXIST: "file exists",
    errno.ENOTDIR: "not a folder (a part of the path is a file)",
    errno.EISDIR: "is a folder, not a file",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "name too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EMFILE: "too many open files",
    errno.ENOTEMPTY: "folder not empty",
}


def package_version() -> str:
    """The installed distribution's version (read once, in :mod:`dicontour._version`)."""
    return version()


class _Version(argparse.Action):
    """``--version``: like argparse's, but the version is read only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        parser._print_message(f"dicontour {package_version()}\n", sys.stdout)
        parser.exit()


def build_parser() -> Parser:
    """The argument parser with every subcommand."""
    parser = Parser(
        prog="dicontour",
        description="Cardiac MRI DICOMs and contours: scan, check, and feed training.",
        epilog="exit codes: 0 done (problems found included), 1 failed, "
        "2 usage error or unusable dataset root, 130 interrupted",
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def describe_os_error(exc: OSError) -> str:
    """An ``OSError`` in words with its path(s): ``out/manifest.json: not a folder (...)``.

    Examples
    --------
    >>> describe_os_error(FileExistsError(errno.EEXIST, "File exists", "out"))
    'out: file exists'
    """
    words = _OS_WORDS.get(exc.errno) if exc.errno is not None else None
    if words is None and exc.errno is not None:
        words = os.strerror(exc.errno).lower()
    if words is None:  # no errno: a store's or a library's own OSError
        words = str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {words}" if paths else words


class _Printable(logging.Formatter):
    """``dicontour: warning: MESSAGE``, escaped, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(f"dicontour: {record.levelname.lower()}: {record.getMessage()}")


@contextmanager
def _human_diagnostics() -> Iterator[None]:
    """Route dicontour's log records and Python warnings through the escaping writer."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Printable())
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("dicontour")
    logger.addHandler(handler)

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        echo(printable(f"dicontour: warning: {category.__name__}: {message}"), err=True)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            yield
    finally:
        logger.removeHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug
    try:
        with _human_diagnostics():
            code = int(args.run(args))
        sys.stdout.flush()  # a reader that went away (`| head`) shows up here
        return code
    except BrokenPipeError:
        # No traceback for `dicontour scan --json ROOT | head`; point stdout at
        # devnull so the interpreter's last flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what shells report for a process ended by SIGPIPE
    except KeyboardInterrupt:
        if debug:
            raise
        error("interrupted")
        return 130
    except LayoutError as exc:
        if debug:
            raise
        error(exc)
        return 2
    except DicontourError as exc:
        if debug:
            raise
        error(exc)
        return 1
    except OSError as exc:
        # An output path that is a file, a full disk, a store that refuses us:
        # the environment's fault, said in words like the errors above.
        if debug:
            raise
        error(describe_os_error(exc))
        return 1
    except ValueError as exc:
        # An option value the library refuses (a size, a count): a usage error.
        if debug:
            raise
        error(exc)
        return 2
    except MemoryError:
        if debug:
            raise
        error("out of memory; try smaller sizes or fewer workers (--debug shows where)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
