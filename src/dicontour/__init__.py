"""dicontour: cardiac MRI DICOMs and hand-drawn contours, turned into training data.

The data flow, and where each step lives::

    read          dicom.py, contour.py, raster.py   one file / one polygon -> arrays
    scan / index  scan.py, index.py, problems.py    a folder -> Index of samples + problems
    splits        splits.py, targets.py             patient folds, splits files; "i"/"o"/"both"
    example data  phantom.py                        a synthetic dataset in the same layout
    cache         cache/, engine.py                 decode once into .npy shards, on Dask
    train         loader/, augment.py, torch.py     BatchLoader: shuffled batches from workers
    formats       rtstruct.py, nifti.py, seg.py     RTSTRUCT in and out, NIfTI, DICOM-SEG
    export        export.py                         an Index -> nnU-Net, MONAI, DICOM-SEG, RTSTRUCT

Examples
--------
>>> import dicontour
>>> index = dicontour.scan("final_data")                  # doctest: +SKIP
>>> sample = index.load(0)                                # doctest: +SKIP
>>> sample.image.shape, sample.i_mask.dtype               # doctest: +SKIP
((256, 256), dtype('bool'))
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

#: Each public name and the module that defines it.  The names are imported on
#: first use (PEP 562), so that ``import dicontour.errors`` or ``dicontour --help``
#: does not load pydicom, numpy and fsspec; ``from dicontour import scan`` and
#: ``dicontour.scan(...)`` work as before.
_WHERE = {
    **dict.fromkeys(["CacheSource", "build_cache", "open_cache", "verify_cache"], ".cache"),
    **dict.fromkeys(["parse_contour", "read_contour"], ".contour"),
    **dict.fromkeys(["DicomHeader", "DicomImage", "read_dicom", "read_dicom_header"], ".dicom"),
    **dict.fromkeys(
        [
            "CacheError",
            "ContourError",
            "DicomError",
            "DicontourError",
            "EngineError",
            "LayoutError",
            "LoaderError",
            "SplitsError",
        ],
        ".errors",
    ),
    **dict.fromkeys(["Exclusion", "Index", "Sample", "SampleRecord", "Split"], ".index"),
    **dict.fromkeys(
        ["Batch", "BatchLoader", "BatchMeta", "EpochStats", "IndexSource", "SampleSource"],
        ".loader",
    ),
    **dict.fromkeys(["CODES", "Problem"], ".problems"),
    **dict.fromkeys(["check_index", "dice", "iou", "segment_blood_pool", "write_preview"], ".qa"),
    "polygon_to_mask": ".raster",
    "scan": ".scan",
    **dict.fromkeys(["read_splits", "write_splits"], ".splits"),
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from .cache import CacheSource, build_cache, open_cache, verify_cache
    from .contour import parse_contour, read_contour
    from .dicom import DicomHeader, DicomImage, read_dicom, read_dicom_header
    from .errors import (
        CacheError,
        ContourError,
        DicomError,
        DicontourError,
        EngineError,
        LayoutError,
        LoaderError,
        SplitsError,
    )
    from .index import Exclusion, Index, Sample, SampleRecord, Split
    from .loader import Batch, BatchLoader, BatchMeta, EpochStats, IndexSource, SampleSource
    from .problems import CODES, Problem
    from .qa import check_index, dice, iou, segment_blood_pool, write_preview
    from .raster import polygon_to_mask
    from .scan import scan
    from .splits import read_splits, write_splits

    __version__: str


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from ._version import version

        return version()
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})


class _Package(types.ModuleType):
    """The package module; keeps ``dicontour.scan`` the function, as the eager imports did.

    Importing the submodule :mod:`dicontour.scan` binds it on the package under
    the same name as its function :func:`dicontour.scan.scan`; the function wins.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "scan" and isinstance(value, types.ModuleType):
            value = value.scan
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "CODES",
    "Batch",
    "BatchLoader",
    "BatchMeta",
    "CacheError",
    "CacheSource",
    "ContourError",
    "DicomError",
    "DicomHeader",
    "DicomImage",
    "DicontourError",
    "EngineError",
    "EpochStats",
    "Exclusion",
    "Index",
    "IndexSource",
    "LayoutError",
    "LoaderError",
    "Problem",
    "Sample",
    "SampleRecord",
    "SampleSource",
    "Split",
    "SplitsError",
    "build_cache",
    "check_index",
    "dice",
    "iou",
    "open_cache",
    "parse_contour",
    "polygon_to_mask",
    "read_contour",
    "read_dicom",
    "read_dicom_header",
    "read_splits",
    "scan",
    "segment_blood_pool",
    "verify_cache",
    "write_preview",
    "write_splits",
]
