"""dicontour.torch: the map-style Dataset and tensors from BatchLoader (skipped without torch)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import Traced

from dicontour import BatchLoader

pytestmark = pytest.mark.timeout(60)


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def data(traced: Traced) -> Traced:
    return traced


@pytest.mark.slow
def test_dataset_items_are_the_index_samples(data: Traced) -> None:
    from torch.utils.data import Dataset

    from dicontour.torch import SampleDataset

    dataset = SampleDataset(data.index, target="both")
    assert isinstance(dataset, Dataset)
    assert len(dataset) == len(data.index.select("both"))
    for j, k in enumerate(data.index.select("both")):
        image, mask = dataset[j]
        assert image.dtype == torch.float32 and mask.dtype == torch.bool
        np.testing.assert_array_equal(image.numpy(), data.samples[k].image)
        np.testing.assert_array_equal(mask[0].numpy(), data.samples[k].i_mask)
        np.testing.assert_array_equal(mask[1].numpy(), data.samples[k].o_mask)


def test_dataset_in_torch_dataloader_workers(data: Traced) -> None:
    from torch.utils.data import DataLoader

    from dicontour.torch import SampleDataset

    dataset = SampleDataset(data.index, normalize="zscore", size=(60, 68))
    loader = DataLoader(dataset, batch_size=8, shuffle=True, num_workers=1)
    seen = 0
    for images, masks in loader:
        assert images.shape[1:] == (60, 68) and masks.shape == images.shape
        assert masks.dtype == torch.bool
        # z-scored before padding: the 64 x 64 area cropped to 60 rows, padded to 68 columns
        assert torch.all(images[:, :, :2] == 0) and torch.all(images[:, :, -2:] == 0)
        seen += len(images)
    assert seen == len(data.index.select("i"))


def test_dataset_checks_its_options(data: Traced) -> None:
    from dicontour.torch import SampleDataset

    with pytest.raises(ValueError, match="normalize must be one of"):
        SampleDataset(data.index, normalize="minmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size must be"):
        SampleDataset(data.index, size=(0, 4))


@pytest.mark.slow
def test_as_tensors_shares_the_loader_batches(data: Traced) -> None:
    from dicontour.torch import as_tensors

    with BatchLoader(data.index, batch_size=8, workers=1) as loader:
        tensors = list(as_tensors(loader))
        assert len(tensors) == 3
        for (images, masks), k_batch in zip(
            tensors, np.split(np.array(data.expected("i", 0, 0)), [8, 16]), strict=True
        ):
            assert images.dtype == torch.float32 and masks.dtype == torch.bool
            assert images.shape == (len(k_batch), 64, 64) == masks.shape
            for image, mask, k in zip(images, masks, k_batch, strict=True):
                np.testing.assert_array_equal(image.numpy(), data.samples[k].image)
                np.testing.assert_array_equal(mask.numpy(), data.samples[k].i_mask)
        with pytest.warns(UserWarning, match="no accelerator"):
            pinned = as_tensors(loader, pin_memory=True, device="cpu")
        images, _ = next(pinned)
        assert images.device.type == "cpu" and not images.is_pinned()


@pytest.mark.slow
def test_as_tensors_over_zero_copy_views_is_quiet_and_exact(data: Traced) -> None:
    import warnings

    from dicontour.torch import as_tensors

    with (
        BatchLoader(data.index, batch_size=8, workers=1, copy=False) as loader,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error")  # torch's "not writable" warning would fail here
        batches = [(i.clone(), m.clone()) for i, m in as_tensors(loader)]
    order = np.array(data.expected("i", 0, 0))
    assert sum(len(images) for images, _ in batches) == len(order)
    first_images, first_masks = batches[0]
    for image, mask, k in zip(first_images, first_masks, order[:8], strict=True):
        np.testing.assert_array_equal(image.numpy(), data.samples[k].image)
        np.testing.assert_array_equal(mask.numpy(), data.samples[k].i_mask)
