"""Fuzz the whole input surface: DICOM bytes and headers, contour text, link.csv, folder trees.

Each case copies a small clean dataset, breaks one part of it on purpose (seeded), then
scans, loads and runs the CLI over it.  For every case:

- nothing but a :class:`~dicontour.DicontourError` escapes the library, and the CLI
  prints no traceback and exits 0 or 1 (2 only where link.csv itself is broken);
- nothing hangs: each case runs under an alarm;
- no valid sample is lost or altered: every (slice, contour) whose files the case did
  not touch is found again, with the same image and mask as in the clean dataset;
- nothing outside the root is read: a secret file linked into the tree never shows up;
- a scan's peak traced memory stays under 1 GiB.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import write_dicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import dicontour
from dicontour.cli import main

CASES_PER_KIND = 24
CASE_SECONDS = 20
PEAK_BYTES = 1 << 30
SECRET = "SECRET-LINE-7f3a"
SHAPE = (32, 32)
PATIENTS = {"P1": "O1", "P2": "O2"}
SLICES = (1, 2, 3)

pytestmark = pytest.mark.slow  # fuzzing


def _square(low: int, high: int) -> str:
    return f"{low} {low}\n{low} {high}\n{high} {high}\n{high} {low}\n"


@dataclass(frozen=True)
class Clean:
    """The clean dataset and what loading it gives."""

    root: Path
    arrays: dict[tuple[str, int, str], np.ndarray]  # (pid, slice, "image"|"i"|"o") -> array
    files: dict[tuple[str, int], dict[str, str]]  # (pid, slice) -> kind -> relative path


def _dicom_rel(pid: str, n: int) -> str:
    return f"dicoms/{pid}/{n}.dcm"


def _contour_rel(pid: str, n: int, kind: str) -> str:
    oid = PATIENTS[pid]
    return f"contourfiles/{oid}/{kind}-contours/IM-0001-{n:04d}-{kind}contour-manual.txt"


def _write_slice(root: Path, pid: str, n: int, seed: int, **attrs: object) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 1200, size=SHAPE, dtype=np.int16)
    nested = Dataset()
    nested.CodeValue = "T-32000"
    nested.CodingSchemeDesignator = "SRT"
    base: dict[str, object] = {
        "InstanceNumber": n,
        "PatientName": "Fuzz^Case",
        "StudyDate": "20120000",
        "RescaleSlope": "1.5",
        "RescaleIntercept": "-10",
        "AnatomicRegionSequence": Sequence([nested]),
    }
    base.update(attrs)
    path = root / _dicom_rel(pid, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dicom(path, pixels, **base)


def _write_clean(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "link.csv").write_text(
        "patient_id,original_id\n" + "".join(f"{p},{o}\n" for p, o in PATIENTS.items())
    )
    for p_number, pid in enumerate(PATIENTS, start=1):
        for n in SLICES:
            _write_slice(root, pid, n, seed=100 * p_number + n)
            for kind, (low, high) in (("i", (10, 20)), ("o", (6, 25))):
                path = root / _contour_rel(pid, n, kind)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(_square(low + n % 2, high - n % 3))
        # One unlabelled slice per patient.
        _write_slice(root, pid, 9, seed=100 * p_number + 9)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Clean:
    root = tmp_path_factory.mktemp("fuzz-clean") / "data"
    _write_clean(root)
    index = dicontour.scan(root)
    assert not index.problems, index.problems
    assert len(index) == len(PATIENTS) * len(SLICES)
    arrays: dict[tuple[str, int, str], np.ndarray] = {}
    files: dict[tuple[str, int], dict[str, str]] = {}
    for k, record in enumerate(index):
        sample = index.load(k)
        key = (record.patient_id, record.slice)
        arrays[(*key, "image")] = sample.image
        arrays[(*key, "i")] = sample.i_mask
        arrays[(*key, "o")] = sample.o_mask
        files[key] = {"dicom": record.dicom, "i": record.i_contour, "o": record.o_contour}
    return Clean(root, arrays, files)


# --------------------------------------------------------------------------- harness


@contextlib.contextmanager
def _deadline(seconds: int, what: str) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"hang: {what} took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    text = out.getvalue() + err.getvalue()
    assert "Traceback" not in text, text
    return code, text


def _affected(touched: set[str], path: str | None) -> bool:
    """Whether ``path`` is one of the touched paths or lies under a touched folder."""
    if path is None:
        return True
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in touched)


def _check_case(clean: Clean, root: Path, touched: set[str], *, layout_may_fail: bool) -> None:
    """Scan, load and run the CLI over ``root``; assert the fuzz invariants."""
    tracemalloc.start()
    try:
        try:
            index = dicontour.scan(root)
        except dicontour.LayoutError:
            assert layout_may_fail, "a broken part refused the whole dataset"
            return
        except dicontour.DicontourError as exc:
            raise AssertionError("scan raised on bad data instead of reporting a problem") from exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"scan peak {peak / 2**20:.0f} MiB"

    found = {(r.patient_id, r.slice): k for k, r in enumerate(index)}
    loaded: dict[int, dicontour.Sample] = {}
    for k in range(len(index)):
        try:
            loaded[k] = index.load(k)
        except dicontour.DicontourError:
            continue  # a touched file may fail at load; it must fail cleanly
        image = loaded[k].image
        assert image.dtype == np.float32 and image.shape == index[k].shape
        assert np.isfinite(image).all(), f"non-finite pixels served for {index[k]}"

    for key, paths in clean.files.items():
        for kind in ("i", "o"):
            if _affected(touched, paths["dicom"]) or _affected(touched, paths[kind]):
                continue
            assert key in found, f"valid sample {key} ({kind}) lost"
            record = index[found[key]]
            assert getattr(record, f"{kind}_contour") == paths[kind], f"{key} lost its {kind}"
            assert found[key] in loaded, f"valid sample {key} failed to load"
            sample = loaded[found[key]]
            np.testing.assert_array_equal(sample.image, clean.arrays[(*key, "image")])
            np.testing.assert_array_equal(sample.mask(kind), clean.arrays[(*key, kind)])

    for argv in (["scan", str(root)], ["scan", "--json", str(root)], ["check", str(root)]):
        code, text = _run_cli(argv)
        assert code == 0, f"{argv[:-1]} exit {code}: {text[-500:]}"
        assert SECRET not in text, "a file outside the root was read and shown"
    assert SECRET not in repr(index.to_dict())


def _fresh(clean: Clean, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(clean.root, root, symlinks=True)
    return root


# --------------------------------------------------------------------------- mutators

VICTIM = ("P2", 2)


def _mutate_dicom_bytes(root: Path, rng: np.random.Generator) -> set[str]:
    relative = _dicom_rel(*VICTIM)
    path = root / relative
    data = bytearray(path.read_bytes())
    header_end = data.find(b"\xe0\x7f\x10\x00") + 12 or len(data)
    how = rng.integers(5)
    if how == 0:  # flip bytes in the header
        for at in rng.integers(132, header_end, size=rng.integers(1, 8)):
            data[at] ^= int(rng.integers(1, 256))
    elif how == 1:  # cut anywhere
        del data[int(rng.integers(0, len(data))) :]
    elif how == 2:  # insert junk
        at = int(rng.integers(132, len(data)))
        data[at:at] = rng.bytes(int(rng.integers(1, 64)))
    elif how == 3:  # a huge length field somewhere in the header
        at = int(rng.integers(132, max(133, header_end - 4)))
        data[at : at + 4] = b"\xff\xff\xff\x7f"
    else:  # flip bytes anywhere
        for at in rng.integers(0, len(data), size=rng.integers(1, 32)):
            data[at] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))
    return {relative}


NASTY_HEADERS: dict[str, list[object]] = {
    "RescaleSlope": ["1e39", "-1e39", "NaN", "inf", "0", "1e-45", "3e38"],
    "RescaleIntercept": ["1e39", "-inf", "nan", "-3e38"],
    "PhotometricInterpretation": ["RGB", "PALETTE COLOR", "YBR_FULL", "MONOCHROME1", "", "X"],
    "BitsStored": [0, 17, 12, 1, 15],
    "BitsAllocated": [1, 8, 12, 32, 64],
    "PixelRepresentation": [1, 2],
    "Rows": [0, 1, 31, 33, 65535],
    "Columns": [0, 1, 33, 65535],
    "SamplesPerPixel": [0, 3],
    "NumberOfFrames": [0, 2, "x"],
    "HighBit": [0, 31],
}


def _mutate_dicom_header(root: Path, rng: np.random.Generator) -> set[str]:
    keys = list(NASTY_HEADERS)
    attrs: dict[str, object] = {}
    for key in rng.choice(keys, size=int(rng.integers(1, 3)), replace=False):
        choices = NASTY_HEADERS[str(key)]
        attrs[str(key)] = choices[int(rng.integers(len(choices)))]
    # pydicom may refuse to write it: the clean file then stays as it was
    with contextlib.suppress(Exception):
        _write_slice(root, *VICTIM, seed=7, **attrs)
    return {_dicom_rel(*VICTIM)}


CONTOUR_TOKENS = [
    "1_0", "\u0661\u0662", "\u0968", "nan", "inf", "-inf", "1e400", "-0", "0x10", "1e-400",
    "+5", "5.", ".5", "1,5", "\x00", "\x1b[2J", "\u202e", "\ufeff", "12 13 14", "", " ", "\t",
    "9" * 400, "-1e308", "3e38", "12", "20", "8.5",
]  # fmt: skip


def _mutate_contour_text(root: Path, rng: np.random.Generator) -> set[str]:
    kind = "io"[int(rng.integers(2))]
    relative = _contour_rel(*VICTIM, kind)
    path = root / relative
    lines = path.read_text().splitlines()
    how = rng.integers(4)
    if how == 0:  # replace a token
        at = int(rng.integers(len(lines)))
        tokens = lines[at].split()
        tokens[int(rng.integers(len(tokens)))] = str(rng.choice(CONTOUR_TOKENS))
        lines[at] = " ".join(tokens)
    elif how == 1:  # random lines of tokens
        lines = [
            " ".join(str(t) for t in rng.choice(CONTOUR_TOKENS, size=int(rng.integers(1, 4))))
            for _ in range(int(rng.integers(1, 12)))
        ]
    elif how == 2:  # a zig-zag: many crossings within the point limit
        count = int(rng.integers(1000, 20000))
        xs = np.where(np.arange(count) % 2, 31.4, -0.4)
        ys = np.linspace(-0.4, 31.4, count)
        lines = [f"{x} {y}" for x, y in zip(xs, ys, strict=True)]
    else:  # raw bytes
        path.write_bytes(rng.bytes(int(rng.integers(0, 200))))
        return {relative}
    path.write_text("\n".join(lines) + "\n")
    return {relative}


def _equivalent_contour(root: Path, rng: np.random.Generator) -> set[str]:
    """Rewrite a contour in another but equivalent spelling: nothing may change."""
    kind = "io"[int(rng.integers(2))]
    path = root / _contour_rel(*VICTIM, kind)
    points = [line.split() for line in path.read_text().splitlines() if line.strip()]
    spell = [
        lambda v: v,
        lambda v: f"{float(v):.6f}",
        lambda v: f"{float(v):e}",
        lambda v: f"+{v}",
        lambda v: f"{v}.0",
    ][int(rng.integers(5))]
    end = ["\n", "\r\n", "\r"][int(rng.integers(3))]
    gap = [" ", "\t", "   "][int(rng.integers(3))]
    lines = [f"{spell(x)}{gap}{spell(y)}" for x, y in points]
    if rng.integers(2):
        lines.append(lines[0])  # a closing point that repeats the first
    if rng.integers(2):
        lines.insert(int(rng.integers(len(lines))), "")
    path.write_bytes(end.join(lines).encode() + end.encode())
    return set()  # same polygon: the sample must be unchanged


def _mutate_link_csv(root: Path, rng: np.random.Generator) -> set[str]:
    bad_ids = [
        "../P1", "/etc", "a/b", "..", ".", "\x1b[2J", "P2\x00", "", " ", "P1", "O1", "x" * 5000,
        "\u202eP2", '"P2', "P2,O2,extra",
    ]  # fmt: skip
    rows = ["patient_id,original_id", "P1,O1"]
    how = rng.integers(3)
    if how == 0:  # P2's row broken
        rows.append(f"{rng.choice(bad_ids)},{rng.choice([*bad_ids, 'O2'])}")
    elif how == 1:  # P2's row fine, junk rows around it
        rows += [f"{rng.choice(bad_ids)},{rng.choice(bad_ids)}" for _ in range(3)] + ["P2,O2"]
    else:  # blank lines and odd line ends, P2's row intact
        rows.insert(1, "")
        rows.append("P2,O2")
        rows.append(";;;")
    end = ["\n", "\r\n"][int(rng.integers(2))]
    (root / "link.csv").write_text(end.join(rows) + end)
    return {"dicoms/P2", "contourfiles/O2"}


def _special(root: Path, rng: np.random.Generator, outside: Path) -> set[str]:
    """Special files and links at one place of the layout."""
    secret = outside / "secret.txt"
    secret.write_text(f"{SECRET} 1\n2 3\n")
    (outside / "dir").mkdir(exist_ok=True)
    (outside / "dir" / "1.dcm").write_text(SECRET)
    places = [
        _dicom_rel(*VICTIM),
        _contour_rel(*VICTIM, "i"),
        _contour_rel(*VICTIM, "o"),
        "contourfiles/O2/i-contours",
        "dicoms/P2",
        "contourfiles/O2",
    ]
    relative = places[int(rng.integers(len(places)))]
    target = root / relative
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    how = int(rng.integers(7))
    if how == 0:
        os.mkfifo(target)
    elif how == 1:
        target.symlink_to(secret)
    elif how == 2:
        target.symlink_to(outside / "dir")
    elif how == 3:  # a loop
        target.symlink_to(target.parent / "loop-b")
        (target.parent / "loop-b").symlink_to(target)
    elif how == 4:
        target.symlink_to(root / "nowhere")
    elif how == 5:  # a folder where a file belongs, or a file where a folder belongs
        if relative.endswith((".dcm", ".txt")):
            target.mkdir()
        else:
            target.write_text("not a folder\n")
    else:  # a link inside the root to a file of the same kind: allowed, but touched
        source = _dicom_rel("P1", 1) if relative.endswith(".dcm") else relative
        if relative.endswith(".txt"):
            source = _contour_rel("P1", 1, relative.split("/")[2][0])
        if source == relative:
            target.symlink_to(root / "nowhere")
        else:
            target.symlink_to(root / source)
    return {relative}


Mutator = Callable[[Path, np.random.Generator], set[str]]
MUTATORS: dict[str, Mutator] = {
    "dicom-bytes": _mutate_dicom_bytes,
    "dicom-header": _mutate_dicom_header,
    "contour-text": _mutate_contour_text,
    "contour-equivalent": _equivalent_contour,
    "link-csv": _mutate_link_csv,
}


@pytest.mark.parametrize("seed", range(CASES_PER_KIND))
@pytest.mark.parametrize("kind", list(MUTATORS))
def test_fuzz_case(clean: Clean, tmp_path: Path, kind: str, seed: int) -> None:
    root = _fresh(clean, tmp_path)
    rng = np.random.default_rng([list(MUTATORS).index(kind), seed])
    touched = MUTATORS[kind](root, rng)
    with _deadline(CASE_SECONDS, f"{kind} case {seed}"):
        _check_case(clean, root, touched, layout_may_fail=False)


@pytest.mark.parametrize("seed", range(CASES_PER_KIND))
def test_fuzz_special_files_and_links(clean: Clean, tmp_path: Path, seed: int) -> None:
    root = _fresh(clean, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    touched = _special(root, np.random.default_rng([99, seed]), outside)
    with _deadline(CASE_SECONDS, f"special case {seed}"):
        _check_case(clean, root, touched, layout_may_fail=False)
