"""How loader workers start: fork by default, and scripts without a ``__main__`` guard.

Each case runs a small training script as its own process (the way users run
``python train.py``), on the phantom dataset, and reads its exit code and
stderr.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import dicontour
from dicontour.loader.pool import DEFAULT_START_METHOD, MAIN_REIMPORTED

pytestmark = pytest.mark.timeout(120)

#: The README's training loop, as users save it: no ``if __name__ == "__main__":``.
UNGUARDED = """
import sys
import dicontour

index = dicontour.scan(sys.argv[1])
options = {"start_method": sys.argv[2]} if len(sys.argv) > 2 else {}
with dicontour.BatchLoader(index, batch_size=4, workers=2, seed=0, **options) as loader:
    for epoch in range(2):
        samples = sum(len(images) for images, masks in loader)
print("samples per epoch", samples)
"""


@pytest.fixture(scope="module")
def root(phantom: Callable[..., Path]) -> Path:
    return phantom(patients=2, slices=8, shape=(32, 32), faults=False)


def run_script(folder: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = folder / "train.py"
    script.write_text(textwrap.dedent(text))
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=folder,
    )


def test_fork_is_the_default_on_linux() -> None:
    expected = "fork" if sys.platform.startswith("linux") else "spawn"
    assert expected == DEFAULT_START_METHOD
    assert dicontour.BatchLoader.__init__.__kwdefaults__["start_method"] == expected


@pytest.mark.slow  # a script in a fresh interpreter, with worker processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is the default on Linux")
def test_a_script_without_the_main_guard_runs_with_the_default(root: Path, tmp_path: Path) -> None:
    done = run_script(tmp_path, UNGUARDED, str(root))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "samples per epoch 8"  # 2 patients x 4 i-slices
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_script_without_the_main_guard_gets_one_error_naming_the_fix(
    root: Path, tmp_path: Path, method: str
) -> None:
    started = time.monotonic()
    done = run_script(tmp_path, UNGUARDED, str(root), method)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    # One traceback (the training process's), no worker tracebacks, no retries.
    assert done.stderr.count("Traceback") == 1, done.stderr
    assert len(lines) < 25, done.stderr
    assert "starts in a row" not in done.stderr and "bootstrapping" not in done.stderr
    last = lines[-1]
    assert last.startswith("dicontour.errors.LoaderError: ")
    assert 'if __name__ == "__main__":' in last and str(tmp_path / "train.py") in last
    assert f"{method} workers re-import it" in last
    # Given up at the first worker's exit, not after three slow restarts.
    assert time.monotonic() - started < 60


@pytest.mark.slow  # a script in a fresh interpreter, with worker processes
def test_the_same_script_with_the_guard_runs_with_spawn(root: Path, tmp_path: Path) -> None:
    guarded = UNGUARDED.replace("\nindex =", '\nif __name__ == "__main__":\n    index =')
    body, tail = guarded.split("    index =", 1)
    guarded = body + "    index =" + textwrap.indent(tail, "    ").lstrip()
    done = run_script(tmp_path, guarded, str(root), "spawn")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "samples per epoch 8"


TORCH_TRANSFORM = """
import sys
import numpy as np
import torch
import dicontour

class TorchBlur:
    # A transform that uses torch: the worker's first torch operation.
    def __call__(self, image, mask, rng):
        x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
        kernel = torch.full((1, 1, 3, 3), 1 / 9)
        return torch.nn.functional.conv2d(x, kernel, padding=1)[0, 0].numpy(), mask

torch.set_num_threads(2)
torch.nn.functional.conv2d(torch.rand(8, 8, 128, 128), torch.rand(8, 8, 3, 3))  # pool up
index = dicontour.scan(sys.argv[1])
with dicontour.BatchLoader(index, batch_size=4, workers=2, transform=TorchBlur()) as loader:
    batches = list(loader)
print(sum(len(b.images) for b in batches), torch.get_num_threads())
"""


@pytest.mark.slow
def test_forked_workers_can_use_torch_after_its_thread_pool_started(
    root: Path, tmp_path: Path
) -> None:
    # A forked copy of torch's OpenMP pool hangs at its first parallel region
    # unless the worker drops to one thread first (as torch's DataLoader does).
    pytest.importorskip("torch", reason="torch is not installed")
    done = run_script(tmp_path, TORCH_TRANSFORM, str(root), "fork")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["8", "2"]  # every sample; the trainer keeps its threads


def test_main_reimported_status_is_not_a_python_one() -> None:
    assert MAIN_REIMPORTED not in (0, 1, 2) and 0 < MAIN_REIMPORTED < 128
