"""dicontour.augment: each transform's invariants, by hand, by property, and against scipy.

Geometry is traced with images whose pixels are all different (``arange``):
where an output pixel's value came from tells where its mask value must have
come from, so "image and masks move together" is checked pixel by pixel.
The affine resampling is compared with ``scipy.ndimage.affine_transform``, an
independent implementation of the same convention.
"""

from __future__ import annotations

import importlib
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicontour.augment import (
    Compose,
    RandomAffine,
    RandomCrop,
    RandomFlip,
    RandomIntensity,
    RandomRot90,
    affine,
    from_monai,
    from_torchio,
)

shapes = st.tuples(st.integers(1, 12), st.integers(1, 12))
seeds = st.integers(0, 2**32 - 1)


def numbered(shape: tuple[int, int], seed: int, channels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """An image of unique values 1..H*W and random masks (C, H, W)."""
    image = np.arange(1, shape[0] * shape[1] + 1, dtype=np.float32).reshape(shape)
    mask = np.random.default_rng(seed).random((channels, *shape)) < 0.4
    return image, mask


def assert_moved_together(image, mask, out, out_mask) -> None:
    """Every output pixel's masks are the masks of the input pixel its value came from."""
    assert out_mask.dtype == np.bool_ and out_mask.shape[1:] == out.shape
    where = {float(v): divmod(k, image.shape[1]) for k, v in enumerate(image.ravel())}
    for (r, c), value in np.ndenumerate(out):
        if value == 0:  # padding: no source pixel, masks False
            assert not out_mask[:, r, c].any()
            continue
        source = where[float(value)]
        np.testing.assert_array_equal(out_mask[:, r, c], mask[:, source[0], source[1]])


# ---------------------------------------------------------------- flips, turns, crops


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=seeds, axes=st.sampled_from([(0,), (1,), (0, 1)]))
@pytest.mark.slow
def test_flip_permutes_pixels_and_moves_masks_along(shape, seed, axes) -> None:
    image, mask = numbered(shape, seed)
    out, out_mask = RandomFlip(axes=axes, p=0.5)(image, mask, np.random.default_rng(seed))
    assert out.shape == image.shape
    assert sorted(out.ravel()) == sorted(image.ravel())
    assert_moved_together(image, mask, out, out_mask)


def test_flip_by_hand() -> None:
    image = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    mask = (image == 1)[None]
    out, out_mask = RandomFlip(axes=(0, 1), p=1.0)(image, mask, None)
    np.testing.assert_array_equal(out, [[6, 5, 4], [3, 2, 1]])
    assert out_mask[0, 1, 2] and out_mask.sum() == 1
    same, _ = RandomFlip(p=0.0)(image, mask, None)
    np.testing.assert_array_equal(same, image)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=seeds, p=st.sampled_from([0.0, 0.5, 1.0]))
@pytest.mark.slow
def test_rot90_permutes_pixels_keeps_shape_and_moves_masks_along(shape, seed, p) -> None:
    image, mask = numbered(shape, seed)
    out, out_mask = RandomRot90(p=p)(image, mask, np.random.default_rng(seed))
    assert out.shape == image.shape  # non-square images turn by half turns only
    assert sorted(out.ravel()) == sorted(image.ravel())
    assert_moved_together(image, mask, out, out_mask)


def test_rot90_reaches_every_quarter_turn_of_a_square() -> None:
    image, mask = numbered((3, 3), 0)
    seen = set()
    for seed in range(40):
        out, _ = RandomRot90()(image, mask, np.random.default_rng(seed))
        seen.add(out.tobytes())
    turns = {np.rot90(image, k).astype(np.float32).tobytes() for k in range(4)}
    assert seen == turns


