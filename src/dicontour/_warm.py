"""Load the compiled kernels now, so that processes forked later start with them ready.

Imported by the cache build's forkserver (:data:`dicontour.engine.PRELOAD`):
the first call of a numba kernel in a process costs about 0.3 CPU-second
(numba's compiler starts and loads the kernel from its on-disk cache), which
every worker forked from the server would otherwise pay again, at the start
of every build.  Importing this module makes one tiny call of each kernel a
cache build's tasks run, with the argument types they run them with.
"""

from __future__ import annotations

import numpy as np

from .contour import check_bounds, parse_contour
from .dicom import _to_float32
from .raster import polygon_to_mask


def warm() -> None:
    """Call each kernel once on a tiny input (contour, extent, raster, rescale)."""
    points = parse_contour("0 0\n2 0\n0 2\n")
    check_bounds(points, (3, 3))
    polygon_to_mask(points, (3, 3))
    image = np.empty((2, 2), np.float32)
    one, zero = np.float32(1.0), np.float32(0.0)
    for stored in (np.uint16, np.int16):  # the stored pixel types of MR images
        _to_float32(np.zeros((2, 2), stored), image, one, zero, False, False)


warm()
