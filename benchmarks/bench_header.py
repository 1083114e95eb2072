"""Header reads on the real data (every DICOM file): the plain fast path beside pydicom.

* pydicom's header-only ``dcmread(stop_before_pixels=True)`` (the baseline);
* :func:`dicontour.read_dicom_header` through its careful pydicom path (what
  every file took before the plain fast path, and what a file that is not
  plain still takes);
* :func:`dicontour.read_dicom_header` as it runs: the real MR files are plain
  (explicit VR little endian, defined lengths), so they take the fast path of
  :mod:`dicontour._dicom_plain`.

The fast path is written here, not taken from pydicom, because this
measurement shows it is faster; tests/test_dicom_plain.py shows it gives the
same header or none.
"""

from __future__ import annotations

import sys

import pydicom
from _common import REAL_DATA, rate, report

import dicontour
import dicontour.dicom


def main() -> int:
    if not REAL_DATA.exists():
        print(f"skipped: real data not found at {REAL_DATA}")
        return 0
    paths = [str(path) for path in sorted((REAL_DATA / "dicoms").glob("*/*.dcm"))]
    print(f"{len(paths)} DICOM files")

    def pydicom_header() -> int:
        for path in paths:
            pydicom.dcmread(path, stop_before_pixels=True)
        return len(paths)

    def careful_header() -> int:
        for path in paths:
            dicontour.dicom._careful_header(path, path, dicontour.dicom.MAX_PIXELS, True)
        return len(paths)

    def our_header() -> int:
        for path in paths:
            dicontour.read_dicom_header(path)
        return len(paths)

    base = rate(pydicom_header)
    report("header: pydicom dcmread(stop_before_pixels)", base, "files/s")
    report("header: read_dicom_header, pydicom path", rate(careful_header), "files/s", base)
    report("header: read_dicom_header (plain fast path)", rate(our_header), "files/s", base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