@settings(max_examples=60, deadline=None)
@given(shape=shapes, size=shapes, seed=seeds)
@pytest.mark.slow
def test_crop_or_pad_gives_the_size_and_a_window_of_the_input(shape, size, seed) -> None:
    image, mask = numbered(shape, seed)
    out, out_mask = RandomCrop(size)(image, mask, np.random.default_rng(seed))
    assert out.shape == size and out_mask.shape == (2, *size)
    kept = out[out != 0]
    expected = min(shape[0], size[0]) * min(shape[1], size[1])
    assert kept.size == expected  # a window: every input pixel at most once, none made up
    rows, columns = np.nonzero(out)
    window = out[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    assert window.size == expected and (window != 0).all()  # one contiguous block
    # The block is a block of the input, in the same arrangement (differences by rows and columns).
    if window.shape[1] > 1:
        assert (np.diff(window, axis=1) == 1).all()
    if window.shape[0] > 1:
        assert (np.diff(window, axis=0) == shape[1]).all()
    assert_moved_together(image, mask, out, out_mask)


# ---------------------------------------------------------------- intensity


@settings(max_examples=60, deadline=None)
@given(
    pixels=st.lists(st.floats(-1000, 1000, width=32), min_size=4, max_size=4),
    seed=seeds,
)
def test_intensity_keeps_masks_and_the_order_of_pixels(pixels, seed) -> None:
    image = np.array(pixels, np.float32).reshape(2, 2)
    mask = np.array([[[True, False], [False, True]]])
    out, out_mask = RandomIntensity(scale=(0.5, 2.0), gamma=(0.5, 2.0))(
        image, mask.copy(), np.random.default_rng(seed)
    )
    np.testing.assert_array_equal(out_mask, mask)
    assert out.dtype == np.float32 and out.shape == image.shape
    # Gamma on the image's own range and a positive scale never swap two pixels.
    order = np.argsort(image.ravel(), kind="stable")
    assert (np.diff(out.ravel()[order]) >= -1e-3 * (1 + np.abs(out).max())).all()
    assert np.isfinite(out).all()
    assert image.ravel().tolist() == pytest.approx(pixels)  # the input is not modified


def test_intensity_by_hand() -> None:
    image = np.array([[10.0, 20.0, 30.0]], np.float32)
    mask = np.zeros((1, 1, 3), bool)
    # gamma 2 on [10, 30]: 10 + 20 * ((x - 10) / 20) ** 2 -> 10, 15, 30; then x 0.5
    out, _ = RandomIntensity(scale=(0.5, 0.5), gamma=(2.0, 2.0))(image, mask, None)
    np.testing.assert_allclose(out, [[5.0, 7.5, 15.0]], rtol=1e-6)
    constant = np.full((2, 2), 3.0, np.float32)
    out, _ = RandomIntensity(scale=(2.0, 2.0), gamma=(0.5, 0.5))(constant, mask, None)
    np.testing.assert_array_equal(out, np.full((2, 2), 6.0))


# ---------------------------------------------------------------- affine


def _rotation(degrees: float, zoom: float) -> np.ndarray:
    angle = np.radians(degrees)
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / zoom


def test_affine_identity_changes_nothing() -> None:
    image, mask = numbered((7, 9), 1)
    out, out_mask = affine(image, mask, np.eye(2))
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out_mask, mask)


@settings(max_examples=40, deadline=None)
@given(
    degrees=st.floats(-30, 30),
    zoom=st.floats(0.8, 1.25),
    size=st.tuples(st.integers(8, 40), st.integers(8, 40)),
    seed=seeds,
)
@pytest.mark.slow
def test_affine_matches_scipy(degrees, zoom, size, seed) -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(seed)
    image = (rng.random(size) * 1000).astype(np.float32)
    mask = np.zeros((2, *size), bool)
    mask[:, 2:-2, 2:-2] = rng.random((2, size[0] - 4, size[1] - 4)) < 0.5
    matrix = _rotation(degrees, zoom)
    centre = (np.array(size) - 1) / 2.0
    offset = centre - matrix @ centre
    out, out_mask = affine(image, mask, matrix)
    expected = ndimage.affine_transform(image, matrix, offset, order=1, mode="nearest")
    np.testing.assert_allclose(out, expected, atol=0.05)  # float32 coordinates vs float64
    for channel in range(2):
        expected_mask = ndimage.affine_transform(
            mask[channel].astype(np.uint8), matrix, offset, order=0, mode="constant", cval=0
        ).astype(bool)
        differ = np.argwhere(out_mask[channel] != expected_mask)
        # Only where a source coordinate sits on a rounding tie may the two differ.
        for r, c in differ:
            source = matrix @ [r, c] + offset
            assert (np.abs(source - np.round(source) - 0.5) < 1e-6).any() or (
                np.abs(source - np.round(source) + 0.5) < 1e-6
            ).any(), (r, c, source)


@settings(max_examples=40, deadline=None)
@given(degrees=st.floats(0, 20), zoom=st.floats(0.9, 1.1), seed=seeds)
def test_random_affine_nearest_moves_image_and_masks_identically(degrees, zoom, seed) -> None:
    mask = np.zeros((1, 24, 20), bool)
    mask[0, 6:17, 5:14] = np.random.default_rng(seed).random((11, 9)) < 0.6
    image = mask[0] * 1.0
    transform = RandomAffine(degrees=degrees, scale=(zoom, zoom), interpolation="nearest")
    out, out_mask = transform(image.astype(np.float32), mask, np.random.default_rng(seed))
    assert out_mask.dtype == np.bool_ and out.shape == image.shape
    np.testing.assert_array_equal(out, out_mask[0] * 1.0)


