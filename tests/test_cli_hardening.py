"""The command line against hostile names and broken environments.

* Nothing a dataset holds (ids, file names, contour text) reaches a terminal
  as a control sequence: every human-readable line is escaped, ``--json`` is exact.
* Every command ends with a documented exit code and at most one line on
  stderr, never a traceback: success, problems, ``--strict``, unusable roots,
  bad options, OS errors, Ctrl-C.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
import unicodedata
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicontour.cli import describe_os_error, main
from dicontour.cli._format import printable
from dicontour.phantom import write_phantom
from dicontour.storage import Location

pytestmark = pytest.mark.timeout(120)

#: Bidi embeddings, overrides, isolates and marks, and line/paragraph separators.
BIDI = {0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def unsafe(text: str) -> list[str]:
    """Characters of ``text`` a terminal could act on (the spec, written independently)."""
    found = []
    for ch in text:
        code = ord(ch)
        if (
            (code < 0x20 and ch != "\n")
            or 0x7F <= code <= 0x9F
            or code in BIDI
            or 0xD800 <= code <= 0xDFFF
        ):
            found.append(ch)
    return found


#: Everything hostile at once; no "/" or NUL, which no file name can hold.
NASTY = "\x1b[2J\x1b]0;owned\x07\r\n\t\x08\x7f\x85\x9b31m\u202etxt.exe\u2066\u2028"


# --------------------------------------------------------------------------- printable


def test_printable_by_hand():
    assert printable("P1\x1b[2J") == "P1\\x1b[2J"
    assert printable("a\u202eb") == "a\\u202eb"
    assert printable("\x7f\x85\x9b") == "\\x7f\\x85\\x9b"
    assert printable("tab\there") == "tab\\x09here"
    assert printable("two\nlines") == "two\\x0alines"
    assert printable("two\nlines", keep="\n") == "two\nlines"
    assert printable("caf\udcff") == "caf\\udcff"  # an undecodable byte of a file name
    assert printable("± Ünïcode 心 🫀") == "± Ünïcode 心 🫀"  # printable text is untouched


@given(st.text())
@pytest.mark.slow
def test_printable_leaves_nothing_a_terminal_acts_on(text):
    out = printable(text)
    assert unsafe(out) == [] and "\n" not in out
    assert unsafe(printable(text, keep="\n")) == []


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf"))))
def test_printable_is_the_identity_on_ordinary_text(text):
    assert printable(text) == text


# --------------------------------------------------------------------------- hostile trees


def hostile_tree(base: Path, nasty: str) -> tuple[Path, dict[str, str]]:
    """A phantom dataset under a folder named with ``nasty``, where ``nasty`` also
    reaches the report through every other way a dataset can carry text.

    * ``pid``/``oid``: a patient whose ids hold what link.csv accepts of
      ``nasty`` (no C0/C1 control characters: bidi overrides, line separators,
      the printable rest), so its slices are samples shown by every command;
    * ``bad_pid``: a link.csv row with the whole of ``nasty`` in its ids, a
      ``bad-link-row`` whose message quotes it, and a patient folder of that
      name, which is then ``not-in-link-csv``;
    * ``stray``: a stray file in a linked patient's folder;
    * an unknown contour folder and a contour line holding ``nasty``.

    Returns the root and the exact names that were planted.
    """
    root = base / f"data{nasty}root"
    write_phantom(root, patients=3, slices=8, shape=(64, 64), faults=False)
    accepted = "".join(ch for ch in nasty if unicodedata.category(ch) != "Cc")
    pid, oid = f"P{accepted}1", f"O{accepted}1"
    bad_pid, bad_oid = f"P{nasty}1", f"O{nasty}1"
    os.rename(root / "dicoms/PHA00001", root / "dicoms" / pid)
    os.rename(root / "contourfiles/PH-1", root / "contourfiles" / oid)
    (root / "dicoms" / bad_pid).mkdir()
    shutil.copy(root / "dicoms/PHA00003/1.dcm", root / "dicoms" / bad_pid / "1.dcm")
    with open(root / "link.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [
                ["patient_id", "original_id"],
                [pid, oid],
                ["PHA00002", "PH-2"],
                ["PHA00003", "PH-3"],
                [bad_pid, bad_oid],
            ]
        )
    stray = f"s{nasty}.txt"
    (root / "dicoms/PHA00002" / stray).write_text("not a DICOM")
    unknown = root / "contourfiles" / f"U{nasty}9" / "i-contours"
    unknown.mkdir(parents=True)
    (unknown / "IM-0001-0002-icontour-manual.txt").write_text("10 10\n20 10\n20 20\n")
    bad = root / "contourfiles/PH-3/i-contours/IM-0001-0004-icontour-manual.txt"
    bad.write_text(f"10 10\n1{nasty} 2\n20 20\n")
    return root, {
        "pid": pid,
        "oid": oid,
        "bad_pid": bad_pid,
        "bad_folder": f"dicoms/{bad_pid}",
        "stray": f"dicoms/PHA00002/{stray}",
    }


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_safe(out: str, err: str) -> None:
    assert unsafe(out) == [], f"stdout: {unsafe(out)}"
    assert unsafe(err) == [], f"stderr: {unsafe(err)}"
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    return hostile_tree(tmp_path_factory.mktemp("hostile"), NASTY)


def test_the_hostile_names_do_reach_the_report_escaped(hostile, capsys):
    root, names = hostile
    code, out, err = run(capsys, "scan", str(root))
    assert code == 0
    assert_safe(out, err)
    assert printable(names["pid"]) in out  # the id is shown, as visible escapes
    assert printable(names["stray"]) in out
    assert printable(names["bad_folder"]) in out  # a folder that is not an id
    assert "bad-link-row" in out  # the row with control characters, quoted escaped
    assert "\\x1b[2J" in out and "\\u202e" in out and "\\u2028" in out


def test_json_keeps_the_exact_names(hostile, capsys):
    root, names = hostile
    code, out, _ = run(capsys, "scan", str(root), "--json")
    assert code == 0
    assert out.isascii()  # json.dumps escapes every control and non-ASCII character
    document = json.loads(out)
    assert document["root"] == str(root)
    paths = {(p["code"], p["path"]) for p in document["problems"]}
    assert ("stray-file", names["stray"]) in paths
    assert ("not-in-link-csv", names["bad_folder"]) in paths
    assert ("bad-link-row", "link.csv") in paths
    assert names["pid"] in {s["patient_id"] for s in document["samples"]}
    assert names["oid"] in {s["original_id"] for s in document["samples"]}


def _every_command(root: Path, out: Path) -> list[list[str]]:
    cache = str(out / f"cache{NASTY}")
    return [
        ["scan", str(root)],
        ["scan", str(root), "--workers", "0"],
        ["check", str(root)],
        ["batches", str(root), "--workers", "0", "--epochs", "1", "--batch-size", "4"],
        ["preview", str(root), str(out / f"preview{NASTY}"), "--limit", "1"],
        ["intensity", str(root)],
        ["intensity", str(root), "--out", str(out / f"intensity{NASTY}")],
        ["segment", str(root)],
        ["segment", str(root), "--out", str(out / f"segment{NASTY}")],
        ["cache", "build", str(root), cache, "--workers", "0"],
        ["cache", "build", str(root), cache, "--workers", "0"],  # up to date
        ["cache", "verify", cache, "--root", str(root)],
        ["demo", str(out / f"demo{NASTY}")],
        ["demo", str(out / f"demo{NASTY}")],  # reused
        ["split", str(root), "--folds", "2", "--out", str(out / f"splits{NASTY}.json")],
        ["split", str(root), "--holdout", "0.3", "--exclude", "i-outside-o"],
        ["export", str(root), str(out / f"nn{NASTY}"), "--format", "nnunet", "--folds", "2"],
        ["export", str(root), str(out / f"rt{NASTY}"), "--format", "rtstruct"],
        # error lines: an unusable root, an output path that is a file, an unknown id
        ["scan", str(out / f"missing{NASTY}")],
        ["cache", "build", str(root), str(root / "link.csv")],
        ["preview", str(root), str(out / "p"), "--patient", f"nobody{NASTY}"],
    ]


@pytest.mark.slow
@pytest.mark.slow
def test_no_command_prints_a_control_character(hostile, tmp_path, capsys):
    root, _ = hostile
    codes = []
    for argv in _every_command(root, tmp_path):
        code, out, err = run(capsys, *argv)
        assert_safe(out, err)
        # the root's name holds "\r\n": an escaped CR then a raw line break means a
        # name split a line (echo keeps the report's own line breaks, not a name's)
        assert "\\x0d\n" not in out + err, argv
        # at most one error line; warnings (matplotlib lacks glyphs for control
        # characters in the figures' titles) are one line each and escaped
        lines = err.splitlines()
        assert all(line.startswith("dicontour: warning: ") for line in lines[:-1]), argv
        assert not lines or lines[-1].startswith("dicontour: "), argv
        codes.append(code)
    assert codes[:18] == [0] * 18, codes
    assert codes[18:] == [2, 1, 1]


def test_a_corrupt_cache_lists_its_failures_escaped(hostile, tmp_path, capsys):
    root, _ = hostile
    cache = tmp_path / f"c{NASTY}"
    assert main(["cache", "build", str(root), str(cache), "--workers", "0", "--quiet"]) == 0
    arrays = sorted(cache.rglob("*.npy"))
    arrays[0].write_bytes(arrays[0].read_bytes()[:-8] + b"\0" * 8)
    capsys.readouterr()
    code, out, err = run(capsys, "cache", "verify", str(cache))
    assert code == 1
    assert_safe(out, err)
    assert "\\x1b[2J" in out


def test_an_undecodable_file_name_is_escaped_not_a_crash(tmp_path, capsys):
    root = tmp_path / "data"
    write_phantom(root, patients=1, slices=4, shape=(32, 32), faults=False)
    raw = os.fsencode(root / "dicoms/PHA00001") + b"/notes\xff\x1b.txt"
    with open(raw, "wb") as f:
        f.write(b"x")
    code, out, err = run(capsys, "scan", str(root))
    assert code == 0
    assert_safe(out, err)
    assert "notes\\udcff\\x1b.txt" in out


_HOSTILE_TEXT = st.text(
    st.characters(
        blacklist_categories=("Cs",),  # link.csv is UTF-8 text: no lone surrogates
        blacklist_characters="/\0",  # impossible in a file name
    ),
    min_size=1,
    max_size=12,
).map(lambda s: s + "\x1b[2J")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nasty=_HOSTILE_TEXT)
@pytest.mark.slow
def test_any_name_is_escaped_in_scan_and_check(nasty):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            root, names = hostile_tree(Path(tmp), nasty)
        except OSError:  # a name the file system refuses (too long in bytes): nothing to show
            return
        for argv in (["scan", str(root)], ["check", str(root)], ["scan", str(root), "--json"]):
            code, out, err = _run_captured(argv)
            assert code in (0, 2)  # 2: the scan refused a row of link.csv, said in one line
            assert "Traceback" not in err and len(err.splitlines()) <= 1
            if "--json" in argv:
                if code == 0:
                    document = json.loads(out)
                    assert names["stray"] in {p["path"] for p in document["problems"]}
                    ids = {s["patient_id"] for s in document["samples"]}
                    assert ids <= {names["pid"], "PHA00002", "PHA00003"}
            else:
                assert_safe(out, err)
        shutil.rmtree(root, ignore_errors=True)


def _run_captured(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with stdout/stderr captured (capsys does not mix with @given)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_log_records_and_warnings_are_escaped(hostile, capsys, monkeypatch):
    import dicontour.cli.scan as scan_command

    real = scan_command.output

    def noisy(args, index):
        logging.getLogger("dicontour.cache").warning("root %s moved", f"r{NASTY}")
        warnings.warn(f"odd value {NASTY}", UserWarning, stacklevel=1)
        return real(args, index)

    monkeypatch.setattr(scan_command, "output", noisy)
    code, out, err = run(capsys, "scan", str(hostile[0]))
    assert code == 0
    assert_safe(out, err)
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("dicontour: warning: root r\\x1b[2J")
    assert lines[1].startswith("dicontour: warning: UserWarning: odd value \\x1b[2J")
    # and the handler is gone afterwards: the library logs as before outside the CLI
    assert not any(
        isinstance(h, logging.StreamHandler) for h in logging.getLogger("dicontour").handlers
    )


@pytest.mark.parametrize(
    "argv",
    [["batches", "x", "--batch-size", f"8{NASTY}"], [f"scan{NASTY}"], ["scan", "x", NASTY]],
)
def test_usage_errors_are_escaped_too(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == ""
    assert "error:" in err
    assert_safe(out, err)


# --------------------------------------------------------------------------- exit codes


@pytest.fixture(scope="module")
def clean(phantom: Callable[..., Path]) -> Path:
    """A phantom without faults (this module's ``clean`` is a dataset, not the leak check)."""
    return phantom(patients=3, slices=8, shape=(64, 64), faults=False)


@pytest.fixture(scope="module")
def faulty(phantom: Callable[..., Path]) -> Path:
    return phantom(patients=3, slices=8, shape=(64, 64), faults=True)


@pytest.fixture(scope="module")
def built_cache(clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache") / "cache"
    assert main(["cache", "build", str(clean), str(cache), "--workers", "0", "--quiet"]) == 0
    return cache


#: (argv, exit code); ROOT, FAULTY, CACHE, OUT, MISSING and FILE are filled in.
EXIT_CODES = [
    # 0: completed, problems found included
    (["scan", "ROOT"], 0),
    (["scan", "FAULTY"], 0),
    (["check", "FAULTY"], 0),
    (["batches", "FAULTY", "--workers", "0", "--epochs", "1"], 0),
    (["preview", "ROOT", "OUT", "--limit", "1"], 0),
    (["intensity", "ROOT"], 0),
    (["segment", "ROOT"], 0),
    (["cache", "build", "ROOT", "OUT"], 0),
    (["cache", "verify", "CACHE"], 0),
    (["demo", "OUT"], 0),
    (["split", "FAULTY", "--folds", "2"], 0),
    # 1: failures
    (["scan", "FAULTY", "--strict"], 1),
    (["check", "FAULTY", "--strict"], 1),
    (["cache", "verify", "MISSING"], 1),  # no cache there: verification fails
    (["cache", "build", "ROOT", "FILE"], 1),  # OSError: not a folder
    (["preview", "ROOT", "FILE"], 1),
    (["intensity", "ROOT", "--out", "FILE"], 1),
    (["segment", "ROOT", "--out", "FILE"], 1),
    (["preview", "ROOT", "OUT", "--patient", "nobody"], 1),
    # 2: unusable dataset roots
    (["scan", "MISSING"], 2),
    (["check", "MISSING"], 2),
    (["batches", "MISSING"], 2),
    (["preview", "MISSING", "OUT"], 2),
    (["intensity", "MISSING"], 2),
    (["segment", "MISSING"], 2),
    (["cache", "build", "MISSING", "OUT"], 2),
    (["cache", "verify", "CACHE", "--root", "MISSING"], 2),
    (["scan", "gs://bucket/data"], 2),
    (["scan", "foo://bucket/data"], 2),
    (["demo", "FILE"], 2),
    (["split", "MISSING", "--folds", "2"], 2),
    # 2: usage errors, from argparse or from the library refusing a value
    ([], 2),
    (["scan"], 2),
    (["scan", "ROOT", "--bogus"], 2),
    (["scan", "ROOT", "--workers", "-1"], 2),
    (["scan", "ROOT", "--workers", "100000"], 2),
    # --scheduler alone means the dask engine (issue 13); with --engine local it is a usage error.
    (["scan", "ROOT", "--engine", "local", "--scheduler", "tcp://127.0.0.1:1"], 2),
    (["scan", "ROOT", "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "0"], 2),
    (["scan", "ROOT", "--scheduler", "tcp://127.0.0.1:1", "--no-worker-timeout", "-1"], 2),
    (["cache", "build", "ROOT", "OUT", "--shard-size", "0"], 2),
    (["cache", "build", "ROOT", "OUT", "--workers", "-3"], 2),
    (["batches", "ROOT", "--batch-size", "0"], 2),
    (["batches", "ROOT", "--batch-size", "-5"], 2),
    (["batches", "ROOT", "--epochs", "-1"], 2),
    (["batches", "ROOT", "--epochs", "0"], 2),
    (["batches", "ROOT", "--size", "0", "64"], 2),
    (["batches", "ROOT", "--size", "-64", "64"], 2),
    (["batches", "ROOT", "--prefetch", "0"], 2),
    (["batches", "ROOT", "--step-ms", "-1"], 2),
    (["batches", "ROOT", "--step-ms", "nan"], 2),
    (["batches", "ROOT", "--step-ms", "inf"], 2),
    (["batches", "ROOT", "--seed", "-1"], 2),
    (["batches", "ROOT", "--workers", "x"], 2),
    (["preview", "ROOT", "OUT", "--limit", "-1"], 2),
    (["preview", "ROOT", "OUT", "--limit", "0"], 2),
    (["segment", "ROOT", "--method", "nope"], 2),
    (["demo", "OUT", "--seed", "x"], 2),
    (["split", "ROOT", "--folds", "1"], 2),
    (["split", "ROOT", "--folds", "99"], 2),  # more folds than patients: the library refuses
    (["split", "ROOT", "--holdout", "1.5"], 2),
    (["split", "ROOT", "--folds", "2", "--workers", "-1"], 2),
]


def _fill(argv: list[str], paths: dict[str, Path]) -> list[str]:
    return [str(paths[a]) if a in paths else a for a in argv]


@pytest.mark.parametrize(
    ("argv", "expected"), EXIT_CODES, ids=[" ".join(a) or "-" for a, _ in EXIT_CODES]
)
@pytest.mark.slow
def test_exit_code_table(argv, expected, clean, faulty, built_cache, tmp_path, capsys):
    (tmp_path / "a-file").write_text("in the way")
    paths = {
        "ROOT": clean,
        "FAULTY": faulty,
        "CACHE": built_cache,
        "OUT": tmp_path / "out",
        "MISSING": tmp_path / "missing",
        "FILE": tmp_path / "a-file",
    }
    try:
        code = main(_fill(argv, paths))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    _, err = capsys.readouterr()
    assert code == expected, err
    assert "Traceback" not in err
    if expected == 1 and "--strict" not in argv:
        assert err.startswith("dicontour: error: ") and len(err.splitlines()) == 1
    if expected == 2 and argv[:1] in (["scan"], ["check"]) and "MISSING" in argv:
        assert err.startswith("dicontour: error: ") and len(err.splitlines()) == 1


#: One run per command, each interrupted by Ctrl-C once it touches the dataset.
INTERRUPTED = [
    ["scan", "ROOT"],
    ["scan", "ROOT", "--json"],
    ["check", "ROOT"],
    ["batches", "ROOT", "--workers", "0"],
    ["preview", "ROOT", "OUT"],
    ["intensity", "ROOT"],
    ["segment", "ROOT", "--study"],
    ["cache", "build", "ROOT", "OUT"],
    ["cache", "verify", "CACHE"],
    ["demo", "OUT"],
    ["split", "ROOT", "--folds", "2"],
]


@pytest.mark.parametrize("argv", INTERRUPTED, ids=" ".join)
@pytest.mark.slow
def test_ctrl_c_is_exit_130_and_one_line(argv, clean, built_cache, tmp_path, capsys, monkeypatch):
    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Location, "fs", property(interrupt))
    paths = {"ROOT": clean, "CACHE": built_cache, "OUT": tmp_path / "out"}
    code = main(_fill(argv, paths))
    _, err = capsys.readouterr()
    assert code == 130
    assert err == "dicontour: error: interrupted\n"


# --------------------------------------------------------------------------- class 7 items


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    name, number = out.split()
    assert name == "dicontour" and number[0].isdigit()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("gs://bucket/data", "gcsfs"),
        ("gs://bucket/data", "pip install 'dicontour[gcs]'"),
        ("foo://x", "unknown storage scheme 'foo'"),
    ],
)
def test_a_missing_store_package_or_unknown_scheme_is_one_line(url, expected, capsys):
    pytest.importorskip("fsspec")
    if url.startswith("gs://"):
        try:
            import gcsfs  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("gcsfs is installed")
    code, out, err = run(capsys, "scan", url)
    assert code == 2 and out == ""
    assert expected in err and err.count("\n") == 1 and err.startswith("dicontour: error: ")


def test_workers_zero_runs_scan_and_cache_build_in_this_process(clean, tmp_path, capsys):
    import concurrent.futures

    started = []
    real = concurrent.futures.ProcessPoolExecutor.__init__

    def spy(self, *args, **kwargs):
        started.append(kwargs)
        real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(concurrent.futures.ProcessPoolExecutor, "__init__", spy)
        code, serial, _ = run(capsys, "scan", str(clean), "--json", "--workers", "0")
        assert code == 0
        argv = ["cache", "build", str(clean), str(tmp_path / "c"), "--json", "--workers", "0"]
        code, out, _ = run(capsys, *argv)
        assert code == 0
    assert started == []  # no pool was started
    assert json.loads(out)["samples"] == len(json.loads(serial)["samples"])
    code, one, _ = run(capsys, "scan", str(clean), "--json", "--workers", "1")
    assert one == serial


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (FileExistsError(17, "File exists", "out"), "out: file exists"),
        (
            NotADirectoryError(20, "Not a directory", "f/manifest.json"),
            "f/manifest.json: not a folder",
        ),
        (PermissionError(13, "Permission denied", "/root/x"), "/root/x: permission denied"),
        (OSError(28, "No space left on device", "big.npy"), "big.npy: no space left on device"),
        (
            OSError(18, "Invalid cross-device link", "a", None, "b"),
            "a -> b: invalid cross-device link",
        ),
        (ConnectionError("endpoint refused"), "endpoint refused"),
    ],
)
def test_os_errors_are_said_in_words(exc, words):
    assert describe_os_error(exc).startswith(words)
    assert "Error" not in describe_os_error(exc)


