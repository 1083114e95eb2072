"""Scan rate and load rate on the real data, each beside the naive way.

* scan: dicontour.scan (header-only reads of the paired DICOMs, contours parsed
  and checked) against reading every paired file fully with pydicom.
* load: Index.load (direct pixel read at the recorded offset + exact masks)
  against pydicom's full read + the challenge's contour parser and PIL helper.
"""

from __future__ import annotations

import sys

import numpy as np
import pydicom
from _common import REAL_DATA, rate, report
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
