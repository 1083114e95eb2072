"""Hand-written QA pieces vs the libraries that could replace them (issue 12).

For each piece -- Otsu's threshold (``qa/threshold.py``), the convex hull and
the disk footprint (``qa/segment.py``), the two-Gaussian EM -- the per-patient
Dice of every segmentation method on the real data, with dicontour's own
piece and with the library's (``skimage.filters.threshold_otsu``,
``skimage.morphology.convex_hull_image`` / ``disk``,
``sklearn.mixture.GaussianMixture``), and whether the pixel checks
(``dicontour check``) still find the same problems.  A swap is made only when
every score stays within 0.005 and the checks are unchanged -- and the
piece's tested contract still holds: Otsu's does not (see the first line of
the output, and ``dicontour.qa.threshold``), so dicontour keeps its own.
The figures of the run on the real data are in ``qa_libraries.txt``.

Run: ``PYTHONPATH=src python benchmarks/qa_libraries.py`` (needs the real data).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from _common import REAL_DATA
from skimage.filters import threshold_otsu
from skimage.morphology import convex_hull_image, disk
from sklearn.mixture import GaussianMixture

import dicontour
from dicontour.qa import checks, segment
from dicontour.qa.segment import METHODS
from dicontour.qa.study import evaluate, load_labelled
from dicontour.raster import polygon_to_mask

TOLERANCE = 0.005


# --- dicontour's hand-written pieces, as they were before issue 12 ---------------------


def own_hull(mask: np.ndarray) -> np.ndarray:
    """dicontour\'s hand-written hull (before issue 12): monotone chain of pixel corners."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros_like(mask)
    first = mask[rows].argmax(axis=1)
    last = mask.shape[1] - 1 - mask[rows, ::-1].argmax(axis=1)
    # Corners (x, y) of the extreme pixels of each row: x = col -+ 0.5, y = row -+ 0.5.
    xs = np.concatenate([first - 0.5, first - 0.5, last + 0.5, last + 0.5])
    ys = np.concatenate([rows - 0.5, rows + 0.5, rows - 0.5, rows + 0.5])
    hull = _monotone_chain(np.column_stack([xs, ys]))
    # Shrink the corner hull by a hair so that centres of pixels outside the mask
    # that only touch a hull edge stay out; the mask's own centres are 0.5 inside.
    centre = hull.mean(axis=0)
    hull = centre + (hull - centre) * (1.0 - 1e-9)
    return polygon_to_mask(hull, mask.shape) | mask


