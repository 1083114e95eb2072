"""dicontour: cardiac MRI DICOMs and hand-drawn contours, turned into training data.

The data flow, and where each step lives::

    read          dicom.py, contour.py, raster.py   one file / one polygon -> arrays
    scan / index  scan.py, index.py, problems.py    a folder -> Index of samples + problems
    splits        splits.py, targets.py             patient folds, splits files; "i"/"o"/"both"
    example data  phantom.py                        a synthetic dataset in the same layout
    cache         cache/, engine.py                 decode once into .npy shards, on Dask
    train         loader/, augment.py, torch.py     BatchLoader: shuffled batches from workers

Examples
--------
>>> import dicontour
>>> index = dicontour.scan("final_data")                  # doctest: +SKIP
>>> sample = index.load(0)                                # doctest: +SKIP
>>> sample.image.shape, sample.i_mask.dtype               # doctest: +SKIP
((256, 256), dtype('bool'))
"""

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

__version__ = "0.1.0"

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