def test_an_os_error_in_a_command_is_one_line_in_words(clean, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    code, _, err = run(capsys, "cache", "build", str(clean), str(tmp_path / "a-file"))
    assert code == 1
    assert err.startswith("dicontour: error: ") and "not a folder" in err
    assert "NotADirectoryError" not in err and err.count("\n") == 1


def test_a_library_value_error_is_one_line_exit_2(clean, capsys, monkeypatch):
    import dicontour.loader as loader

    class Refusing:
        def __init__(self, *args, **kwargs):
            raise ValueError("a batch of 10^9 images of 64 x 64 needs 16 GB; the limit is 1 GB")

    monkeypatch.setattr(loader, "BatchLoader", Refusing)
    code, out, err = run(capsys, "batches", str(clean), "--batch-size", "1000000000")
    assert code == 2 and out == ""
    assert err == (
        "dicontour: error: a batch of 10^9 images of 64 x 64 needs 16 GB; the limit is 1 GB\n"
    )


def test_out_of_memory_is_one_line(clean, capsys, monkeypatch):
    import dicontour.loader as loader

    class Huge:
        def __init__(self, *args, **kwargs):
            raise MemoryError

    monkeypatch.setattr(loader, "BatchLoader", Huge)
    code, _, err = run(capsys, "batches", str(clean), "--size", "100000", "100000")
    assert code == 1
    assert err.startswith("dicontour: error: out of memory") and err.count("\n") == 1


def test_segment_study_shows_a_progress_bar_on_a_terminal_only(clean, capsys, monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    code, _, err = run(capsys, "segment", str(clean), "--study", "--method", "otsu")
    assert code == 0 and "study otsu" in err  # tqdm's bar, described by the method
    code, _, err = run(capsys, "segment", str(clean), "--study", "--method", "otsu", "--quiet")
    assert code == 0 and err == ""


def test_every_human_line_goes_through_the_one_writer():
    """No subcommand prints by itself: print() and raw stream writes live in _format only."""
    import ast

    import dicontour.cli

    folder = Path(dicontour.cli.__file__).parent
    offenders = []
    for path in sorted(folder.glob("*.py")):
        if path.name == "_format.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id == "print":
                    offenders.append(f"{path.name}:{node.lineno} print()")
                if isinstance(func, ast.Attribute) and func.attr in ("write", "writelines"):
                    target = ast.unparse(func.value)
                    if target in ("sys.stdout", "sys.stderr"):
                        offenders.append(f"{path.name}:{node.lineno} {target}.{func.attr}()")
    assert offenders == []
