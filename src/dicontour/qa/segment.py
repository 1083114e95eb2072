"""Heuristic (non-learned) segmentation of the LV blood pool inside the o-contour.

Every method is a plain function ``method(image, o_mask, **params) -> mask``:

* ``image``: float ndarray of shape (H, W), the slice's intensities;
* ``o_mask``: bool ndarray of shape (H, W), inside the o-contour (the outer
  boundary of the myocardium);
* the result: bool ndarray of shape (H, W), the predicted blood pool (what the
  i-contour outlines, papillary muscles and trabeculations included), always
  inside ``o_mask``.

Methods are registered by name in :data:`METHODS` with their default
parameters and the grid that :mod:`dicontour.qa.study` searches by
leave-one-patient-out:

``otsu``
    Otsu's threshold inside the o-mask, the largest bright component, holes
    filled.  The baseline.
``gmm``
    A two-class Gaussian mixture fitted by EM to the intensities inside the
    o-mask; pixels whose posterior of the bright class exceeds ``posterior``;
    largest component, holes filled.
``grow``
    Region growing from the blood pool's centre: from a seed near the centre
    of the o-mask, neighbours are added while brighter than a threshold set at
    ``alpha`` of the way from the dark class mean to the bright one, never
    closer than ``margin`` pixels to the o-contour (the myocardium has a
    thickness); then a morphological closing of ``radius`` pixels and hole
    filling take in the papillary muscles.
``hull``
    The same threshold and margin, the largest bright component, holes
    filled, then its convex hull clipped to the o-mask: the endocardial
    border of a short-axis slice is close to convex, and the hull takes in
    the dark papillary muscles and trabeculations that the i-contour
    includes.  The best method on the real data; the default.

Coordinates are (row, col) throughout.  scipy.ndimage, skimage.morphology
(convex hull, disk) and sklearn.mixture (the two-Gaussian EM) are imported
inside the functions (the ``qa`` extra).  Otsu's threshold stays
dicontour's own (:mod:`dicontour.qa.threshold`): see its Notes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._docstrings import fill_doc
from ._optional import require
from .threshold import class_means, otsu_threshold

Method = Callable[..., np.ndarray]


def _ndimage():  # -> module scipy.ndimage
    return require("scipy.ndimage")


def _morphology():  # -> module skimage.morphology
    return require("skimage.morphology")


def _mixture():  # -> module sklearn.mixture
    return require("sklearn.mixture")


def _check(image: np.ndarray, o_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    o_mask = np.asarray(o_mask)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W); got ndim={image.ndim}")
    if o_mask.shape != image.shape:
        raise ValueError(
            f"o_mask shape {o_mask.shape} differs from image shape {image.shape} (both (H, W))"
        )
    return image.astype(np.float64, copy=False), o_mask.astype(bool, copy=False)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` (all False if ``mask`` is empty).

    Examples
    --------
    >>> mask = np.array([[1, 1, 0, 1], [1, 0, 0, 0]], bool)
    >>> largest_component(mask).astype(int)
    array([[1, 1, 0, 0],
           [1, 0, 0, 0]])
    """
    labels, count = _ndimage().label(mask)
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every enclosed hole filled."""
    return _ndimage().binary_fill_holes(mask)


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """The convex hull of ``mask``'s pixels (:func:`skimage.morphology.convex_hull_image`).

    The hull is that of the pixel squares (scikit-image's ``include_borders``),
    so it contains ``mask``.  Replaces a hand-written monotone chain: the
    scores on the real data moved by at most 0.0013 Dice (see
    ``benchmarks/qa_libraries.py``).

    Parameters
    ----------
    mask : bool ndarray of shape (H, W)

    Returns
    -------
    bool ndarray of shape (H, W)
        Contains ``mask``; empty if ``mask`` is.

    Examples
    --------
    >>> mask = np.zeros((5, 5), bool); mask[1, 1] = mask[3, 3] = mask[1, 3] = True
    >>> convex_hull_mask(mask).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 1, 1, 0],
           [0, 0, 0, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    # `| mask`: scikit-image's hull may leave out a pixel of a degenerate (one-line) mask.
    return _morphology().convex_hull_image(mask) | mask


def _depth(o_mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel to the nearest pixel outside the o-mask (or the edge)."""
    return _ndimage().distance_transform_edt(np.pad(o_mask, 1))[1:-1, 1:-1]


def _bright_core(
    image: np.ndarray,
    o_mask: np.ndarray,
    alpha: float,
    margin: float,
    depth: np.ndarray | None = None,
) -> np.ndarray:
    """The bright pixels away from the o-contour: the seed pixels of ``grow`` and ``hull``.

    Bright: over ``alpha`` of the way from the dark class mean to the bright one
    of Otsu's split inside the o-mask.  Away: more than ``margin`` pixels
    inside the o-mask (anywhere in it when no pixel is).  ``depth`` is
    :func:`_depth` of ``o_mask`` when the caller has it already.
    """
    values = image[o_mask]
    low, high = class_means(values, otsu_threshold(values))
    core = o_mask
    if margin > 0:
        inner = (_depth(o_mask) if depth is None else depth) > margin
        core = inner if inner.any() else o_mask
    return core & (image > low + alpha * (high - low))


#: Parameter sections shared by the methods' docstrings (see :func:`fill_doc`).
_DOCS = {
    "inputs": (
        "Parameters\n----------\n"
        "image : float ndarray of shape (H, W)\no_mask : bool ndarray of shape (H, W)"
    ),
    "alpha": (
        "alpha : float\n"
        "    Threshold position between the dark (0) and bright (1) class means of\n"
        "    Otsu's split inside the o-mask."
    ),
    "returns": (
        "Returns\n-------\nbool ndarray of shape (H, W)\n"
        "    The predicted blood pool: inside ``o_mask``, empty when ``o_mask`` is."
    ),
}


@fill_doc(**_DOCS)
def otsu(image: np.ndarray, o_mask: np.ndarray) -> np.ndarray:
    """Otsu's threshold inside the o-mask, largest bright component, holes filled.

    %(inputs)s

    %(returns)s

    Examples
    --------
    >>> image = np.zeros((7, 7)); image[2:5, 2:5] = 10.0; image[3, 3] = 0.0
    >>> int(otsu(image, np.ones((7, 7), bool)).sum())   # the ring of 8 and its hole
    9
    """
    image, o_mask = _check(image, o_mask)
    if not o_mask.any():
        return np.zeros_like(o_mask)
    bright = o_mask & (image > otsu_threshold(image[o_mask]))
    return fill_holes(largest_component(bright)) & o_mask


def _two_gaussians(values: np.ndarray, iterations: int = 100) -> tuple[np.ndarray, ...]:
    """A two-class 1-D Gaussian mixture (scikit-learn's EM), started from Otsu's split.

    Returns weights, means and standard deviations, dark class first.
    """
    threshold = otsu_threshold(values)
    dark = values <= threshold
    if dark.all() or not dark.any():
        return np.array([1.0, 0.0]), np.array([values.mean()] * 2), np.array([1.0, 1.0])
    model = _mixture().GaussianMixture(
        2,
        means_init=[[values[dark].mean()], [values[~dark].mean()]],
        weights_init=[dark.mean(), 1.0 - dark.mean()],
        max_iter=iterations,
        tol=1e-6,  # as tight as the hand-written EM's stop (means still to 1e-6)
        random_state=0,  # unused with these inits; fixed so a fit never varies
    )
    with warnings.catch_warnings():
        # Not converging within `iterations` is an answer here, as it was for the
        # hand-written EM this replaces: the last estimate is used.
        warnings.simplefilter("ignore", require("sklearn.exceptions").ConvergenceWarning)
        model.fit(values[:, None])
    mean = model.means_.ravel()
    sd = np.sqrt(model.covariances_.ravel())
    order = np.argsort(mean)
    return model.weights_[order], mean[order], sd[order]


@fill_doc(**_DOCS)
def gmm(image: np.ndarray, o_mask: np.ndarray, *, posterior: float = 0.001) -> np.ndarray:
    """Two-class Gaussian mixture inside the o-mask; bright-class posterior over ``posterior``.

    Pixels brighter than the bright class mean always count as bright and
    pixels darker than the dark class mean never do (a wide dark class would
    otherwise claim the brightest pixels).  Largest component, holes filled.

    %(inputs)s
    posterior : float
        In (0, 1); lower takes in more of the partial-volume border.

    %(returns)s
    """
    image, o_mask = _check(image, o_mask)
    if not 0.0 < posterior < 1.0:
        raise ValueError(f"posterior must be in (0, 1); got {posterior}")
    if not o_mask.any():
        return np.zeros_like(o_mask)
    values = image[o_mask]
    weight, mean, sd = _two_gaussians(values)
    density = weight / sd * np.exp(-0.5 * ((values[:, None] - mean) / sd) ** 2)
    total = density.sum(axis=1)
    bright_post = np.divide(density[:, 1], total, out=np.zeros_like(total), where=total > 0)
    bright = (bright_post > posterior) & (values > mean[0])
    bright |= values >= mean[1]
    mask = np.zeros_like(o_mask)
    mask[o_mask] = bright
    return fill_holes(largest_component(mask)) & o_mask


def _disk(radius: int) -> np.ndarray:
    return _morphology().disk(radius).astype(bool)


def _seed(depth: np.ndarray, bright: np.ndarray) -> tuple[int, int] | None:
    """The bright pixel nearest to the deepest point (``depth``: :func:`_depth`) of the o-mask."""
    if not bright.any():
        return None
    centre = np.unravel_index(int(np.argmax(depth)), depth.shape)
    rows, cols = np.nonzero(bright)
    k = int(np.argmin((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2))
    return int(rows[k]), int(cols[k])


@fill_doc(**_DOCS)
def grow(
    image: np.ndarray,
    o_mask: np.ndarray,
    *,
    alpha: float = 0.05,
    margin: float = 4.0,
    radius: int = 9,
) -> np.ndarray:
    """Region growing from the blood pool's centre, then closing and hole filling.

    %(inputs)s
    %(alpha)s
    margin : float
        Pixels (Euclidean) kept free next to the o-contour: the growth never
        enters the outer myocardium.
    radius : int
        Radius in pixels of the disk of the closing that takes in papillary
        muscles and trabeculations at the border.

    %(returns)s
    """
    image, o_mask = _check(image, o_mask)
    if not o_mask.any():
        return np.zeros_like(o_mask)
    ndi = _ndimage()
    depth = _depth(o_mask)  # once, for the margin and the seed
    bright = _bright_core(image, o_mask, alpha, margin, depth)
    seed = _seed(depth, bright)
    if seed is None:
        return np.zeros_like(o_mask)
    # Growing with a fixed acceptance test from a seed reaches exactly the seed's
    # 4-connected component of the accepted pixels.
    labels, _ = ndi.label(bright)
    region = labels == labels[seed]
    if radius > 0:
        pad = radius + 1
        closed = ndi.binary_closing(np.pad(region, pad), structure=_disk(int(radius)))
        region = closed[pad:-pad, pad:-pad] | region
    return fill_holes(region) & o_mask


@fill_doc(**_DOCS)
def hull(
    image: np.ndarray, o_mask: np.ndarray, *, alpha: float = 0.1, margin: float = 4.0
) -> np.ndarray:
    """Threshold away from the o-contour, largest component, convex hull.

    %(inputs)s
    %(alpha)s
    margin : float
        Pixels (Euclidean) next to the o-contour where no seed pixel is taken
        (the myocardium's minimum thickness); the hull may still extend there.

    %(returns)s

    Examples
    --------
    >>> image = np.zeros((9, 9)); image[2:7, 2:7] = 10.0; image[4, 2:4] = 0.0  # a notch
    >>> o_mask = np.ones((9, 9), bool)
    >>> int(hull(image, o_mask, margin=0).sum())      # the notch is filled back: 5 x 5
    25
    """
    image, o_mask = _check(image, o_mask)
    if not o_mask.any():
        return np.zeros_like(o_mask)
    bright = _bright_core(image, o_mask, alpha, margin)
    pool = fill_holes(largest_component(bright))
    if not pool.any():
        return pool
    return convex_hull_mask(pool) & o_mask


@dataclass(frozen=True)
class MethodSpec:
    """A registered segmentation method.

    Attributes
    ----------
    name : str
    function : callable
        ``function(image, o_mask, **params) -> bool mask``.
    defaults : dict
        The parameters used unless others are given: the grid point chosen on
        all well-aligned patients of the real data (see docs/heuristic-segmentation.md).
    grid : dict of str to tuple
        The values searched by leave-one-patient-out; the product is searched.
    summary : str
        One line for tables.
    """

    name: str
    function: Method
    defaults: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    summary: str = ""

    def __call__(self, image: np.ndarray, o_mask: np.ndarray, **params: Any) -> np.ndarray:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise TypeError(
                f"method {self.name!r} has no parameter {sorted(unknown)}; "
                f"its parameters are {sorted(self.defaults)}"
            )
        image, o_mask = _check(image, o_mask)
        params = {**self.defaults, **params}
        # Every method looks only at the o-mask and the pixels under it (distance
        # transforms and closings pad their input), so it runs on the o-mask's
        # bounding box plus one pixel: the same result, 10-20x less work.
        rows, cols = np.flatnonzero(o_mask.any(axis=1)), np.flatnonzero(o_mask.any(axis=0))
        if rows.size == 0:
            return np.zeros_like(o_mask)
        box = (
            slice(max(rows[0] - 1, 0), rows[-1] + 2),
            slice(max(cols[0] - 1, 0), cols[-1] + 2),
        )
        result = np.zeros_like(o_mask)
        result[box] = self.function(image[box], o_mask[box], **params)
        return result

    def combinations(self) -> list[dict[str, Any]]:
        """Every point of the grid, in a fixed order (the first wins ties)."""
        combos: list[dict[str, Any]] = [{}]
        for key, values in self.grid.items():
            combos = [{**combo, key: value} for combo in combos for value in values]
        return combos


_ALPHAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
_MARGINS = (0.0, 2.0, 3.0, 4.0, 5.0, 6.0)

#: The registered methods, by name.
METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("otsu", otsu, {}, {}, "Otsu inside o, largest component, holes filled"),
        MethodSpec(
            "gmm",
            gmm,
            {"posterior": 0.001},
            {"posterior": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5, 0.7)},
            "2-class Gaussian mixture (EM) inside o, largest component, holes filled",
        ),
        MethodSpec(
            "grow",
            grow,
            {"alpha": 0.05, "margin": 4.0, "radius": 9},
            {"alpha": _ALPHAS, "margin": _MARGINS, "radius": (0, 3, 6, 9)},
            "region growing from the centre away from o, closing, holes filled",
        ),
        MethodSpec(
            "hull",
            hull,
            {"alpha": 0.1, "margin": 4.0},
            {"alpha": _ALPHAS, "margin": _MARGINS},
            "threshold away from o, largest component, convex hull",
        ),
    )
}
#: The method used when none is named: the best on the real data.
DEFAULT_METHOD = "hull"


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; ValueError listing the known names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {sorted(METHODS)}") from None


def segment_blood_pool(
    image: np.ndarray, o_mask: np.ndarray, *, method: str = DEFAULT_METHOD, **params: Any
) -> np.ndarray:
    """Predict the LV blood pool (the i-contour's mask) inside an o-contour, without learning.

    Parameters
    ----------
    image : float ndarray of shape (H, W)
        The slice's intensities (bright blood, as in cine SSFP MRI).
    o_mask : bool ndarray of shape (H, W)
        Inside the o-contour.
    method : str
        A name in :data:`METHODS`; ``"hull"`` by default.
    **params
        Overrides of the method's default parameters.

    Returns
    -------
    bool ndarray of shape (H, W)
        The predicted blood pool, inside ``o_mask``.

    Raises
    ------
    ValueError
        Unknown method, or shapes that differ.
    TypeError
        A parameter the method does not have.

    Examples
    --------
    >>> sample = dicontour.scan("final_data").load(1)          # doctest: +SKIP
    >>> pool = segment_blood_pool(sample.image, sample.o_mask)  # doctest: +SKIP
    >>> dicontour.dice(pool, sample.i_mask)                     # doctest: +SKIP
    0.94...
    """
    return get_method(method)(image, o_mask, **params)