def _monotone_chain(points: np.ndarray) -> np.ndarray:
    """Convex hull vertices (counter-clockwise in x-right, y-up terms) of 2-D points."""
    points = np.unique(points, axis=0)  # sorted by x, then y
    if len(points) < 3:
        return points

    def half(sequence: np.ndarray) -> list[np.ndarray]:
        chain: list[np.ndarray] = []
        for p in sequence:
            while len(chain) >= 2:
                (ax, ay), (bx, by) = chain[-2], chain[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(points), half(points[::-1])
    return np.array(lower[:-1] + upper[:-1])


def own_two_gaussians(values: np.ndarray, iterations: int = 100) -> tuple[np.ndarray, ...]:
    """EM for a two-class 1-D Gaussian mixture, started from Otsu's split.

    Returns weights, means and standard deviations, dark class first.
    """
    threshold = segment.otsu_threshold(values)
    dark = values <= threshold
    if dark.all() or not dark.any():
        return np.array([1.0, 0.0]), np.array([values.mean()] * 2), np.array([1.0, 1.0])
    weight = np.array([dark.mean(), 1.0 - dark.mean()])
    mean = np.array([values[dark].mean(), values[~dark].mean()])
    floor = max(1e-6, 1e-3 * float(np.ptp(values)))  # keeps a class from collapsing
    sd = np.maximum([values[dark].std(), values[~dark].std()], floor)
    for _ in range(iterations):
        density = weight / sd * np.exp(-0.5 * ((values[:, None] - mean) / sd) ** 2)
        total = density.sum(axis=1, keepdims=True)
        total[total == 0] = 1.0
        resp = density / total
        n = resp.sum(axis=0)
        if (n <= 0).any():
            break
        new_mean = (resp * values[:, None]).sum(axis=0) / n
        sd = np.maximum(np.sqrt((resp * (values[:, None] - new_mean) ** 2).sum(axis=0) / n), floor)
        weight = n / len(values)
        converged = np.allclose(new_mean, mean, rtol=0, atol=1e-6 * (1.0 + np.abs(mean).max()))
        mean = new_mean
        if converged:
            break
    order = np.argsort(mean)
    return weight[order], mean[order], sd[order]


def own_disk(radius: int) -> np.ndarray:
    span = np.arange(-radius, radius + 1)
    return span[:, None] ** 2 + span[None, :] ** 2 <= radius**2


# --- the libraries' ---------------------------------------------------------------------


def skimage_otsu(values, *, bins: int = 256) -> float:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.min() == values.max():
        return float(values.min())
    return float(threshold_otsu(values, nbins=bins))


def skimage_hull(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    return convex_hull_image(mask) | mask if mask.any() else np.zeros_like(mask)


def sklearn_two_gaussians(values: np.ndarray, iterations: int = 100) -> tuple[np.ndarray, ...]:
    threshold = segment.otsu_threshold(values)
    dark = values <= threshold
    if dark.all() or not dark.any():
        return np.array([1.0, 0.0]), np.array([values.mean()] * 2), np.array([1.0, 1.0])
    model = GaussianMixture(
        2,
        means_init=[[values[dark].mean()], [values[~dark].mean()]],
        weights_init=[dark.mean(), 1.0 - dark.mean()],
        max_iter=iterations,
        tol=1e-6,
        random_state=0,
    ).fit(values[:, None])
    mean = model.means_.ravel()
    sd = np.sqrt(model.covariances_.ravel())
    order = np.argsort(mean)
    return model.weights_[order], mean[order], sd[order]


#: The hand-written pieces: the baseline every swap is measured against.
OWN = [
    (segment, "convex_hull_mask", own_hull),
    (segment, "_disk", own_disk),
    (segment, "_two_gaussians", own_two_gaussians),
]

SWAPS = {
    "otsu -> skimage.filters.threshold_otsu": [
        (segment, "otsu_threshold", skimage_otsu),
        (checks, "otsu_threshold", skimage_otsu),
    ],
    "convex hull -> skimage.morphology.convex_hull_image": [
        (segment, "convex_hull_mask", skimage_hull)
    ],
    "disk -> skimage.morphology.disk": [
        (segment, "_disk", lambda radius: disk(radius).astype(bool))
    ],
    "two-Gaussian EM -> sklearn.mixture.GaussianMixture": [
        (segment, "_two_gaussians", sklearn_two_gaussians)
    ],
}


@contextlib.contextmanager
def swapped(replacements) -> Iterator[None]:
    saved = [(module, name, getattr(module, name)) for module, name, _ in replacements]
    try:
        for module, name, value in replacements:
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def scores(slices) -> dict[str, dict[str, float]]:
    return {
        method: {
            pid: p["dice"] for pid, p in evaluate(slices, method).to_dict()["patients"].items()
        }
        for method in sorted(METHODS)
    }


def main() -> None:
    # Otsu's contract beyond the scores: two clusters split in the middle of their gap.
    gap = [0, 0, 1, 1, 9, 10, 10]
    print(
        f"otsu on {gap}: dicontour {segment.otsu_threshold(gap):.3f} (middle of the gap 1..9), "
        f"scikit-image {skimage_otsu(gap):.3f} (centre of the first best bin)"
    )
    index = dicontour.scan(REAL_DATA)
    slices = load_labelled(index)
    with swapped(OWN):
        own = scores(slices)
        own_checks = [p.to_dict() for p in checks.check_index(index)]
    for label, replacements in SWAPS.items():
        with swapped(OWN), swapped(replacements):
            theirs = scores(slices)
            same_checks = [p.to_dict() for p in checks.check_index(index)] == own_checks
        worst = max(abs(theirs[m][pid] - own[m][pid]) for m in own for pid in own[m])
        verdict = "within tolerance" if worst <= TOLERANCE and same_checks else "beyond tolerance"
        print(
            f"\n{label}: largest Dice change {worst:.4f}, checks unchanged: {same_checks}"
            f" -> {verdict}"
        )
        for method in own:
            row = "  ".join(
                f"{pid[-5:]} {own[method][pid]:.4f}->{theirs[method][pid]:.4f}"
                for pid in own[method]
            )
            print(f"  {method:5s} {row}")


if __name__ == "__main__":
    main()
