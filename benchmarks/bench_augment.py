"""Augmentation in the workers: BatchLoader with and without ``transform=`` (issue 8).

On the i-contour samples of the real data, batch 8, 2 workers, the same
loader three ways:

* no transform;
* ``Compose([RandomFlip(), RandomRot90(), RandomAffine(degrees=15,
  scale=(0.9, 1.1)), RandomIntensity()])``: every sample flipped, turned,
  rotated and zoomed (bilinear image, nearest-neighbour masks), gamma and
  scale;
* the same with the affine on one sample in five (``p=0.2``, nnU-Net's
  default rotation and scaling probability).

Goal: the rate with augmentation >= 0.5x the rate without.  Rates are
steady-state samples/s, the best of ``ROUNDS`` interleaved rounds of
``EPOCHS`` epochs (the machine is shared).  In one process it also times the
per-sample pieces: a read, each transform, and making the sample's generator
``default_rng([seed, epoch, k])``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
from _common import REAL_DATA, report
from bench_loader import best_rates

import dicontour
from dicontour.augment import Compose, RandomAffine, RandomFlip, RandomIntensity, RandomRot90

BATCH = 8
WORKERS = 2


def pipeline(affine_p: float = 1.0) -> Compose:
    return Compose(
        [
            RandomFlip(),
            RandomRot90(),
            RandomAffine(degrees=15, scale=(0.9, 1.1), p=affine_p),
            RandomIntensity(),
        ]
    )


def per_call_us(work: Callable[[], object], repeats: int = 200) -> float:
    """Best of 5 runs of ``repeats`` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            work()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e6


def main() -> int:
    if not REAL_DATA.exists():
        print(f"skipped: real data not found at {REAL_DATA}")
        return 0
    index = dicontour.scan(REAL_DATA)
    source = dicontour.IndexSource(index)
    eligible = np.flatnonzero(source.has("i"))
    n = len(eligible)
    print(f"{n} i-contour samples, batch {BATCH}, {WORKERS} workers")

    image, mask = source.read(int(eligible[0]), "i")
    planes = mask[None]
    rng = np.random.default_rng(0)
    pieces = {
        "read one sample (IndexSource.read)": lambda: source.read(int(eligible[1]), "i"),
        "default_rng([seed, epoch, k])": lambda: np.random.default_rng([0, 3, 1234]),
        "RandomFlip()": lambda: RandomFlip()(image, planes, rng),
        "RandomRot90()": lambda: RandomRot90()(image, planes, rng),
        "RandomAffine(degrees=15, scale=(0.9, 1.1))": lambda: RandomAffine(15)(image, planes, rng),
        "RandomIntensity()": lambda: RandomIntensity()(image, planes, rng),
        "the whole pipeline": lambda: pipeline()(image, planes, rng),
        "the whole pipeline, affine p=0.2": lambda: pipeline(0.2)(image, planes, rng),
    }
    try:
        from scipy import ndimage
    except ImportError:
        print("(scipy not installed: no comparison with scipy.ndimage.affine_transform)")
    else:
        matrix = np.array([[0.96, -0.26], [0.26, 0.96]])
        centre = (np.array(image.shape) - 1) / 2.0
        offset = centre - matrix @ centre

        def scipy_affine() -> None:
            ndimage.affine_transform(image, matrix, offset, order=1, mode="nearest")
            ndimage.affine_transform(planes[0].view(np.uint8), matrix, offset, order=0)

        pieces["RandomAffine, the same work in scipy.ndimage"] = scipy_affine
    print("per sample, one process:")
    for name, work in pieces.items():
        repeats = 50 if name.startswith("read") else 200
        print(f"  {name:<46} {per_call_us(work, repeats):>10,.0f} us")

    loaders = {
        "plain": dicontour.BatchLoader(index, BATCH, workers=WORKERS, seed=0),
        "augmented": dicontour.BatchLoader(
            index, BATCH, workers=WORKERS, seed=0, transform=pipeline()
        ),
        "augmented-p02": dicontour.BatchLoader(
            index, BATCH, workers=WORKERS, seed=0, transform=pipeline(0.2)
        ),
    }
    try:
        for loader in loaders.values():
            for _ in loader:  # warm-up: workers started, files in the page cache
                pass

        def epoch(loader: dicontour.BatchLoader) -> None:
            for _images, _masks in loader:
                pass

        runners = {name: (lambda loader=loader: epoch(loader)) for name, loader in loaders.items()}
        rates = best_rates(runners, n)
    finally:
        for loader in loaders.values():
            loader.close()

    base = rates["plain"]
    report("BatchLoader(workers=2), no transform", base, "samples/s")
    report("  + flips, rot90, affine, intensity", rates["augmented"], "samples/s", base)
    report("  + the same, affine p=0.2", rates["augmented-p02"], "samples/s", base)
    for name, label in (("augmented", "affine on every sample"), ("augmented-p02", "affine p=0.2")):
        ratio = rates[name] / base
        goal = "met" if ratio >= 0.5 else "NOT met"
        print(f"augmented / plain ({label}): {ratio:.2f}x (goal >= 0.5x: {goal})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
