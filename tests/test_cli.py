"""The ``dicontour`` command line: the scan table, --json, exit codes, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import I_SQUARE, O_SQUARE, contour_name, write_dicom

from dicontour import LayoutError
from dicontour import scan as dicontour_scan
from dicontour.cli import main


def _clean_tree(root: Path) -> Path:
    """Two patients, no problem at all."""
    (root / "link.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "link.csv").write_text("patient_id,original_id\nA,OA\nB,OB\n")
    for pid, oid in (("A", "OA"), ("B", "OB")):
        (root / "dicoms" / pid).mkdir(parents=True)
        for n in (1, 2, 3):
            write_dicom(
                root / f"dicoms/{pid}/{n}.dcm", np.zeros((32, 32), np.int16), InstanceNumber=n
            )
        for kind, text in (("i", I_SQUARE), ("o", O_SQUARE)):
            path = root / "contourfiles" / oid / contour_name(kind, 2)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return root


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_scan_prints_the_per_patient_table_and_the_problems(fault_tree, capsys):
    code, out, err = _run(capsys, "scan", str(fault_tree.root))
    assert code == 0  # the scan completed, problems or not
    assert err == ""  # no progress bar when stderr is not a terminal
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("patient"))
    assert header.split() == ["patient", "DICOMs", "labelled", "i-pairs", "o-pairs", "problems"]
    rows = {
        line.split()[0]: line.split()
        for line in lines
        if line.split()[:1] in (["P1"], ["P2"], ["P5"], ["total"])
    }
    assert rows["P1"][1:5] == ["20", "5", "3", "4"]
    assert rows["P2"][1:5] == ["2", "0", "0", "0"]
    assert rows["P5"][1:5] == ["3", "3", "3", "0"]
    assert rows["total"][1:6] == ["25", "8", "6", "4", str(len(fault_tree.problems))]
    assert "shape-mismatch 1" in " ".join(rows["P5"])
    assert f"{fault_tree.unlabelled} unlabelled slices" in out
    for code_, path in fault_tree.problems:
        assert any(code_ in line and path in line for line in lines), (code_, path)


@pytest.mark.slow
def test_scan_json_is_one_document_with_relative_paths(fault_tree, capsys):
    code, out, err = _run(capsys, "scan", "--json", str(fault_tree.root))
    assert code == 0 and err == ""
    document = json.loads(out)
    assert set(document) >= {"samples", "problems", "summary"}
    found = {(p["code"], p["path"]) for p in document["problems"]}
    assert found == fault_tree.problems
    samples = {
        (s["patient_id"], s["slice"]): (s["i_contour"] is not None, s["o_contour"] is not None)
        for s in document["samples"]
    }
    assert samples == fault_tree.samples
    for sample in document["samples"]:
        for key in ("dicom", "i_contour", "o_contour"):
            value = sample[key]
            assert value is None or (not os.path.isabs(value) and "\\" not in value)
    assert all(not os.path.isabs(p["path"]) for p in document["problems"])
    assert document["summary"]["dicoms"] == fault_tree.dicoms
    assert document["summary"]["unlabelled_slices"] == fault_tree.unlabelled


@pytest.mark.slow
def test_strict_exit_codes(fault_tree, tmp_path, capsys):
    assert _run(capsys, "scan", "--strict", "--quiet", str(fault_tree.root))[0] == 1
    clean = _clean_tree(tmp_path / "clean")
    code, out, _ = _run(capsys, "scan", "--strict", str(clean))
    assert code == 0
    assert "0 error, 0 warning, 0 info" in out
    assert _run(capsys, "scan", "--strict", "--json", str(clean))[0] == 0


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_unusable_root_exits_2_with_one_line(tmp_path, capsys, json_flag):
    code, out, err = _run(capsys, "scan", *json_flag, str(tmp_path / "nowhere"))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("dicontour: error: ")
    assert "nowhere" in err and "does not exist" in err


def test_malformed_link_csv_exits_2(tmp_path, capsys):
    (tmp_path / "link.csv").write_text("id,folder\nP,O\n")
    code, _, err = _run(capsys, "scan", str(tmp_path))
    assert code == 2
    assert "link.csv: first line must be" in err and err.count("\n") == 1


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(LayoutError):
        main(["--debug", "scan", str(tmp_path / "nowhere")])


@pytest.mark.slow
def test_python_dash_m_help():
    result = subprocess.run(
        [sys.executable, "-m", "dicontour", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "scan" in result.stdout and "demo" in result.stdout


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_closed_pipe_is_not_a_traceback(fault_tree):
    # `dicontour scan --json ROOT | head -1`: the reader leaves before the end.
    process = subprocess.Popen(
        [sys.executable, "-m", "dicontour", "scan", "--json", str(fault_tree.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()
    _, err = process.communicate(timeout=50)
    assert b"Traceback" not in err, err.decode()
    assert process.returncode == 141


@pytest.mark.slow
def test_demo_writes_and_scans_the_phantom(tmp_path, capsys):
    pytest.importorskip("dicontour.phantom", reason="dicontour.phantom not written yet")
    target = tmp_path / "demo"
    code, out, _ = _run(capsys, "demo", str(target))
    assert code == 0
    assert (target / "link.csv").is_file()
    assert any((target / "dicoms").glob("*/*.dcm"))
    assert "wrote" in out and "deliberate faults" in out
    assert "patient" in out and "total" in out and "problems:" in out
    # A second run reuses the dataset.
    code, out, _ = _run(capsys, "demo", str(target))
    assert code == 0 and "already" in out


def test_demo_refuses_a_folder_with_other_content(tmp_path, capsys):
    pytest.importorskip("dicontour.phantom", reason="dicontour.phantom not written yet")
    (tmp_path / "mine.txt").write_text("keep me")
    code, _, err = _run(capsys, "demo", str(tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and "not empty" in err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.slow
def test_progress_bar_only_on_a_terminal_and_not_with_quiet(fault_tree, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = _run(capsys, "scan", str(fault_tree.root))
    assert code == 0 and "scan" in err  # tqdm's bar, described "scan"
    assert "patient" in out
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = _run(capsys, "scan", "--quiet", str(fault_tree.root))
    assert code == 0 and err == ""


def test_credentials_in_a_url_are_refused_and_never_printed(capsys):
    code, out, err = _run(capsys, "scan", "s3://AKIAKEY:TOPSECRET@bucket/data")
    assert code == 2 and out == ""
    assert "credentials in URLs are not accepted" in err
    assert "TOPSECRET" not in err and "AKIAKEY" not in err


def test_an_output_path_that_is_a_file_is_one_line_not_a_traceback(fault_tree, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("in the way")
    code, _, err = _run(capsys, "cache", "build", str(fault_tree.root), str(target), "--quiet")
    assert code == 1
    assert err.startswith("dicontour: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_unreachable_store_is_a_layout_error(monkeypatch, capsys):
    from fsspec.implementations.memory import MemoryFileSystem

    def refuse(self, path, **kwargs):
        raise ConnectionError("endpoint refused the connection")

    monkeypatch.setattr(MemoryFileSystem, "isdir", refuse)
    with pytest.raises(LayoutError, match="cannot reach the dataset root"):
        dicontour_scan("memory://nowhere/data")
    code, _, err = _run(capsys, "scan", "memory://nowhere/data")
    assert code == 2 and "ConnectionError" in err


def test_help_imports_neither_the_scan_stack_nor_qa():
    # `dicontour --help` builds every subcommand's parser: none may import the
    # heavy layers (pydicom, numpy, the scan, QA) just to describe itself.
    code = (
        "import sys\n"
        "from dicontour.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pydicom', 'numpy', 'dicontour.scan', 'dicontour.qa', "
        "'dicontour.engine', 'importlib.metadata') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "command", ["scan", "check", "preview", "intensity", "segment", "split", "export"]
)
def test_every_scanning_command_takes_the_common_options(command):
    from dicontour.cli import build_parser
    from dicontour.cli._common import contour_source
    from dicontour.rtstruct import RtstructContours
    from dicontour.scan import TextContours

    extra = {
        "preview": ["out"],
        "split": ["--folds", "2"],
        "export": ["out", "--format", "nnunet"],
    }.get(command, [])
    args = build_parser().parse_args(
        [command, "root", *extra, "--quiet", "--engine", "local", "--workers", "0"]
    )
    assert (args.root, args.quiet, args.engine, args.workers) == ("root", True, "local", 0)
    assert isinstance(contour_source(args), TextContours)
    args = build_parser().parse_args(
        [command, "root", *extra, "--contours", "rtstruct", "--roi-map", "i=Endo", "o=Epi"]
    )
    source = contour_source(args)
    assert isinstance(source, RtstructContours)
    assert source == RtstructContours({"endo": "i", "epi": "o"})
    args = build_parser().parse_args([command, "root", *extra, "--roi-map", "i=Endo"])
    with pytest.raises(ValueError, match="--contours rtstruct only"):
        contour_source(args)


def test_export_command_offers_exactly_the_library_formats():
    from dicontour.cli.export import FORMATS
    from dicontour.export import FORMATS as LIBRARY

    assert tuple(FORMATS) == tuple(LIBRARY)


def test_segment_help_names_the_default_method(capsys):
    from dicontour.qa.segment import DEFAULT_METHOD, METHODS

    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default: {DEFAULT_METHOD}," in text
    assert ", ".join(sorted(METHODS)) in text
