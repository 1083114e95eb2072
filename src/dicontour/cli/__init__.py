"""The ``dicontour`` command line: a thin layer over the library.

Each subcommand lives in its own module with ``register(subparsers)``, which
adds its parser and sets ``run(args) -> int``.  :func:`main` turns any
:class:`~dicontour.DicontourError` into one line on stderr and an exit code
(2 for an unusable input), and an ``OSError`` (an output path that is a file,
a store that refuses access) into one line and exit 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import DicontourError, LayoutError
from . import batches, cache, check, demo, intensity, preview, scan, segment, split

#: Modules that each add one subcommand.
COMMANDS = [scan, demo, cache, batches, check, preview, intensity, segment, split]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="dicontour",
        description="Cardiac MRI DICOMs and contours: scan, check, and feed training.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a reader that went away (`| head`) shows up here
        return code
    except BrokenPipeError:
        # No traceback for `dicontour scan --json ROOT | head`; point stdout at
        # devnull so the interpreter's last flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what shells report for a process ended by SIGPIPE
    except LayoutError as exc:
        if args.debug:
            raise
        print(f"dicontour: error: {exc}", file=sys.stderr)
        return 2
    except DicontourError as exc:
        if args.debug:
            raise
        print(f"dicontour: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # An output path that is a file, a full disk, a store that refuses us:
        # the environment's fault, said in one line like the errors above.
        if args.debug:
            raise
        print(f"dicontour: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dicontour: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
