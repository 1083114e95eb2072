"""PyTorch glue: a map-style ``Dataset`` over an Index, and tensors from a BatchLoader.

Optional: needs the ``torch`` extra (``pip install 'dicontour[torch]'``).  The
rest of dicontour is numpy-only and never imports this module; importing it
without PyTorch raises an ``ImportError`` that says what to install.

Two ways to train with PyTorch:

* :class:`SampleDataset` for users who want ``torch.utils.data.DataLoader``
  (its samplers, collate functions, ...): one item is one slice.
* :func:`as_tensors` over a :class:`~dicontour.BatchLoader`, which is faster:
  the same batches as numpy, handed over as tensors without another copy.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

try:
    import torch
    from torch.utils.data import Dataset
except ImportError as exc:  # pragma: no cover - exercised with torch hidden
    raise ImportError(
        "dicontour.torch needs PyTorch, which is not installed; "
        "install the extra with: pip install 'dicontour[torch]'"
    ) from exc

from .index import Index
from .loader.batches import BatchLoader
from .loader.index_source import IndexSource
from .loader.prepare import NORMALIZE, Normalize, normalize, place
from .loader.source import SampleSource
from .targets import Target, check_target

__all__ = ["SampleDataset", "as_tensors"]


class SampleDataset(Dataset):
    """A map-style ``torch.utils.data.Dataset``: item j is (image, mask) of one slice.

    Parameters
    ----------
    source : Index or SampleSource
        The samples; only those with the ``target`` contour(s) are items.
    target : {"i", "o", "both"}
        Which mask: i-contour, o-contour, or both stacked as (2, H, W) [i, o].
    normalize : {None, "zscore", "percentile"}
        Per-image intensity normalisation, as in :class:`~dicontour.BatchLoader`.
    size : (int, int), optional
        Centre-crop or zero-pad images and masks to (H, W), so that slices of
        different shapes can be batched by the default collate function.

    Notes
    -----
    ``dataset[j]`` returns ``(image, mask)``: a float32 tensor of shape (H, W)
    and a bool tensor of shape (H, W), or (2, H, W) for ``"both"``.  It raises
    ``DicomError`` or ``ContourError`` for a file that became unreadable since
    the scan.  The dataset holds an :class:`~dicontour.IndexSource`, which is
    cheap to send to DataLoader workers.

    Examples
    --------
    >>> from torch.utils.data import DataLoader                    # doctest: +SKIP
    >>> dataset = SampleDataset(dicontour.scan("final_data"))      # doctest: +SKIP
    >>> loader = DataLoader(dataset, batch_size=8, shuffle=True, num_workers=2)  # doctest: +SKIP
    >>> images, masks = next(iter(loader))                         # doctest: +SKIP
    >>> images.shape, masks.dtype                                  # doctest: +SKIP
    (torch.Size([8, 256, 256]), torch.bool)
    """

    def __init__(
        self,
        source: Index | SampleSource,
        *,
        target: Target = "i",
        normalize: Normalize = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        if isinstance(source, Index):
            source = IndexSource(source)
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}; got {normalize!r}")
        if size is not None and (len(size) != 2 or min(int(s) for s in size) < 1):
            raise ValueError(f"size must be (H, W) of positive integers; got {size!r}")
        self.source = source
        self.target: Target = check_target(target)
        self.normalize: Normalize = normalize
        self.size = (int(size[0]), int(size[1])) if size is not None else None
        self.samples = np.flatnonzero(np.asarray(source.has(target), dtype=bool))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = int(self.samples[j])
        image, mask = self.source.read(k, self.target)
        image = normalize(np.asarray(image, dtype=np.float32), self.normalize)
        if self.size is not None:
            fitted = np.empty(self.size, dtype=np.float32)
            place(image, fitted)
            fitted_mask = np.empty(mask.shape[:-2] + self.size, dtype=bool)
            place(mask, fitted_mask)
            image, mask = fitted, fitted_mask
        return torch.from_numpy(image), torch.from_numpy(mask)


def _can_pin() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return bool(accelerator.is_available())
    return bool(torch.cuda.is_available())


def as_tensors(
    loader: BatchLoader,
    *,
    pin_memory: bool = False,
    device: str | torch.device | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of a :class:`~dicontour.BatchLoader` as torch tensors.

    The tensors share the loader's memory (no copy) unless ``pin_memory`` or
    ``device`` asks for one.  With a ``copy=False`` loader they are views of
    read-only shared memory: do not write to them in place (torch cannot mark
    a tensor read-only, so its one-time warning about that is silenced here).

    Parameters
    ----------
    loader : BatchLoader
    pin_memory : bool
        Copy each batch into page-locked memory, for fast asynchronous copies
        to the GPU.  Without an accelerator this warns and does nothing, as
        ``torch.utils.data.DataLoader`` does.
    device : str or torch.device, optional
        Move each batch there (non-blocking when pinned).

    Returns
    -------
    iterator of (images, masks)
        images float32 tensors of shape (B, H, W); masks bool tensors of shape
        (B, H, W), or (B, 2, H, W) for ``target="both"``.

    Examples
    --------
    >>> with dicontour.BatchLoader(index) as loader:              # doctest: +SKIP
    ...     for images, masks in as_tensors(loader, device="cuda", pin_memory=True):
    ...         loss = criterion(model(images[:, None]), masks[:, None].float())
    """
    if pin_memory and not _can_pin():
        warnings.warn(
            "pin_memory=True but no accelerator (CUDA) is available; batches are not pinned",
            stacklevel=2,
        )
        pin_memory = False
    return _tensors(loader, pin_memory, device)


def _tensors(
    loader: BatchLoader, pin_memory: bool, device: str | torch.device | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for images, masks in loader:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            image_tensor, mask_tensor = torch.from_numpy(images), torch.from_numpy(masks)
        if pin_memory:
            image_tensor, mask_tensor = image_tensor.pin_memory(), mask_tensor.pin_memory()
        if device is not None:
            image_tensor = image_tensor.to(device, non_blocking=pin_memory)
            mask_tensor = mask_tensor.to(device, non_blocking=pin_memory)
        yield image_tensor, mask_tensor
