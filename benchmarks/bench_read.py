"""Scan rate and load rate on the real data, each beside the naive way.

* scan: dicontour.scan (header-only reads of the paired DICOMs, contours parsed
  and checked) against reading every paired file fully with pydicom.
* load: Index.load (direct pixel read at the recorded offset + exact masks)
  against pydicom's full read + the challenge's contour parser and PIL helper.
* read_contour (issue 10, the kernels): microseconds per call on the real
  contour files with the numba parser and with the numpy fast path it replaced
  (``_numpy_baseline.py``, swapped in for the timing), in interleaved rounds,
  after checking that both give the same points, bit for bit.
"""

from __future__ import annotations

import sys

import numpy as np
import pydicom
from _common import REAL_DATA, rate, report
from _numpy_baseline import against_numpy, numpy_paths
from bench_mask import challenge_helper

import dicontour


def challenge_parse(path: str) -> list[tuple[float, float]]:
    """The challenge's contour parser, as users have it."""
    points = []
    with open(path) as handle:
        for line in handle:
            x, y = line.strip().split()
            points.append((float(x), float(y)))
    return points


def main() -> int:
    if not REAL_DATA.exists():
        print(f"skipped: real data not found at {REAL_DATA}")
        return 0
    index = dicontour.scan(REAL_DATA)
    root = str(REAL_DATA)
    records = list(index)
    files = len(records) + sum(bool(r.i_contour) + bool(r.o_contour) for r in records)
    print(f"{len(records)} labelled slices, {files} files read per scan")

    def naive_scan() -> int:
        for record in records:
            _ = pydicom.dcmread(f"{root}/{record.dicom}").pixel_array
            for contour in (record.i_contour, record.o_contour):
                if contour:
                    challenge_parse(f"{root}/{contour}")
        return files

    def our_scan() -> int:
        dicontour.scan(REAL_DATA)
        return files

    base = rate(naive_scan)
    report("scan: pydicom full read per file (baseline)", base, "files/s")
    report("scan: dicontour.scan", rate(our_scan), "files/s", base)

    def naive_load() -> int:
        for record in records:
            ds = pydicom.dcmread(f"{root}/{record.dicom}")
            image = ds.pixel_array.astype(np.float32)
            if record.i_contour:
                challenge_helper(challenge_parse(f"{root}/{record.i_contour}"), *image.shape[::-1])
        return len(records)

    def our_load() -> int:
        for k in range(len(index)):
            index.load(k)
        return len(index)

    base = rate(naive_load)
    report("load: pydicom + challenge helper (baseline)", base, "samples/s")
    report("load: Index.load", rate(our_load), "samples/s", base)
    kernel_against_numpy(sorted(str(p) for p in REAL_DATA.glob("contourfiles/*/*-contours/*.txt")))
    return 0


def kernel_against_numpy(paths: list[str]) -> None:
    """us per read_contour call, numba parser vs the numpy fast path, interleaved rounds."""
    kernel = [dicontour.read_contour(p).tobytes() for p in paths]
    with numpy_paths():
        assert [dicontour.read_contour(p).tobytes() for p in paths] == kernel, "points differ"

    def reads() -> int:
        for path in paths:
            dicontour.read_contour(path)
        return len(paths)

    numpy_us, kernel_us, ratio = against_numpy(reads)
    print(
        f"read_contour, {len(paths)} real files, us per call, median of 7 interleaved "
        f"rounds: numpy fast path {numpy_us:.1f}, numba kernel {kernel_us:.1f} "
        f"({ratio:.2f}x); same points"
    )


if __name__ == "__main__":
    sys.exit(main())