def test_random_affine_keeps_masks_bool_with_bilinear_images() -> None:
    image, mask = numbered((16, 16), 3)
    out, out_mask = RandomAffine(degrees=15)(image, mask, np.random.default_rng(0))
    assert out.dtype == np.float32 and out_mask.dtype == np.bool_
    assert out.min() >= image.min() and out.max() <= image.max()  # interpolation, no overshoot


# ---------------------------------------------------------------- composition, checks


def test_compose_applies_in_order_with_one_generator() -> None:
    image, mask = numbered((6, 6), 2)
    steps = [RandomFlip(), RandomRot90(), RandomIntensity()]
    got = Compose(steps)(image, mask, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    expected = (image, mask)
    for step in steps:
        expected = step(*expected, rng)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_every_transform_pickles_and_keeps_its_behaviour() -> None:
    transform = Compose(
        [RandomFlip(), RandomRot90(), RandomAffine(), RandomIntensity(), RandomCrop((5, 5))]
    )
    copy = pickle.loads(pickle.dumps(transform))
    assert copy == transform
    image, mask = numbered((8, 8), 4)
    a = transform(image, mask, np.random.default_rng(9))
    b = copy(image, mask, np.random.default_rng(9))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RandomFlip(p=1.5), "p must be a probability"),
        (lambda: RandomFlip(axes=(2,)), "axes must be 0"),
        (lambda: RandomRot90(p=-0.1), "p must be a probability"),
        (lambda: RandomAffine(degrees=200), "degrees must be in"),
        (lambda: RandomAffine(scale=(1.1, 0.9)), "scale must be finite"),
        (lambda: RandomAffine(scale=(0, 1)), "scale must be finite"),
        (lambda: RandomAffine(interpolation="cubic"), "interpolation must be"),
        (lambda: RandomIntensity(gamma=(-1, 1)), "gamma must be finite"),
        (lambda: RandomIntensity(scale=3), "scale must be a"),
        (lambda: RandomCrop((0, 4)), "size must be positive"),
        (lambda: RandomCrop(5), "size must be"),
        (lambda: Compose([1]), "Compose takes callables"),
    ],
)
def test_bad_parameters_are_named(make, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# ---------------------------------------------------------------- MONAI and TorchIO


def _monai():
    try:
        return importlib.import_module("monai.transforms")
    except ImportError as exc:
        pytest.skip(f"MONAI is not importable: {exc}")


def _torchio():
    try:
        return importlib.import_module("torchio")
    except ImportError as exc:
        pytest.skip(f"TorchIO is not importable: {exc}")


def _shifted_square() -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((2, 24, 24), bool)
    mask[0, 4:12, 6:15] = True
    mask[1, 3:14, 5:17] = True
    return (mask[1] * 100.0 + mask[0] * 50.0).astype(np.float32), mask


@pytest.mark.slow
def test_monai_adapter_is_reproducible_and_moves_masks_with_the_image() -> None:
    transforms = _monai()
    keys = ["image", "label"]
    transform = from_monai(
        transforms.Compose(
            [
                transforms.RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
                transforms.RandRotate90d(keys=keys, prob=1.0),
            ]
        )
    )
    image, mask = _shifted_square()
    results = [transform(image, mask, np.random.default_rng([0, 0, k])) for k in range(8)]
    again = [transform(image, mask, np.random.default_rng([0, 0, k])) for k in range(8)]
    for (out, out_mask), (out2, out_mask2) in zip(results, again, strict=True):
        np.testing.assert_array_equal(out, out2)
        np.testing.assert_array_equal(out_mask, out_mask2)
        assert out.dtype == np.float32 and out_mask.dtype == np.bool_
        assert out_mask.shape == mask.shape
        # flips and quarter turns: the image is still 100 on the o-mask, 150 on the i-mask
        np.testing.assert_array_equal(out, out_mask[1] * 100.0 + out_mask[0] * 50.0)
    assert len({out.tobytes() for out, _ in results}) > 1  # the draws differ per sample
    pickle.loads(pickle.dumps(transform))


@pytest.mark.slow
def test_torchio_adapter_is_reproducible_and_leaves_the_callers_generator() -> None:
    tio = _torchio()
    torch = importlib.import_module("torch")
    transform = from_torchio(tio.RandomFlip(axes=(0, 1), flip_probability=0.5))
    image, mask = _shifted_square()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    results = [transform(image, mask, np.random.default_rng([0, 0, k])) for k in range(8)]
    assert torch.equal(torch.random.get_rng_state(), before)
    again = [transform(image, mask, np.random.default_rng([0, 0, k])) for k in range(8)]
    for (out, out_mask), (out2, out_mask2) in zip(results, again, strict=True):
        np.testing.assert_array_equal(out, out2)
        np.testing.assert_array_equal(out_mask, out_mask2)
        assert out.dtype == np.float32 and out_mask.dtype == np.bool_
        np.testing.assert_array_equal(out, out_mask[1] * 100.0 + out_mask[0] * 50.0)
    assert len({out.tobytes() for out, _ in results}) > 1
    pickle.loads(pickle.dumps(transform))


def test_adapters_without_their_library_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def missing(name: str, *args: object, **kwargs: object):
        if name.split(".")[0] in ("monai", "torchio"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(ImportError, match=r"dicontour\[monai\]"):
        from_monai(lambda data: data)
    with pytest.raises(ImportError, match=r"dicontour\[torchio\]"):
        from_torchio(lambda subject: subject)


@settings(max_examples=60, deadline=None)
@given(
    degrees=st.floats(-180, 180),
    zoom=st.floats(0.5, 2.0),
    shape=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    seed=seeds,
)
def test_masks_resampled_in_their_box_equal_the_whole_grid(degrees, zoom, shape, seed) -> None:
    """The bounding-box shortcut loses nothing, masks touching the edges included."""
    from dicontour.augment import _nearest, _sources

    mask = np.random.default_rng(seed).random((2, *shape)) < 0.3
    matrix = _rotation(degrees, zoom)
    centre = (np.array(shape) - 1) / 2.0
    offset = centre - matrix @ centre
    _, out_mask = affine(np.zeros(shape, np.float32), mask, matrix)
    rows, columns = _sources(matrix, offset, np.arange(shape[0]), np.arange(shape[1]))
    np.testing.assert_array_equal(out_mask, _nearest(mask, rows, columns, outside=False))


def _view(array: np.ndarray, k: int, flips: tuple[bool, bool], step: int) -> np.ndarray:
    """A turned, flipped and strided view of the last two axes of ``array`` (no copy)."""
    view = np.rot90(array, k, axes=(-2, -1))[..., ::step]
    if flips[0]:
        view = view[..., ::-1, :]
    if flips[1]:
        view = view[..., ::-1]
    assert np.shares_memory(view, array)
    return view


@settings(max_examples=80, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 16), st.integers(1, 16)),
    seed=seeds,
    k=st.integers(0, 3),
    flips=st.tuples(st.booleans(), st.booleans()),
    step=st.sampled_from([1, 2]),
    degrees=st.floats(-180, 180),
    zoom=st.floats(0.5, 2.0),
    interpolation=st.sampled_from(["linear", "nearest"]),
)
def test_affine_reads_a_view_exactly_as_its_copy(
    shape, seed, k, flips, step, degrees, zoom, interpolation
) -> None:
    """A flipped or turned view (what RandomFlip/RandomRot90 hand on) is read through
    its strides: the same bits as resampling a contiguous copy of it."""
    rng = np.random.default_rng(seed)
    image = (rng.random(shape) * 1000).astype(np.float32)
    mask = rng.random((2, *shape)) < 0.3
    view, mask_view = _view(image, k, flips, step), _view(mask, k, flips, step)
    out, out_mask = affine(view, mask_view, _rotation(degrees, zoom), interpolation=interpolation)
    copied, copied_mask = affine(
        view.copy(), mask_view.copy(), _rotation(degrees, zoom), interpolation=interpolation
    )
    np.testing.assert_array_equal(out, copied)
    np.testing.assert_array_equal(out_mask, copied_mask)
    np.testing.assert_array_equal(mask_view, _view(mask, k, flips, step))  # input untouched


@settings(max_examples=80, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 16), st.integers(1, 16)),
    seed=seeds,
    k=st.integers(0, 3),
    flips=st.tuples(st.booleans(), st.booleans()),
    step=st.sampled_from([1, 2]),
)
def test_bounding_box_of_a_view_is_where_its_pixels_are(shape, seed, k, flips, step) -> None:
    from dicontour.augment import _bounding_box

    mask = np.random.default_rng(seed).random(shape) < 0.1
    view = _view(mask, k, flips, step)
    hits = np.argwhere(view)
    expected = None
    if len(hits):
        (r0, c0), (r1, c1) = hits.min(axis=0), hits.max(axis=0)
        expected = ((int(r0), int(r1)), (int(c0), int(c1)))
    assert _bounding_box(view) == expected


def test_intensity_leaves_its_input_as_it_was() -> None:
    image = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    before = image.copy()
    out, _ = RandomIntensity(gamma=(0.5, 0.5), scale=(2, 2))(image[::-1], image[None] > 0, None)
    np.testing.assert_array_equal(image, before)
    assert not np.shares_memory(out, image)
