"""Mask rate: dicontour.polygon_to_mask against the challenge's PIL helper.

Goal (issue 2): >= 20,000 masks/s for 256x256 masks of ~200-vertex contours on
one core, about 2.5x the PIL helper measured here in the same run.

Also measured (issue 10, item 2), in interleaved rounds: ``polygon_to_mask``
writing into a preallocated mask (``out=``, as the loader fills its slots)
beside returning a new one.  A fill by crossing parity over the polygon's box
(bincount + cumsum instead of sorting the crossings) was tried: 1.03-1.16x the
sort-based fill in this script's runs on this shared machine, not enough for a
second fill path, so the one sort-based fill stays.

Then (issue 10, the kernels): microseconds per ``polygon_to_mask`` call on the
real contours with the numba kernel and with the numpy fill it replaced
(``_numpy_baseline.py``, swapped in for the timing), in interleaved rounds,
after checking that both give the same masks.
"""

from __future__ import annotations

import statistics
import sys

import numpy as np
from _common import REAL_DATA, rate, report
from _numpy_baseline import against_numpy, numpy_paths
from PIL import Image, ImageDraw

from dicontour import polygon_to_mask, read_contour


def challenge_helper(polygon: list[tuple[float, float]], width: int, height: int) -> np.ndarray:
    """The widely copied challenge helper, written out as users have it."""
    img = Image.new(mode="L", size=(width, height), color=0)
    ImageDraw.Draw(img).polygon(xy=polygon, outline=0, fill=1)
    return np.array(img).astype(bool)


def contours() -> tuple[list[np.ndarray], str]:
    files = sorted(REAL_DATA.glob("contourfiles/*/*-contours/*.txt"))
    if files:
        return [read_contour(f) for f in files], f"{len(files)} real contours"
    rng = np.random.default_rng(0)
    theta = np.sort(rng.uniform(0, 2 * np.pi, (64, 200)), axis=1)
    radius = rng.uniform(20, 45, (64, 1)) * (1 + 0.1 * rng.standard_normal((64, 200)))
    polys = np.stack([128 + radius * np.cos(theta), 128 + radius * np.sin(theta)], axis=-1)
    return list(polys), "64 synthetic 200-vertex contours (real data not found)"


def main() -> int:
    polys, what = contours()
    vertices = np.mean([len(p) for p in polys])
    print(f"{what}, mean {vertices:.0f} vertices, 256x256 masks, one process")
    as_lists = [[tuple(v) for v in p.tolist()] for p in polys]

    def ours() -> int:
        for p in polys:
            polygon_to_mask(p, (256, 256))
        return len(polys)

    def pil() -> int:
        for p in as_lists:
            challenge_helper(p, 256, 256)
        return len(polys)

    out = np.zeros((256, 256), dtype=bool)

    def into() -> int:
        for p in polys:
            polygon_to_mask(p, (256, 256), out=out)
        return len(polys)

    base = rate(pil)
    report("challenge PIL helper (baseline)", base, "masks/s")
    report("dicontour.polygon_to_mask", rate(ours), "masks/s", base)
    # Interleaved rounds: load from other processes hits both alike.
    rounds = [
        (rate(ours, min_seconds=0.5, repeats=1), rate(into, min_seconds=0.5, repeats=1))
        for _ in range(7)
    ]
    print(
        f"polygon_to_mask(out=) / polygon_to_mask, median of {len(rounds)} interleaved "
        f"rounds: {statistics.median(b / a for a, b in rounds):.2f}x"
    )
    kernel_against_numpy(polys)
    return 0


def kernel_against_numpy(polys: list[np.ndarray]) -> None:
    """us per polygon_to_mask call, numba kernel vs the numpy fill, interleaved rounds."""
    kernel = [polygon_to_mask(p, (256, 256)) for p in polys]
    with numpy_paths():
        old = [polygon_to_mask(p, (256, 256)) for p in polys]
    assert all((a == b).all() for a, b in zip(kernel, old, strict=True)), "masks differ"
    out = np.zeros((256, 256), dtype=bool)

    def masks() -> int:
        for p in polys:
            polygon_to_mask(p, (256, 256), out=out)
        return len(polys)

    numpy_us, kernel_us, ratio = against_numpy(masks)
    print(
        f"polygon_to_mask(out=), us per call, median of 7 interleaved rounds: "
        f"numpy fill {numpy_us:.1f}, numba kernel {kernel_us:.1f} ({ratio:.2f}x); same masks"
    )


if __name__ == "__main__":
    sys.exit(main())
