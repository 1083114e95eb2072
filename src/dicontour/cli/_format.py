"""Everything the CLI writes for people, and the tables it writes with.

Names in a dataset are not trusted: a patient id, a file name or a line of a
contour file may hold terminal control sequences (``ESC[2J`` clears the
screen), bidi overrides that make text read backwards, or undecodable bytes.
Every human-readable line therefore leaves through :func:`echo` (and argparse's
messages through :class:`Parser`), which passes it through :func:`printable`.
JSON output is left exact: :func:`json.dump` escapes control characters itself.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typeshed-only protocol: the type argparse declares for this method
    from _typeshed import SupportsWrite

#: Characters a terminal may act on instead of showing: C0 controls, DEL, C1 controls,
#: the Arabic letter mark, LRM/RLM, line/paragraph separators, bidi embeddings,
#: overrides and isolates, and lone surrogates (undecodable bytes of a file name).
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep: str = "") -> str:
    """``text`` with every control or bidi character written as a visible escape.

    Parameters
    ----------
    text : object
        Anything; it is converted with ``str``.
    keep : str
        Characters to leave as they are (``"\\n"`` for multi-line output).

    Returns
    -------
    str
        The text, with ``\\x1b`` for ESC, ``\\u202e`` for RIGHT-TO-LEFT
        OVERRIDE, ``\\udcff`` for an undecodable byte, and so on.

    Examples
    --------
    >>> printable("P1\\x1b[2J")
    'P1\\\\x1b[2J'
    >>> printable("abc\\u202edef")
    'abc\\\\u202edef'
    >>> printable("two\\nlines", keep="\\n")
    'two\\nlines'
    """
    text = str(text)
    if not keep:
        return _UNPRINTABLE.sub(_escape, text)
    return _UNPRINTABLE.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)


def echo(text: object = "", *, err: bool = False) -> None:
    """Write ``text`` and a newline for a person: stdout, or stderr with ``err``.

    The one way the CLI prints human-readable text; see the module docstring.
    """
    stream = sys.stderr if err else sys.stdout
    stream.write(printable(text, keep="\n") + "\n")


def error(message: object) -> None:
    """``dicontour: error: MESSAGE`` on stderr, on one line."""
    echo(f"dicontour: error: {printable(message)}", err=True)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage and error messages go through :func:`printable`."""

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            (file or sys.stderr).write(printable(message, keep="\n"))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Format rows as a fixed-width text table, numbers right-aligned.

    A cell is one line: line breaks inside it are escaped too, so a name
    cannot forge a row.
    """
    cells = [[printable(h) for h in headers]] + [[printable(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            cell.rjust(width) if numeric[i] and n else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_json(document: Any) -> None:
    """Write one JSON document to stdout (exact: control characters are JSON escapes)."""
    json.dump(document, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def print_document(args: argparse.Namespace, document: Any, report: Callable[[Any], str]) -> int:
    """``document`` as JSON under ``--json``, else ``report(document)``; exit code 0."""
    if args.json:
        print_json(document)
    else:
        echo(report(document))
    return 0


def show_progress(args: Any) -> bool:
    """Progress bars go to stderr, and only to a terminal, unless ``--quiet``."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def problem_section(problems: Sequence[Mapping[str, Any]]) -> list[str]:
    """A report's closing lines: a blank line, ``problems:``, one line each ([] if none).

    ``problems`` are :meth:`Problem.to_dict` documents.  Each problem is one
    line: line breaks in a path or message are escaped.
    """
    if not problems:
        return []
    return [
        "",
        "problems:",
        *(
            printable(f"  {p['severity']:<7} {p['code']:<24} {p['path']}: {p['message']}")
            for p in problems
        ),
    ]
