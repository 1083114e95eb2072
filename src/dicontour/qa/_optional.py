"""Import the optional dependencies of the QA tools, naming the extra that provides them."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # matplotlib is optional (the qa extra)
    from matplotlib.figure import Figure


def require(module: str, *, extra: str = "qa") -> ModuleType:
    """Import ``module``, or raise ImportError naming ``pip install 'dicontour[extra]'``.

    Examples
    --------
    >>> require("numpy").__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} is needed for this QA tool; "
            f"install it with: pip install 'dicontour[{extra}]'"
        ) from exc


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure not registered with pyplot: no backend switch, no global state.

    ``figure.savefig(path)`` renders it with Agg for PNG.
    """
    require("matplotlib")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def save_figure(figure: Figure, path: Path, *, dpi: int) -> Path:
    """Lay ``figure`` out tightly and write it to ``path`` (folders created); return ``path``."""
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path
