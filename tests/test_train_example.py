"""examples/train_unet.py trains for real: a tiny U-Net on the phantom dataset, loss falling.

The example needs the ``train`` extra (torch and MONAI); without them the
test is skipped, saying which is missing.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from dicontour.phantom import write_phantom

pytest.importorskip("torch", reason="torch is not installed (pip install dicontour[train])")
pytest.importorskip("monai", reason="MONAI is not installed (pip install dicontour[train])")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_unet.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_unet", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_few_epochs_on_the_phantom_lower_the_loss(tmp_path: Path) -> None:
    root = tmp_path / "phantom"
    write_phantom(root, patients=3, slices=8, shape=(64, 64), faults=False)
    example = load_example()
    out = tmp_path / "results"
    results = example.main(
        [
            str(root),
            "--folds", "3",
            "--max-folds", "1",
            "--epochs", "15",
            "--batch-size", "2",
            "--size", "48",
            "--features", "4", "4", "8", "8", "16", "4",
            "--lr", "0.01",
            "--workers", "1",
            "--out", str(out),
        ]
    )  # fmt: skip
    (fold,) = results
    assert fold.epochs == 15 and len(fold.losses) == 15
    # The loss falls: the last epochs well below the first (Dice + BCE starts near 1.2).
    assert sum(fold.losses[-3:]) / 3 < 0.8 * fold.losses[0], fold.losses
    # A patient split: the held-out patient was not trained on, and every one of
    # its i-slices (4 of 8 slices are labelled) was scored.
    assert fold.patient not in fold.train_patients and len(fold.train_patients) == 2
    assert len(fold.slices) == 4 and all(0.0 <= s["learned"] <= 1.0 for s in fold.slices)
    with_o = [s for s in fold.slices if s["hull"] is not None]
    assert len(with_o) == 2 and fold.hull_dice_o is not None
    assert 0.0 <= fold.wait_fraction <= 1.0 and fold.samples_per_s > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["folds"][0]["patient"] == fold.patient
    assert fold.patient in (out / "results.md").read_text()
