"""Helpers shared by the benchmark scripts: the real data's location, timing, printing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

#: As in the tests: $DICONTOUR_REAL_DATA, else ../shared/data/final_data beside the checkout.
REAL_DATA = Path(
    os.environ.get("DICONTOUR_REAL_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "final_data"
)


def rate(work: Callable[[], int], *, min_seconds: float = 2.0, repeats: int = 3) -> float:
    """Best items/s over ``repeats`` runs of ``work`` (which returns the items it did).

    Each run repeats ``work`` until ``min_seconds`` have passed, so that short
    work is measured over many calls.  The best run is reported because the
    machine is shared: slower runs measure other processes, not the code.
    """
    best = 0.0
    for _ in range(repeats):
        items, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_seconds:
            items += work()
        best = max(best, items / elapsed)
    return best


def report(name: str, value: float, unit: str, baseline: float | None = None) -> None:
    """Print one figure, with its ratio to a baseline measured in the same run."""
    ratio = f"  ({value / baseline:.2f}x baseline)" if baseline else ""
    print(f"{name:<48} {value:>12,.0f} {unit}{ratio}", flush=True)
