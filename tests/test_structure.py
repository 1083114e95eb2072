"""Issue 12: the layering rules, the one storage abstraction and the shared types."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dicontour
from dicontour.errors import ContourError, DicomError, RefusedFileError
from dicontour.loader import LoaderOptions
from dicontour.problems import CODES, Problem
from dicontour.storage import LockHeld, NotRemoved, location

SRC = Path(dicontour.__file__).parent


def _imports(path: Path) -> list[tuple[str, int, int]]:
    """(module named, level, column) of every import statement in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, node.col_offset))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, 0, node.col_offset) for alias in node.names)
    return found


def _absolute(path: Path, module: str, level: int) -> str:
    if not level:
        return module
    package = list(path.relative_to(SRC.parent).with_suffix("").parts)[: -level or None]
    return ".".join([*package, module] if module else package)


def test_nothing_below_qa_and_cli_imports_them():
    for path in SRC.rglob("*.py"):
        part = path.relative_to(SRC).parts[0]
        if part in ("qa", "cli", "__init__.py", "__main__.py"):
            continue
        for module, level, _ in _imports(path):
            name = _absolute(path, module, level)
            assert not name.startswith(("dicontour.qa", "dicontour.cli")), f"{path}: {name}"


def test_the_cache_does_not_import_the_loader():
    for path in (SRC / "cache").glob("*.py"):
        for module, level, _ in _imports(path):
            assert not _absolute(path, module, level).startswith("dicontour.loader"), path


def test_importing_the_package_front_loads_no_heavy_module():
    code = "import sys, dicontour.errors; print(sorted(m for m in ('numpy', 'pydicom', "
    code += "'fsspec', 'dicontour.scan', 'dicontour.qa') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]", out.stderr


def test_package_front_names_resolve_and_scan_stays_the_function():
    import dicontour.loader  # imports the scan module: must not shadow dicontour.scan

    assert callable(dicontour.scan) and dicontour.scan.__name__ == "scan"
    for name in dicontour.__all__:
        assert getattr(dicontour, name) is not None
    assert dicontour.__version__[0].isdigit()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dicontour.nope  # noqa: B018


# --- Problem.from_error -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (DicomError("a.dcm", "truncated", code="no-pixel-data"), "no-pixel-data", "truncated"),
        (DicomError("a.dcm", "odd", code="not-a-code"), "unreadable-dicom", "odd"),
        (ContourError("c.txt", "x", line=2), "unparseable-contour", "line 2: x"),
        (RefusedFileError("d", "a FIFO"), "not-a-regular-file", "a FIFO"),
    ],
)
def test_problem_from_error(error, code, message):
    found = Problem.from_error(error, note=" (n)", patient_id="P", slice=3)
    assert (found.code, found.severity) == (code, CODES[code][0])
    assert (found.path, found.message) == (error.path, message + " (n)")
    assert (found.patient_id, found.slice) == ("P", 3)
    assert Problem.from_error(error, path="other").path == "other"


# --- LoaderOptions ------------------------------------------------------------------------


def test_loader_options_are_frozen_and_normalised():
    options = LoaderOptions(size=(np.int64(4), 5), shuffle=0, timeout=3)
    assert options.size == (4, 5) and type(options.size[0]) is int
    assert options.shuffle is False and options.timeout == 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("batch_size", 0, "batch_size must be an integer >= 1; got 0"),
        ("workers", -1, "workers must be an integer >= 0"),
        ("on_error", "ignore", "on_error must be 'skip' or 'raise'"),
        ("size", (4,), r"size must be \(H, W\)"),
        ("timeout", 0, "timeout must be a positive number"),
        ("rank", 2, "rank must be < world_size=1"),
        ("start_method", "thread", "start_method must be one of"),
    ],
)
def test_loader_options_name_the_bad_option(option, value, match):
    with pytest.raises(ValueError, match=match):
        LoaderOptions(**{option: value})


def test_batch_loader_keeps_its_validated_options(tmp_path):
    from dicontour.loader import BatchLoader

    with pytest.raises(ValueError, match="prefetch must be an integer >= 1"):
        BatchLoader(object(), prefetch=0)  # options first: before the source is looked at


# --- Location: the one storage abstraction ------------------------------------------------


def test_write_atomic_and_staged_leave_no_temporary(tmp_path):
    where = location(tmp_path)
    where.write_atomic("a.bin", b"abc")
    with where.staged("b.bin") as handle:
        handle.write(b"def")
    with pytest.raises(RuntimeError), where.staged("c.bin") as handle:
        handle.write(b"half")
        raise RuntimeError("killed")
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]
    assert (tmp_path / "b.bin").read_bytes() == b"def"
    assert where.exists("a.bin") and not where.exists("c.bin")


