"""Write one 2-D slice as NIfTI with its DICOM geometry (nibabel).

A slice of shape (H, W) becomes a NIfTI volume of shape (H, W, 1): voxel
(i, j, 0) is pixel (row i, column j), so ``nibabel.load(path).get_fdata()[..., 0]``
is the image as dicontour reads it.  The affine maps voxel (i, j, k) to the
pixel's centre in RAS+ millimetres (NIfTI's convention; DICOM's patient
coordinates are LPS, so x and y change sign):

* column 0, along i (rows): the column cosine of ImageOrientationPatient x the row spacing;
* column 1, along j (columns): the row cosine x the column spacing;
* column 2, along k: the plane's normal x SliceThickness (1 mm when absent);
* translation: ImagePositionPatient, the centre of pixel (0, 0).

Without ImagePositionPatient/ImageOrientationPatient the affine holds the
spacing only (a diagonal); without PixelSpacing too, 1 mm.
"""

from __future__ import annotations

import gzip
from typing import Any

import numpy as np
import numpy.typing as npt

from .dicom import DicomHeader

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError as exc:  # an optional dependency: say which extra brings it
        raise ImportError("writing NIfTI needs nibabel: pip install 'dicontour[export]'") from exc
    return nibabel


def slice_affine(header: DicomHeader) -> np.ndarray:
    """The 4x4 affine mapping voxel (row, column, 0) of a slice to RAS+ mm.

    Parameters
    ----------
    header : DicomHeader
        The slice's header.

    Returns
    -------
    float64 ndarray of shape (4, 4)

    Examples
    --------
    >>> header = DicomHeader(4, 4, (2.0, 0.5), 1, None, 1.0, 0.0, "",
    ...     image_position=(10.0, 20.0, 30.0), image_orientation=(1, 0, 0, 0, 1, 0),
    ...     slice_thickness=8.0)
    >>> slice_affine(header) @ [2, 1, 0, 1]     # row 2, column 1
    array([-10.5, -24. ,  30. ,   1. ])
    """
    row_spacing, column_spacing = header.pixel_spacing or (1.0, 1.0)
    thickness = header.slice_thickness or 1.0
    affine = np.eye(4)
    if header.has_geometry:
        orientation = np.asarray(header.image_orientation, dtype=np.float64)
        along_row, along_column = orientation[:3], orientation[3:]
        normal = np.cross(along_row, along_column)
        columns = np.stack(
            [along_column * row_spacing, along_row * column_spacing, normal * thickness], axis=1
        )
        affine[:3, :3] = _LPS_TO_RAS @ columns
        affine[:3, 3] = _LPS_TO_RAS @ np.asarray(header.image_position, dtype=np.float64)
    else:
        affine[:3, :3] = np.diag([row_spacing, column_spacing, thickness])
    return affine


def nifti_slice(array: np.ndarray, header: DicomHeader, *, dtype: npt.DTypeLike) -> bytes:
    """A (H, W) array as the bytes of a gzipped NIfTI-1 file of shape (H, W, 1).

    The bytes are the same for the same input (gzip's timestamp is 0), so a
    rerun writes identical files.

    Parameters
    ----------
    array : ndarray of shape (H, W)
        The image (float32) or the label map (uint8), (row, column) order.
    header : DicomHeader
        The slice's header: the geometry (:func:`slice_affine`).
    dtype : dtype
        The stored data type.

    Returns
    -------
    bytes
        A ``.nii.gz`` file.

    Raises
    ------
    ValueError
        ``array`` is not 2-D or its shape differs from the header's.
    """
    array = np.asarray(array)
    if array.ndim != 2 or array.shape != header.shape:
        raise ValueError(
            f"a slice must be (H, W) = {header.shape} as its header says, got {array.shape}"
        )
    nibabel = _nibabel()
    affine = slice_affine(header)
    image = nibabel.Nifti1Image(np.asarray(array, dtype=dtype)[:, :, np.newaxis], affine)
    image.set_qform(affine, code=1)  # scanner-anatomical coordinates
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    return gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)
