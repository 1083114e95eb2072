"""What of a dataset is read: regular files only, links only inside the root, one
problem per bad entry, folder or link.csv row; nothing blocks, nothing outside leaks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import I_SQUARE, O_SQUARE, SHAPE, contour_name, write_dicom

import dicontour
from dicontour import ContourError, DicomError, LayoutError, scan
from dicontour.errors import RefusedFileError
from dicontour.scan import MAX_LINK_CSV_BYTES, read_link_csv
from dicontour.storage import location

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symlinks")
#: Seconds within which every scan here must return (a blocked open would never).
DEADLINE = 20.0


def _within(function, *args, seconds: float = DEADLINE, **kwargs):
    """Run ``function`` in a daemon thread; fail (not hang) when it does not return in time."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} did not return within {seconds} s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def _dataset(root: Path, patients=("P1", "P2"), slices=(1, 2, 3)) -> Path:
    """Patients P<k> / O<k>, each slice with an i- and an o-contour."""
    root.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{pid},{'O' + pid[1:]}\n" for pid in patients)
    (root / "link.csv").write_text("patient_id,original_id\n" + rows)
    for pid in patients:
        oid = "O" + pid[1:]
        (root / "dicoms" / pid).mkdir(parents=True, exist_ok=True)
        for n in slices:
            write_dicom(root / f"dicoms/{pid}/{n}.dcm", np.zeros(SHAPE, np.int16), InstanceNumber=n)
            for kind, text in (("i", I_SQUARE), ("o", O_SQUARE)):
                path = root / "contourfiles" / oid / contour_name(kind, n)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return root


def _found(index) -> set[tuple[str, str]]:
    return {(p.code, p.path) for p in index.problems}


def _keys(index) -> set[tuple[str, int, bool, bool]]:
    return {
        (r.patient_id, r.slice, r.i_contour is not None, r.o_contour is not None) for r in index
    }


# ------------------------------------------------------------ special files


@posix_only
def test_fifo_as_dicom_and_as_contour_is_one_problem_each(tmp_path):
    root = _dataset(tmp_path / "data")
    (root / "dicoms/P1/2.dcm").unlink()
    os.mkfifo(root / "dicoms/P1/2.dcm")
    contour = root / "contourfiles/O2" / contour_name("o", 3)
    contour.unlink()
    os.mkfifo(contour)
    index = _within(scan, root)
    found = _found(index)
    assert ("not-a-regular-file", "dicoms/P1/2.dcm") in found
    assert ("not-a-regular-file", f"contourfiles/O2/{contour_name('o', 3)}") in found
    # Everything else is still there: P1 slice 2 lost its DICOM, P2 slice 3 its o-contour.
    assert _keys(index) == {
        ("P1", 1, True, True),
        ("P1", 3, True, True),
        ("P2", 1, True, True),
        ("P2", 2, True, True),
        ("P2", 3, True, False),
    }
    message = next(p.message for p in index.problems if p.path == "dicoms/P1/2.dcm")
    assert "FIFO" in message