def test_open_npy_rows_local_and_in_memory(tmp_path):
    array = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.save(tmp_path / "a.npy", array)
    local = location(tmp_path).open_npy("a.npy")
    memory = location("memory://structure-test")
    memory.fs.pipe_file(memory.path("a.npy"), (tmp_path / "a.npy").read_bytes())
    remote = memory.open_npy("a.npy")
    assert remote.shape == array.shape and remote.dtype == array.dtype
    for key in [0, 1, (1, 2), (0, 0)]:
        assert np.array_equal(local[key], array[key])
        assert np.array_equal(remote[key], array[key])


def test_remove_never_follows_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").symlink_to(outside)
    where = location(root)
    with pytest.raises(NotRemoved) as caught:
        where.remove("sub/keep.txt")
    assert caught.value.through and caught.value.what == "symbolic link"
    assert (outside / "keep.txt").exists()
    (root / "real").mkdir()
    (root / "real" / "mine").write_text("x")
    (root / "real" / "theirs").write_text("y")
    with pytest.raises(NotRemoved, match="theirs"):
        where.remove_folder("real", own=lambda relative: relative.endswith("mine"))
    assert (root / "real" / "theirs").exists()
    (root / "real" / "theirs").unlink()
    where.remove_folder("real", own=lambda relative: relative.endswith("mine"))
    assert not (root / "real").exists()


def test_walk_does_not_enter_links_or_refused_folders(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f").write_bytes(b"12")
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "g").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "in")
    walked = {w.relative: w for w in location(tmp_path).walk(descend=lambda r: r == "in")}
    assert set(walked) == {"in", "in/f", "skip", "link"}
    assert walked["in/f"].size == 2


def test_hold_refuses_a_second_holder(tmp_path):
    where = location(tmp_path)
    with where.hold("lock", "first"):
        with pytest.raises(LockHeld) as caught, where.hold("lock", "second"):
            pass
        assert caught.value.holder == "first" and caught.value.released_on_exit
    with where.hold("lock", "third"):  # released: the next one gets it
        pass


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["x.bin", "d/e/x.bin"]))
def test_file_versions_see_every_write(data, name):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        where = location(folder)
        where.make_parents(name)
        where.write_atomic(name, data)
        top = name.split("/")[0]
        files, folders = ([name], []) if top == name else ([], [top])
        found = where.file_versions(files=files, folders=folders)
        assert list(found) == [name]
        assert found[name].split()[0] == str(len(data))


# ------------------------------------------------- shared types of issue 12's clean-up


def test_code_table_reads_continued_meanings_and_refuses_bad_rows():
    from dicontour.problems import _CODES_TABLE, _read_codes

    table = "# group\nx-code   warning  first half\n                  second half\ny  info  one\n"
    assert _read_codes(table) == {
        "x-code": ("warning", "first half second half"),
        "y": ("info", "one"),
    }
    with pytest.raises(ValueError, match="'z'"):
        _read_codes("z  fatal  no such severity")
    with pytest.raises(ValueError, match="'y'"):
        _read_codes("y  info  one\ny  error  again")
    # Every line of the table is a code, a comment or a continuation; none is too wide.
    assert all(len(line) <= 100 for line in _CODES_TABLE.splitlines())
    assert CODES["root-unreachable"][1].endswith("the patient's files are not used")
    assert "  " not in "".join(meaning for _, meaning in CODES.values())


def test_reports_share_their_fields_and_to_dict():
    from dicontour.cache import BuildReport, CacheReport, VerifyReport
    from dicontour.index import Exclusion
    from dicontour.loader.stats import EpochStats

    built = BuildReport("c", 3, 1, 1, 0, False, {"total": 0.5}, {"error": 0})
    assert isinstance(built, CacheReport)
    assert list(built.to_dict()) == [
        "cache", "samples", "shards", "built", "reused", "up_to_date", "seconds", "problems"
    ]  # fmt: skip
    verified = VerifyReport("c", 3, 1, 10, ["shards/000000/has.npy: wrong size"])
    assert verified.to_dict() == {
        "cache": "c", "samples": 3, "shards": 1, "bytes": 10,
        "failures": ["shards/000000/has.npy: wrong size"], "fresh": None, "seconds": 0.0,
        "ok": False,
    }  # fmt: skip
    assert Exclusion("P_0001", "i", "i-outside-o", "why").to_dict() == {
        "case_id": "P_0001", "contour": "i", "code": "i-outside-o", "reason": "why"
    }  # fmt: skip
    stats = EpochStats(0, 0, 0, 0, 0.0, 0.0, 0.0, float("nan"), 0, 0, False)
    assert stats.to_dict()["first_batch_s"] is None
