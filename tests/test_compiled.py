"""dicontour._compiled: kernels cached on disk, and compiled anyway where no cache is writable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.slow
def test_kernels_work_without_a_writable_cache_directory():
    # NUMBA_CACHE_LOCATOR_CLASSES=ZipCacheLocator leaves numba no cache directory
    # for a plain source file, as a read-only install with no writable home does:
    # numba then refuses cache=True when the module is imported.
    script = (
        "import numpy as np; from dicontour import parse_contour, polygon_to_mask; "
        "points = parse_contour('0 0\\n0 3\\n3 3\\n3 0\\n'); "
        "print(points.tolist(), int(polygon_to_mask(points, (5, 5)).sum()))"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC), NUMBA_CACHE_LOCATOR_CLASSES="ZipCacheLocator")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("]]")[-1].strip() == "9"
    assert result.stdout.startswith("[[0.0, 0.0], [0.0, 3.0], [3.0, 3.0], [3.0, 0.0]]")
    assert result.stderr.count("no writable cache directory") == 1, result.stderr
