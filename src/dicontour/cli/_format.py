"""Plain-text tables and output helpers shared by the subcommands."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Format rows as a fixed-width text table, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
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
    """Write one JSON document to stdout."""
    json.dump(document, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def show_progress(args: Any) -> bool:
    """Progress bars go to stderr, and only to a terminal, unless ``--quiet``."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def problem_section(problems: Sequence[Mapping[str, Any]]) -> list[str]:
    """A report's closing lines: a blank line, ``problems:``, one line each ([] if none).

    ``problems`` are :meth:`Problem.to_dict` documents.
    """
    if not problems:
        return []
    return [
        "",
        "problems:",
        *(f"  {p['severity']:<7} {p['code']:<24} {p['path']}: {p['message']}" for p in problems),
    ]
