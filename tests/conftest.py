"""Shared fixtures: the real data's location, a DICOM writer, the fault-injection tree.

Keep this file additive: each fixture is independent of the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

#: The real Sunnybrook subset, next to the repository (never copied into it).
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/final_data"
REAL_DATA_REASON = "real Sunnybrook data not found at ../shared/data/final_data"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real dataset root; skips the test where it is absent (a user's fresh clone)."""
    if not REAL_DATA.is_dir():
        pytest.skip(REAL_DATA_REASON)
    return REAL_DATA


# --------------------------------------------------------------------------- DICOM files


def write_dicom(
    path: str | os.PathLike[str],
    pixels: np.ndarray | None = None,
    *,
    syntax: str = ExplicitVRLittleEndian,
    pixel_data: bool = True,
    **attrs: object,
) -> Path:
    """Write a minimal single-frame MR DICOM file holding ``pixels`` (2-D integer array).

    ``attrs`` are set last, so they can override Rows, Columns, InstanceNumber, etc.
    """
    if pixels is None:
        pixels = np.arange(12, dtype=np.int16).reshape(3, 4)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [0.5, 0.75]
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    if pixel_data:
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return Path(path)


def tiny_elements(count: int) -> bytes:
    """``count`` distinct empty private elements (8 bytes each, explicit VR little endian).

    Their groups (odd, 0x0029 upwards) sort between the image elements and the
    pixel data, where :func:`insert_before_pixels` puts them.
    """
    per_group = 0xFF00  # elements 0x0100..0xFFFF of each group
    k = np.arange(count)
    elements = np.zeros(count, dtype=[("g", "<u2"), ("e", "<u2"), ("vr", "S2"), ("n", "<u2")])
    elements["g"] = 0x0029 + 2 * (k // per_group)
    elements["e"] = 0x0100 + k % per_group
    elements["vr"] = b"SH"
    return elements.tobytes()


def insert_before_pixels(data: bytes, extra: bytes) -> bytes:
    """Insert raw ``extra`` elements before the pixel data of an explicit VR LE file."""
    at = data.rindex(b"\xe0\x7f\x10\x00OW")
    return data[:at] + extra + data[at:]


@pytest.fixture
def make_dicom() -> Callable[..., Path]:
    """:func:`write_dicom`, for test modules."""
    return write_dicom


# --------------------------------------------------------------------------- fault tree

SHAPE = (32, 32)
#: A square whose mask is rows 8..19 x cols 8..19 (144 pixels) under the half-open rule.
I_SQUARE = "8 8\n8 20\n20 20\n20 8\n"
#: rows 4..25 x cols 4..25 (484 pixels); contains I_SQUARE.
O_SQUARE = "4 4\n4 26\n26 26\n26 4\n"
#: Disjoint from I_SQUARE.
O_ELSEWHERE = "22 22\n22 28\n28 28\n28 22\n"


def contour_name(kind: str, n: int) -> str:
    return f"{kind}-contours/IM-0001-{n:04d}-{kind}contour-manual.txt"


@dataclass(frozen=True)
class FaultTree:
    """A dataset with one instance of every problem, and what a scan must find.

    Attributes
    ----------
    root : Path
    problems : frozenset of (code, path)
        Exactly the findings a correct scan reports.
    samples : dict
        (patient_id, slice) -> (has i-contour, has o-contour) for every good sample.
    dicoms, unlabelled, patients : int
        Summary counts.
    """

    root: Path
    problems: frozenset[tuple[str, str]]
    samples: dict[tuple[str, int], tuple[bool, bool]]
    dicoms: int
    unlabelled: int
    patients: int


def build_fault_tree(root: Path) -> FaultTree:
    """Write the fault-injection tree under ``root`` (see :class:`FaultTree`)."""
    from dicontour.contour import MAX_POINTS

    rng = np.random.default_rng(20240601)

    def image(shape: tuple[int, int] = SHAPE) -> np.ndarray:
        return rng.integers(-500, 2000, size=shape, dtype=np.int16)

    def put(relative: str, content: str | bytes) -> str:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return relative

    root.mkdir(parents=True, exist_ok=True)
    put(
        "link.csv",
        "patient_id,original_id\nP1,O1\nP2,O2\nP3,O3\nP1,O9\nP5,O5\n../P1,O7\n",
    )
    problems: set[tuple[str, str]] = {
        ("duplicate-link", "link.csv"),  # row P1,O9 repeats P1
        ("bad-link-row", "link.csv"),  # ../P1 is not a folder name; the other rows are used
        ("missing-patient-folder", "dicoms/P3"),
        ("missing-contour-folder", "contourfiles/O2"),
        ("not-in-link-csv", "dicoms/PX"),
        ("not-in-link-csv", "contourfiles/OX"),
        ("stray-file", "notes.txt"),
        ("stray-file", "dicoms/P1/readme.txt"),
        ("stray-file", "contourfiles/O1/extra.txt"),
        ("stray-file", "contourfiles/O1/i-contours/IM-0001-0001-icontour-manual.txt.bak"),
    }
    for relative in (p for code, p in problems if code == "stray-file"):
        put(relative, "not part of the layout\n")
    # P3 has contours but no DICOM folder; PX and OX are not in link.csv.
    put(f"contourfiles/O3/{contour_name('i', 1)}", I_SQUARE)
    (root / "dicoms/PX").mkdir(parents=True)
    write_dicom(root / "dicoms/PX/1.dcm", image())
    put(f"contourfiles/OX/{contour_name('i', 1)}", I_SQUARE)
    # P2: DICOMs without any contour folder.
    (root / "dicoms/P2").mkdir(parents=True)
    for n in (1, 2):
        write_dicom(root / f"dicoms/P2/{n}.dcm", image(), InstanceNumber=n)

    p1 = root / "dicoms/P1"

    def i_of(n: int) -> str:
        return f"contourfiles/O1/{contour_name('i', n)}"

    def o_of(n: int) -> str:
        return f"contourfiles/O1/{contour_name('o', n)}"

    good_dicoms = [1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17, 18]
    for n in good_dicoms:
        write_dicom(p1 / f"{n}.dcm", image(), InstanceNumber=n)
    samples: dict[tuple[str, int], tuple[bool, bool]] = {}
    # 1: both contours good.
    put(i_of(1), I_SQUARE)
    put(o_of(1), O_SQUARE)
    samples["P1", 1] = (True, True)
    # 2: broken i-contour; the o-contour still makes a sample.
    put(i_of(2), "8 8\n8 20\n12.5 abc\n20 8\n")
    put(o_of(2), O_SQUARE)
    problems.add(("unparseable-contour", i_of(2)))
    samples["P1", 2] = (False, True)
    # 3: empty i-contour, no o-contour: no sample.
    problems.add(("empty-contour", put(i_of(3), "")))
    # 4: NaN in the i-contour; the o-contour stays.
    problems.add(("non-finite-coordinate", put(i_of(4), "8 8\nnan 20\n20 20\n")))
    put(o_of(4), O_SQUARE)
    samples["P1", 4] = (False, True)
    # 5: two distinct points.
    problems.add(("too-few-points", put(i_of(5), "8 8\n20 20\n8 8\n")))
    # 6: reaches x = 40 on a 32-wide image.
    problems.add(("out-of-bounds", put(i_of(6), "8 8\n8 20\n40 20\n")))
    # 7: i-contour outside its o-contour: a warning, the sample is kept.
    put(i_of(7), I_SQUARE)
    put(o_of(7), O_ELSEWHERE)
    problems.add(("i-outside-o", i_of(7)))
    samples["P1", 7] = (True, True)
    # 8-11: unusable DICOMs, each with a good i-contour that is therefore lost.
    put("dicoms/P1/8.dcm", "this is not a DICOM file\n")
    whole = write_dicom(p1 / "9.dcm", image(), InstanceNumber=9).read_bytes()
    (p1 / "9.dcm").write_bytes(whole[: len(whole) - 100])  # cut inside the pixel data
    write_dicom(p1 / "10.dcm", image(), InstanceNumber=10, pixel_data=False)
    write_dicom(p1 / "11.dcm", image(), InstanceNumber=11, Rows=60000, Columns=60000)
    for n, code in ((8, "unreadable-dicom"), (9, "unreadable-dicom"), (10, "no-pixel-data")):
        problems.add((code, f"dicoms/P1/{n}.dcm"))
    problems.add(("image-too-large", "dicoms/P1/11.dcm"))
    for n in (8, 9, 10, 11):
        put(i_of(n), I_SQUARE)
    # 12: InstanceNumber disagrees with the file name: a warning, the sample is kept.
    write_dicom(p1 / "12.dcm", image(), InstanceNumber=99)
    put(i_of(12), I_SQUARE)
    problems.add(("instance-number-mismatch", "dicoms/P1/12.dcm"))
    samples["P1", 12] = (True, False)
    # 13: a contour without its DICOM.
    problems.add(("missing-dicom", put(i_of(13), I_SQUARE)))
    # 14: one point over the limit.
    problems.add(("too-many-points", put(i_of(14), "1 1\n" * (MAX_POINTS + 1))))
    # 15: binary garbage.
    problems.add(("unparseable-contour", put(i_of(15), b"\xff\xfe\x00\x81garbage\x00")))
    # 16: a dangling link; 18: a link to a valid contour outside the root.  Neither
    # is read, so slice 16 and 18 stay unlabelled.
    outside = root.parent / "outside-the-root.txt"
    outside.write_text(I_SQUARE)
    try:
        os.symlink(root / "nowhere.txt", root / i_of(16))
        os.symlink(outside, root / i_of(18))
    except (OSError, NotImplementedError):
        linked = False  # no symlinks here; the codes are then not exercised
    else:
        linked = True
        problems.add(("broken-link", i_of(16)))
        problems.add(("link-outside-root", i_of(18)))
    # 17, 18 (and 16): unlabelled.
    # 19: a header of 40,000 tiny elements (320 KB), over MAX_HEADER_BYTES.
    write_dicom(p1 / "19.dcm", image(), InstanceNumber=19)
    data = (p1 / "19.dcm").read_bytes()
    (p1 / "19.dcm").write_bytes(insert_before_pixels(data, tiny_elements(40_000)))
    problems.add(("header-too-large", "dicoms/P1/19.dcm"))
    # 20: a rescale that takes int16 values beyond float32.
    write_dicom(p1 / "20.dcm", image(), InstanceNumber=20, RescaleSlope="1e39")
    problems.add(("invalid-rescale", "dicoms/P1/20.dcm"))
    for n in (19, 20):
        put(i_of(n), I_SQUARE)
    # 21: a zig-zag across all 32 rows, 36,000 edges: 1.1 million (edge, row) crossings.
    write_dicom(p1 / "21.dcm", image(), InstanceNumber=21)
    zigzag = "".join(f"{k % 30} {31 * (k % 2)}\n" for k in range(36_000))
    problems.add(("too-many-crossings", put(i_of(21), zigzag)))

    # P5: one slice of a different size.
    p5 = root / "dicoms/P5"
    p5.mkdir(parents=True)
    for n, shape in ((1, SHAPE), (2, SHAPE), (3, (24, 24))):
        write_dicom(p5 / f"{n}.dcm", image(shape), InstanceNumber=n)
        put(f"contourfiles/O5/{contour_name('i', n)}", I_SQUARE)
        samples["P5", n] = (True, False)
    (root / "contourfiles/O5/o-contours").mkdir()
    problems.add(("shape-mismatch", "dicoms/P5/3.dcm"))

    return FaultTree(
        root=root,
        problems=frozenset(problems),
        samples=samples,
        dicoms=len(good_dicoms) + 5 + 3 + 2 + 3,  # P1 (with 8..12, 19..21), P2, P5
        unlabelled=2 + linked + 2,  # P1 slices 17, 18 (16 when linked), P2's two slices
        patients=3,  # P1, P2, P5 (P3 has no folder; P1,O9 repeats P1)
    )


@pytest.fixture(scope="session")
def fault_tree(tmp_path_factory: pytest.TempPathFactory) -> FaultTree:
    """The fault-injection tree, written once per session; tests must not modify it."""
    return build_fault_tree(tmp_path_factory.mktemp("faults") / "data")