@posix_only
@pytest.mark.slow
@pytest.mark.slow
def test_fifo_scan_with_worker_processes_completes(tmp_path):
    root = _dataset(tmp_path / "data")
    (root / "dicoms/P2/1.dcm").unlink()
    os.mkfifo(root / "dicoms/P2/1.dcm")
    done = subprocess.run(
        [sys.executable, "-m", "dicontour", "scan", "--json", "--workers", "2", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    codes = {(p["code"], p["path"]) for p in document["problems"]}
    assert ("not-a-regular-file", "dicoms/P2/1.dcm") in codes
    assert len(document["samples"]) == 5


@posix_only
def test_direct_reads_of_special_files_do_not_block(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(ContourError) as caught:
        _within(dicontour.read_contour, fifo)
    assert caught.value.code == "not-a-regular-file" and "FIFO" in caught.value.reason
    for function in (dicontour.read_dicom, dicontour.read_dicom_header):
        with pytest.raises(DicomError) as caught:
            _within(function, fifo)
        assert caught.value.code == "not-a-regular-file"
    with pytest.raises(ContourError, match="character device"):
        _within(dicontour.read_contour, "/dev/zero")
    with pytest.raises(ContourError, match="a folder"):
        dicontour.read_contour(tmp_path)
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(ContourError) as caught:
            _within(dicontour.read_contour, path)
        assert caught.value.code == "not-a-regular-file"
    finally:
        server.close()


@posix_only
def test_link_csv_that_is_a_fifo_is_a_layout_error(tmp_path):
    os.mkfifo(tmp_path / "link.csv")
    with pytest.raises(LayoutError, match=r"link\.csv: a FIFO"):
        _within(scan, tmp_path)


# -------------------------------------------------------------------- links


@posix_only
def test_link_to_a_file_outside_the_root_is_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET-LINE\n")
    root = _dataset(tmp_path / "data")
    contour = root / "contourfiles/O1" / contour_name("i", 2)
    contour.unlink()
    os.symlink(secret, contour)
    os.symlink("/etc/passwd", root / "dicoms/P1/9.dcm")
    index = _within(scan, root)
    assert ("link-outside-root", f"contourfiles/O1/{contour_name('i', 2)}") in _found(index)
    assert ("link-outside-root", "dicoms/P1/9.dcm") in _found(index)
    document = json.dumps(index.to_dict())
    assert "SECRET" not in document and "root:x" not in document
    assert str(secret) not in document  # not even where the link points
    out = tmp_path / "qa"
    dicontour.write_preview(index, out)
    page = (out / "index.html").read_text()
    assert "SECRET" not in page and "root:x" not in page and "link-outside-root" in page
    # Opening through the dataset's Location refuses it too.
    with pytest.raises(RefusedFileError) as caught:
        location(root).open(f"contourfiles/O1/{contour_name('i', 2)}")
    assert caught.value.code == "link-outside-root"


@posix_only
@pytest.mark.parametrize(
    "where",
    ["dicoms/P3", "contourfiles/O1/i-contours", "contourfiles/O3", "extra", "dicoms"],
)
def test_link_to_a_folder_outside_the_root_is_not_listed(tmp_path, where):
    root = _dataset(tmp_path / "data")
    if (root / where).exists():
        os.rename(root / where, tmp_path / "moved")
    os.symlink("/etc", root / where)
    index = _within(scan, root)
    assert ("link-outside-root", where) in _found(index)
    document = json.dumps(index.to_dict())
    assert "passwd" not in document and "hostname" not in document


@posix_only
def test_links_inside_the_root_are_followed(tmp_path):
    root = _dataset(tmp_path / "data", patients=("P1",))
    index_before = scan(root)
    store = root / ".store"
    store.mkdir()
    os.rename(root / "dicoms/P1/2.dcm", store / "two.dcm")
    os.symlink("../../.store/two.dcm", root / "dicoms/P1/2.dcm")  # relative, file
    os.rename(root / "contourfiles/O1", store / "O1")
    os.symlink(store / "O1", root / "contourfiles/O1")  # absolute, folder
    index = scan(root)
    assert index.problems == () and _keys(index) == _keys(index_before)
    k = next(k for k, r in enumerate(index) if r.slice == 2)
    np.testing.assert_array_equal(index.load(k).i_mask, index_before.load(k).i_mask)


@posix_only
def test_link_loops_and_dangling_links_are_broken_links(tmp_path):
    root = _dataset(tmp_path / "data")
    os.symlink("loop-b", root / "dicoms/loop-a")
    os.symlink("loop-a", root / "dicoms/loop-b")
    os.symlink(root / "dicoms/P1/7.dcm.a", root / "dicoms/P1/7.dcm")
    os.symlink(root / "dicoms/P1/7.dcm", root / "dicoms/P1/7.dcm.a")
    os.symlink("nowhere", root / "contourfiles/O2/o-contours/" / contour_name("o", 4)[11:])
    os.symlink(".", root / "dicoms/P2/self")  # a folder loop: listed once, never walked
    index = _within(scan, root)
    found = _found(index)
    assert {("broken-link", "dicoms/loop-a"), ("broken-link", "dicoms/loop-b")} <= found
    assert ("broken-link", "dicoms/P1/7.dcm") in found
    assert ("broken-link", f"contourfiles/O2/{contour_name('o', 4)}") in found
    assert ("stray-file", "dicoms/P2/self") in found
    assert len(index) == 6


@posix_only
def test_a_loop_as_a_patient_folder_is_one_problem(tmp_path):
    root = _dataset(tmp_path / "data")
    for top in ("dicoms/P2", "contourfiles/O2"):
        os.rename(root / top, tmp_path / top.replace("/", "-"))
        os.symlink(top.rsplit("/", 1)[1], root / top)  # points at itself
    index = _within(scan, root)
    found = _found(index)
    assert ("broken-link", "dicoms/P2") in found and ("broken-link", "contourfiles/O2") in found
    # Reported once, not also as a missing folder.
    assert not {code for code, path in found if path.endswith("2")} - {"broken-link"}
    assert {r.patient_id for r in index} == {"P1"} and len(index) == 3


# ---------------------------------------------------------- unreadable folders


def test_an_unlistable_folder_is_one_problem(tmp_path, monkeypatch):
    root = _dataset(tmp_path / "data", patients=("P1", "P2", "P3"))
    real_scandir = os.scandir
    refused = {str(root / "dicoms/P2"), str(root / "contourfiles/O3/i-contours")}

    def scandir(path):
        if os.fspath(path) in refused:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    index = scan(root)
    found = _found(index)
    assert ("unreadable-folder", "dicoms/P2") in found
    assert ("unreadable-folder", "contourfiles/O3/i-contours") in found
    assert "Permission denied" in " ".join(p.message for p in index.problems)
    assert _keys(index) == {("P1", n, True, True) for n in (1, 2, 3)} | {
        ("P3", n, False, True) for n in (1, 2, 3)
    }


@posix_only
@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root reads folders whatever their mode; the monkeypatched test above covers it",
)
def test_a_chmod_000_folder_is_one_problem(tmp_path):
    root = _dataset(tmp_path / "data")
    folder = root / "dicoms/P2"
    folder.chmod(0)
    try:
        index = scan(root)
    finally:
        folder.chmod(0o755)
    assert ("unreadable-folder", "dicoms/P2") in _found(index)
    assert {r.patient_id for r in index} == {"P1"}


# ----------------------------------------------------------------- link.csv


@pytest.mark.parametrize(
    "row",
    [
        b"../x,O9",
        b"a/b,O9",
        b"/abs/path,O9",
        b"P9,..",
        b"P9,a\\b",
        b"P\x009,O9",
        b"P9,O\x079",
        b"P\xff9,O9",
        b"only-one-cell",
        b"P9,",
        b'P9,"' + b"O" * 200_000 + b'"',
    ],
    ids=[
        "dotdot",
        "slash",
        "absolute",
        "dotdot-original",
        "backslash",
        "nul",
        "bell",
        "not-utf8",
        "one-cell",
        "empty-cell",
        "huge-field",
    ],
)
@pytest.mark.slow
def test_one_bad_link_row_is_one_problem(tmp_path, row):
    root = _dataset(tmp_path / "data")
    (root / "link.csv").write_bytes(b"patient_id,original_id\nP1,O1\n" + row + b"\nP2,O2\n")
    index = scan(root)
    bad = [p for p in index.problems if p.code == "bad-link-row"]
    assert len(bad) == 1 and bad[0].path == "link.csv" and "line 3" in bad[0].message
    assert len(bad[0].message) < 300  # a huge row is not quoted whole
    assert {r.patient_id for r in index} == {"P1", "P2"} and len(index) == 6
    with pytest.raises(LayoutError, match="line 3"):
        read_link_csv(root)  # called directly, it raises instead
    # or leaves the row out, as the scan does (cache verify --root checks the root so)
    assert [p.patient_id for p in read_link_csv(root, strict=False)] == ["P1", "P2"]


def test_blank_lines_before_the_header_are_skipped(tmp_path):
    root = _dataset(tmp_path / "data")
    (root / "link.csv").write_bytes(b"\xef\xbb\xbf\r\n \n\npatient_id,original_id\nP1,O1\nP2,O2\n")
    index = scan(root)
    assert index.problems == () and len(index) == 6


def test_link_csv_over_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    root = _dataset(tmp_path / "data")
    with open(root / "link.csv", "r+b") as handle:
        handle.truncate(MAX_LINK_CSV_BYTES + 1)  # sparse: no disk, and nothing to read
    reads: list[int] = []
    real_open = dicontour.storage.open_regular

    def counting_open(path, **kwargs):
        handle = real_open(path, **kwargs)
        original = handle.read

        def read(size=-1):
            reads.append(size)
            return original(size)

        handle.read = read  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(dicontour.storage, "open_regular", counting_open)
    with pytest.raises(LayoutError, match=rf"{MAX_LINK_CSV_BYTES + 1} bytes.*{MAX_LINK_CSV_BYTES}"):
        scan(root)
    assert reads == []


# ------------------------------------------------------------------ preview


def _undecodable_j2k() -> bytes:
    """pydicom's MR2_J2KR.dcm with its JPEG 2000 image header (SIZ segment) zeroed."""
    from pydicom.data import get_testdata_file

    data = bytearray(Path(get_testdata_file("MR2_J2KR.dcm")).read_bytes())
    start = data.find(b"\xff\x4f\xff\x51")  # JPEG 2000 SIZ segment: the image header
    data[start + 4 : start + 40] = bytes(36)
    return bytes(data)


def test_preview_with_an_undecodable_slice_writes_the_others(tmp_path):
    root = _dataset(tmp_path / "data", patients=("P1",))
    index = scan(root)
    assert {r.slice for r in index} == {1, 2, 3}
    # Replaced after the scan: the scan now decodes compressed files, so a slice
    # that fails at load is one that changed since (class 5 of issue 11).
    (root / "dicoms/P1/2.dcm").write_bytes(_undecodable_j2k())
    out = tmp_path / "qa"
    result = dicontour.write_preview(index, out)
    page = (out / "index.html").read_text()
    assert (out / "P1/1.png").is_file() and (out / "P1/3.png").is_file()
    assert not (out / "P1/2.png").exists()
    bad = [p for p in result.problems if p.code == "unreadable-dicom"]
    assert [(p.path, p.slice) for p in bad] == [("dicoms/P1/2.dcm", 2)]
    assert "dicoms/P1/2.dcm" in page and "cannot decode" in page
    # and a fresh scan refuses it: the header read and the decoder agree
    assert ("unreadable-dicom", "dicoms/P1/2.dcm") in _found(scan(root))


def test_preview_cli_with_an_undecodable_slice_exits_0(tmp_path, capsys):
    from dicontour.cli import main

    root = _dataset(tmp_path / "data", patients=("P1",), slices=(1, 2))
    (root / "dicoms/P1/1.dcm").write_bytes(_undecodable_j2k())
    assert main(["preview", "--quiet", str(root), str(tmp_path / "qa")]) == 0
    page = (tmp_path / "qa/index.html").read_text()
    assert "unreadable-dicom" in page and "cannot decode" in page  # listed, not drawn
    assert (tmp_path / "qa/P1/2.png").is_file() and not (tmp_path / "qa/P1/1.png").exists()


# ------------------------------------------------------------------- engine


def _sleep_forever(item: int) -> int:
    if item == 1:
        time.sleep(3600)
    return item


@pytest.mark.slow
@pytest.mark.slow
def test_engine_close_does_not_wait_forever_on_a_blocked_worker(monkeypatch):
    from dicontour import engine

    monkeypatch.setattr(engine, "CLOSE_GRACE_SECONDS", 0.5)
    local = engine.LocalEngine(workers=2)
    results = local.run(_sleep_forever, [0, 1])
    assert next(results) == (0, 0)
    workers = list(local._pool._processes.values())  # to check that they end
    started = time.monotonic()
    results.close()
    local.close()
    assert time.monotonic() - started < 10
    assert not any(worker.is_alive() for worker in workers)


# --------------------------------------------------------------- the cache


@posix_only
def test_cache_fingerprint_lists_through_the_same_gate(tmp_path):
    from dicontour.cache._fingerprint import list_files

    root = _dataset(tmp_path / "data", patients=("P1",))
    os.mkfifo(root / "dicoms/P1/5.dcm")
    os.symlink("loop", root / "dicoms/P1/loop")
    os.symlink("/etc", root / "contourfiles/etc")
    files = _within(list_files, location(root))
    assert files["dicoms/P1/5.dcm"] == "refused not-a-regular-file"
    assert files["dicoms/P1/loop"] == "refused broken-link"
    assert files["contourfiles/etc"] == "refused link-outside-root"
    assert not any("passwd" in name for name in files)
    assert sum(not value.startswith("refused") for value in files.values()) == 1 + 3 + 6


# ------------------------------------------------- property: generated trees

_PATIENTS = ("P1", "P2", "P3")
#: Folders of the layout where something can be added or replaced.
_LEVELS = (
    "",
    "dicoms",
    "contourfiles",
    *(f"dicoms/{pid}" for pid in _PATIENTS),
    *(f"contourfiles/O{pid[1:]}" for pid in _PATIENTS),
    *(f"contourfiles/O{pid[1:]}/{kind}-contours" for pid in _PATIENTS for kind in "io"),
)
#: Names for added entries: they look like the layout but never pair into a new sample.
_ADDED = ("x", "9.dcm", "P9", "O9", "i-contours", contour_name("i", 8)[11:])
_KINDS = ("fifo", "dangling", "loop", "outside-file", "outside-folder", "inside-file", "inside-dir")


_REFUSAL = {
    "fifo": "not-a-regular-file",
    "dangling": "broken-link",
    "loop": "broken-link",
    "outside-file": "link-outside-root",
    "outside-folder": "link-outside-root",
}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    base = tmp_path_factory.mktemp("template")
    root = _dataset(base / "data", patients=_PATIENTS, slices=(1, 2))
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET 1\n")
    write_dicom(outside / "secret.dcm", np.zeros(SHAPE, np.int16), PatientName="SECRET")
    return root, scan(root)


def _special(path: Path, kind: str, root: Path) -> None:
    """Make ``path`` a special entry of ``kind``."""
    outside = root.parent / "outside"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling":
        os.symlink(root / "no-such-thing", path)
    elif kind == "loop":
        os.symlink(path.name, path)
    elif kind == "outside-file":
        os.symlink(outside / ("secret.dcm" if path.suffix == ".dcm" else "secret.txt"), path)
    elif kind == "outside-folder":
        os.symlink(outside, path)
    elif kind == "inside-file":
        os.symlink(root / "dicoms/P1/1.dcm", path)
    else:  # inside-dir
        os.symlink(root / "dicoms", path)


def _within_root(record_paths: list[str], replaced: set[str]) -> bool:
    """Whether none of the files (or their folders) of a sample was replaced."""
    return not any(
        path == gone or path.startswith(gone + "/") for path in record_paths for gone in replaced
    )


@posix_only
@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
@pytest.mark.slow
def test_generated_trees_with_special_entries(template, tmp_path_factory):
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    source, clean = template
    replaceable = sorted(
        {r.dicom for r in clean}
        | {p for r in clean for p in (r.i_contour, r.o_contour) if p}
        | {level for level in _LEVELS if level}
        | {"link.csv"}
    )
    faults = st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.sampled_from(_LEVELS), st.sampled_from(_ADDED)),
            st.tuples(st.just("replace"), st.sampled_from(replaceable), st.just("")),
        ).flatmap(lambda t: st.tuples(st.just(t), st.sampled_from(_KINDS))),
        min_size=1,
        max_size=5,
    )

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(faults)
    def check(changes):
        work = tmp_path_factory.mktemp("tree")
        root = work / "data"
        shutil.copytree(source, root, symlinks=True)
        shutil.copytree(source.parent / "outside", work / "outside")
        replaced: set[str] = set()
        added: set[str] = set()
        special: dict[str, str] = {}  # relative path -> kind
        for (action, where, name), kind in changes:
            if any(where == gone or where.startswith(gone + "/") for gone in replaced):
                continue  # inside something already replaced
            if action == "replace":
                target = root / where
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
                replaced.add(where)
                special[where] = kind
                _special(target, kind, root)
            else:
                relative = f"{where}/{name}" if where else name
                if (
                    relative in added
                    or (root / relative).exists()
                    or (root / relative).is_symlink()
                ):
                    continue
                added.add(relative)
                special[relative] = kind
                _special(root / relative, kind, root)
        try:
            index = _within(scan, root)
        except LayoutError:  # the only error a scan may raise, and only for link.csv
            assert "link.csv" in replaced
            return
        after = {(r.patient_id, r.slice): r.to_dict() for r in index}
        for record in clean:
            paths = [p for p in (record.dicom, record.i_contour, record.o_contour) if p]
            if _within_root(paths, replaced):
                assert after.get((record.patient_id, record.slice)) == record.to_dict()
        assert set(after) <= {(r.patient_id, r.slice) for r in clean}
        document = json.dumps(index.to_dict())
        assert "secret" not in document.lower() and str(work / "outside") not in document
        assert all(p.code in dicontour.CODES for p in index.problems)
        paths = {p.path for p in index.problems}
        for relative in added:  # in folders always listed: each addition is reported
            folder = relative.rpartition("/")[0]
            if folder in ("", "dicoms", "contourfiles") and folder not in replaced:
                assert relative in paths
        for relative, kind in special.items():
            if kind.startswith("inside"):
                continue
            # Never read or listed: at most the refusal itself is reported.
            beneath = {p.code for p in index.problems if p.path.startswith(relative + "/")}
            assert beneath <= {"missing-patient-folder", "missing-contour-folder"}
            codes = {p.code for p in index.problems if p.path == relative}
            assert codes <= {_REFUSAL[kind]}, (relative, kind, codes)
            folder = relative.rpartition("/")[0]
            if folder in ("", "dicoms", "contourfiles") and folder not in replaced:
                assert codes == {_REFUSAL[kind]}
        for k in range(len(index)):
            index.load(k)  # what the scan kept can be loaded

    check()
