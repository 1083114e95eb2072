"""``dicontour batches ROOT``: a training-loop run with per-epoch figures."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import LOADER_PHANTOM, Traced, copy_dataset

import dicontour
from dicontour.cli import main

# The module, not the function that dicontour re-exports under the same name.
SCAN_MODULE = importlib.import_module("dicontour.scan")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def data(traced: Traced) -> Traced:
    return traced


@pytest.mark.slow
def test_json_report_per_epoch(data: Traced, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["batches", data.index.root, "--batch-size", "8", "--epochs", "2", "--workers", "1"]
    assert main([*argv, "--target", "both", "--seed", "3", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["settings"]["samples_per_epoch"] == 10  # slices with both contours
    assert document["settings"]["batches_per_epoch"] == 2
    assert [e["epoch"] for e in document["epochs"]] == [0, 1]
    for epoch in document["epochs"]:
        assert epoch["batches"] == 2 and epoch["samples"] == 10 and epoch["skipped"] == 0
        assert 0 < epoch["wait_seconds"] <= epoch["seconds"]
        # JSON carries unrounded figures (only the table rounds), so the rate is
        # exactly samples / seconds however slow the machine is.
        assert epoch["samples_per_second"] == pytest.approx(10 / epoch["seconds"], rel=1e-12)
        assert epoch["wait_share"] == pytest.approx(
            epoch["wait_seconds"] / epoch["seconds"], rel=1e-12
        )
    assert document["first_batch_seconds"] > 0 and document["problems"] == []


def test_table_report_counts_problems(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    phantom: Callable[..., Path],
) -> None:
    data = Traced(copy_dataset(phantom(**LOADER_PHANTOM), tmp_path / "data"))
    broken = Path(data.index.root) / data.index[data.index.select("i")[0]].i_contour
    real_scan = SCAN_MODULE.scan

    def scan_then_break(*args: object, **kwargs: object) -> dicontour.Index:
        index = real_scan(*args, **kwargs)
        broken.write_text("")  # emptied after the scan: the loader meets it
        return index

    monkeypatch.setattr(SCAN_MODULE, "scan", scan_then_break)
    argv = ["batches", data.index.root, "--epochs", "2", "--workers", "0", "--step-ms", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "samples/s" in out and "waited" in out
    rows = [line.split() for line in out.splitlines() if line[:5].strip() in ("0", "1")]
    assert [row[:3] for row in rows] == [["0", "3", "19"], ["1", "3", "19"]]
    assert [row[-1] for row in rows] == ["1", "1"]  # one sample skipped in each epoch
    assert "empty-contour" in out and broken.name in out


@pytest.mark.parametrize(
    "argv",
    [["--batch-size", "0"], ["--epochs", "0"], ["--workers", "-1"], ["--target", "x"]],
)
def test_bad_arguments_exit_2(data: Traced, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["batches", data.index.root, *argv])
    assert caught.value.code == 2
