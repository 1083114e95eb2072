"""Every ```python block of README.md runs as written, saved as a file, next to the real data.

Each block is saved as ``block.py`` in a fresh folder that holds the real data
as ``final_data`` (a symlink, never a copy) and run with this interpreter as
its own process: exit status 0 within the time limit, or the test shows the
block's stderr.  Skipped where the real data is absent.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REAL_DATA, REAL_DATA_REASON

README = Path(__file__).resolve().parents[1] / "README.md"
SOURCE = Path(__file__).resolve().parents[1] / "src"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
TIMEOUT = 120


def blocks() -> list[tuple[int, str]]:
    """(line number, code) of each python block of the README."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_readme_has_python_blocks() -> None:
    assert len(blocks()) >= 3


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT + 30)
@pytest.mark.parametrize(("line", "code"), blocks(), ids=[f"line{n}" for n, _ in blocks()])
def test_readme_block_runs(line: int, code: str, tmp_path: Path) -> None:
    if not REAL_DATA.is_dir():
        pytest.skip(REAL_DATA_REASON)
    (tmp_path / "final_data").symlink_to(REAL_DATA, target_is_directory=True)
    script = tmp_path / "block.py"
    script.write_text(code)
    env = dict(os.environ)
    # This checkout's dicontour first, as the tests import it.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"README.md line {line}:\n{code}\nstderr:\n{done.stderr}"
