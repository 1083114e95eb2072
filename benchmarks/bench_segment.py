"""Heuristic segmentation speed and the cost of the QA checks (issue 5).

* slices/s of each registered method (``dicontour.qa.segment.METHODS``) with
  its default parameters, against the Otsu baseline measured in the same run;
* the scan with its consistency checks against a scan whose checks are
  skipped (``check_patient`` replaced by a no-op): the checks rasterise each
  polygon once and must not make the header-only scan slow;
* ``check_index`` (pixel checks) in slices/s.

On the real data's slices with both contours, or a phantom where the real
data is absent.  Best of a few rounds (the machine is shared).
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from pathlib import Path

from _common import REAL_DATA, rate, report

import dicontour
from dicontour.phantom import write_phantom
from dicontour.qa.checks import check_index
from dicontour.qa.segment import METHODS
from dicontour.qa.study import load_labelled

# The module, not the function that dicontour/__init__ re-exports under the same name.
scan_module = importlib.import_module("dicontour.scan")


def _root(scratch: Path) -> Path:
    if REAL_DATA.is_dir():
        return REAL_DATA
    print("real data not found: using a phantom (5 patients x 40 slices, 256x256)")
    write_phantom(scratch / "data", patients=5, slices=40, shape=(256, 256), faults=False)
    return scratch / "data"


def _best_seconds(work, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        root = _root(Path(scratch))
        index = dicontour.scan(root)
        slices = load_labelled(index)
        print(f"{len(slices)} slices with both contours from {root}")

        def run(name: str):
            spec = METHODS[name]

            def work() -> int:
                for item in slices:
                    spec(item.image, item.o_mask)
                return len(slices)

            return work

        baseline = rate(run("otsu"), min_seconds=1.0)
        report("segment otsu (baseline)", baseline, "slices/s")
        for name in METHODS:
            if name != "otsu":
                report(f"segment {name}", rate(run(name), min_seconds=1.0), "slices/s", baseline)

        with_checks = _best_seconds(lambda: dicontour.scan(root))
        original = scan_module.check_patient
        scan_module.check_patient = lambda records, polygons: []
        try:
            without = _best_seconds(lambda: dicontour.scan(root))
        finally:
            scan_module.check_patient = original
        report("scan without consistency checks (baseline)", 1 / without, "scans/s")
        report("scan with consistency checks", 1 / with_checks, "scans/s", 1 / without)

        checked = rate(lambda: (check_index(index), len(index))[1], min_seconds=1.0, repeats=2)
        report("check_index (pixel checks)", checked, "slices/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
