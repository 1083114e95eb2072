"""Helpers shared by the test modules: ``from helpers import write_dicom``.

Plain functions, classes and constants only; the fixtures built from them are
in conftest.py.  A test module never imports another test module: what two
modules share lives here (spawned loader workers import :class:`Rigged` from
here too, since the tests folder is on their ``sys.path``).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

import dicontour
from dicontour import IndexSource

# --------------------------------------------------------------------------- real data


def _real_data() -> Path:
    """``$DICONTOUR_REAL_DATA`` if set, else ``../shared/data/final_data`` beside the checkout."""
    given = os.environ.get("DICONTOUR_REAL_DATA")
    if given:
        return Path(given).expanduser().resolve()
    return Path(__file__).resolve().parents[1].parent / "shared/data/final_data"


#: The real Sunnybrook subset, outside the repository (never copied into it).
REAL_DATA = _real_data()
REAL_DATA_REASON = (
    f"real Sunnybrook data not found at {REAL_DATA} "
    "(set DICONTOUR_REAL_DATA to the final_data folder)"
)

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


# --------------------------------------------------------------------------- phantoms

#: The loader tests' phantom: 2 patients x 20 slices of 64 x 64, 20 i-samples,
#: 10 of them with an o-contour; every image unique (see :class:`Traced`).
LOADER_PHANTOM: dict[str, object] = {
    "patients": 2,
    "slices": 20,
    "shape": (64, 64),
    "faults": False,
    "seed": 3,
}
#: The cache tests' phantom: 3 patients x 12 slices of 32 x 32, every slice
#: labelled (36 samples, 18 with an o-contour).
CACHE_PHANTOM: dict[str, object] = {
    "patients": 3,
    "slices": 12,
    "shape": (32, 32),
    "labelled_every": 1,
    "faults": False,
}


class Traced:
    """A scanned phantom and a map from image bytes back to the sample index."""

    def __init__(self, root: Path) -> None:
        self.index = dicontour.scan(root)
        self.samples = [self.index.load(k) for k in range(len(self.index))]
        self.by_bytes = {s.image.tobytes(): k for k, s in enumerate(self.samples)}
        assert len(self.by_bytes) == len(self.index), "phantom images must be unique"

    def ids(self, images: np.ndarray) -> list[int]:
        return [self.by_bytes[image.tobytes()] for image in images]

    def expected(self, target: str, seed: int, epoch: int) -> list[int]:
        eligible = self.index.select(target)
        order = np.random.default_rng([seed, epoch]).permutation(len(eligible))
        return [eligible[p] for p in order]


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> content): a cache's bytes, compared whole."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


#: The codes only a scan with ``contours=RtstructContours()`` reports (tests/test_export.py).
RTSTRUCT_CODES = (
    "malformed-rtstruct",
    "referenced-image-missing",
    "contour-on-no-image",
    "off-plane",
    "unmapped-roi",
    "extra-contour",
)


def copy_dataset(root: Path, target: Path) -> Path:
    """A private copy of the dataset at ``root`` (mtimes kept) that a test may modify."""
    shutil.copytree(root, target)
    return target


class Numbered:
    """An in-memory source: sample k is a 3 x 2 image filled with k; some lack an o-contour."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def shapes(self) -> np.ndarray:
        return np.tile([3, 2], (self.n, 1))

    def has(self, target: str) -> np.ndarray:
        return np.arange(self.n) % 3 != 0 if target != "i" else np.ones(self.n, bool)

    def read(self, k: int, target: str) -> tuple[np.ndarray, np.ndarray]:
        mask = np.eye(3, 2, dtype=bool)
        return np.full((3, 2), k, np.float32), np.stack([mask, mask]) if target == "both" else mask

    def describe(self, k: int) -> str:
        return f"sample {k}"


# --------------------------------------------------------------------------- loader faults


class Rigged:
    """A SampleSource that sleeps, kills its own worker, or fails on chosen samples."""

    def __init__(
        self,
        inner: IndexSource,
        *,
        sleep: float = 0.0,
        kill: tuple[int, ...] = (),
        marker: str | None = None,
        crash: tuple[int, ...] = (),
        hang: tuple[int, ...] = (),
    ) -> None:
        self.inner, self.sleep, self.kill, self.marker = inner, sleep, kill, marker
        self.crash, self.hang = crash, hang

    def __len__(self) -> int:
        return len(self.inner)

    def __repr__(self) -> str:
        return f"Rigged({self.inner!r})"

    def shapes(self) -> np.ndarray:
        return self.inner.shapes()

    def has(self, target: str) -> np.ndarray:
        return self.inner.has(target)  # type: ignore[arg-type]

    def describe(self, k: int) -> str:
        return self.inner.describe(k)

    def read(self, k: int, target: str) -> tuple[np.ndarray, np.ndarray]:
        # With a marker file, only the first reader dies (a one-off crash).
        if k in self.kill and (self.marker is None or not os.path.exists(self.marker)):
            if self.marker is not None:
                Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if k in self.crash:
            raise ZeroDivisionError("rigged bug in the source")
        if k in self.hang:
            time.sleep(30)
        if self.sleep:
            time.sleep(self.sleep)
        return self.inner.read(k, target)  # type: ignore[arg-type]


def children() -> set[int]:
    """Live or zombie child processes of this process, minus the resource tracker."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        # The stdlib's resource tracker (and forkserver, if any test used it)
        # live as long as the interpreter, whoever started them.
        if parent == me and b"resource_tracker" not in command and b"forkserver" not in command:
            found.add(int(entry))
    return found


def segments(pid: int | None = None) -> list[str]:
    """This process's (or ``pid``'s) loader segments in /dev/shm."""
    prefix = f"dicontour_{pid or os.getpid()}_"
    return [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --------------------------------------------------------------------------- rasterising


def reference_mask(points, shape) -> np.ndarray:
    """Brute-force even-odd point-in-polygon test of every pixel centre."""
    height, width = shape
    pts = [(float(x), float(y)) for x, y in points]
    mask = np.zeros(shape, dtype=bool)
    for r in range(height):
        crossings = []
        for k in range(len(pts)):
            (x0, y0), (x1, y1) = pts[k], pts[(k + 1) % len(pts)]
            if min(y0, y1) <= r < max(y0, y1):
                (xl, yl), (xh, yh) = ((x0, y0), (x1, y1)) if y0 < y1 else ((x1, y1), (x0, y0))
                crossings.append(xl + (r - yl) * (xh - xl) / (yh - yl))
        for c in range(width):
            mask[r, c] = sum(x <= c for x in crossings) % 2 == 1
    return mask
