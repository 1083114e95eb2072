"""The local engine's workers do not outlive a parent killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [  # slow: worker processes killed and reaped
    pytest.mark.slow,
    pytest.mark.timeout(30),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of ``pid`` from /proc, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == parent and stat[0] != "Z":
                found.append(int(entry.name))
    return found


def _descendants(root: int) -> list[int]:
    """The children of ``root``, then theirs (a forkserver's workers are grandchildren)."""
    found, level = [], [root]
    while level:
        level = [child for parent in level for child in _children(parent)]
        found += level
    return found


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def _is_pool_worker(pid: int, root: int) -> bool:
    """A spawned worker, or a process forked by a forkserver that ``root`` started."""
    if b"spawn_main" in _command(pid):
        return True
    stat = _stat(pid)
    return (
        stat is not None
        and stat[1] != root
        and b"forkserver" in _command(stat[1])
        and (_stat(stat[1]) or ("", 0))[1] == root
    )


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has exited; its reaper is not ours


def test_kill_9_of_a_cache_build_takes_its_workers_along(
    tmp_path: Path, phantom: Callable[..., Path]
) -> None:
    root = phantom(patients=6, slices=12, shape=(64, 64), labelled_every=1, faults=False)
    build = subprocess.Popen(
        [
            *(sys.executable, "-m", "dicontour", "cache", "build", str(root), str(tmp_path / "c")),
            *("--shard-size", "4", "--workers", "2", "--quiet"),
        ],
        stdout=subprocess.DEVNULL,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            children = _descendants(build.pid)
            if sum(_is_pool_worker(pid, build.pid) for pid in children) >= 2:
                break
            assert build.poll() is None, "the build ended before its workers were seen"
            time.sleep(0.005)
        else:
            pytest.fail("no two pool workers appeared")
        os.kill(build.pid, signal.SIGKILL)
        build.wait(timeout=10)
        assert build.returncode == -signal.SIGKILL
        # The workers (and the resource tracker, whose pipe they hold, and the forkserver)
        # must go within 10 s; they look every 0.25 s.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in children):
            time.sleep(0.05)
        left = [pid for pid in children if _alive(pid)]
        assert not left, f"processes of the killed build still running: {left}"
    finally:
        if build.poll() is None:
            build.kill()
            build.wait(timeout=10)
        for pid in children:  # only on failure: never leave our orphans to the other tests
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)


def test_a_child_whose_parent_lives_goes_on() -> None:
    done = _run(
        "import os, time\n"
        "from dicontour._process import exit_with_parent\n"
        "watcher = exit_with_parent(os.getppid(), interval=0.01)\n"
        "time.sleep(0.2)\n"  # about 20 checks, all passing
        "print(watcher.daemon, watcher.is_alive())\n"
    )
    assert (done.returncode, done.stdout) == (0, b"True True\n"), done.stderr


def test_a_child_started_after_its_parent_died_exits_at_once() -> None:
    # Told a parent pid that is not its parent: as if the parent had died before the start.
    done = _run(
        "from dicontour._process import exit_with_parent\nexit_with_parent(1)\nprint('survived')\n"
    )
    assert (done.returncode, done.stdout) == (70, b"")


_GRANDCHILD = """
import sys, time
from dicontour._process import exit_with_parent
exit_with_parent(int(sys.argv[1]), interval=0.02)
time.sleep(60)
"""
_MIDDLE = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_child_exits_when_its_parent_is_killed() -> None:
    # A middle process starts a watching grandchild, says its pid, and is killed.
    middle = subprocess.Popen([sys.executable, "-c", _MIDDLE, _GRANDCHILD], stdout=subprocess.PIPE)
    grandchild = 0
    try:
        grandchild = int(middle.stdout.readline())
        time.sleep(0.5)  # the grandchild is up and watching
        assert _alive(grandchild)
        middle.kill()
        middle.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(grandchild):
            time.sleep(0.02)
        assert not _alive(grandchild)
    finally:
        if middle.poll() is None:
            middle.kill()
            middle.wait(timeout=10)
        middle.stdout.close()
        if grandchild and _alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


_WATCHER = """
import sys, time
from dicontour._process import exit_with
exit_with(int(sys.argv[1]), interval=0.02)
print("watching", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("pidfd", [True, False])
def test_a_process_exits_when_the_process_it_watches_ends(pidfd: bool) -> None:
    # exit_with watches any process, not its parent (a forkserver worker's case): here a
    # sibling.  Without a process descriptor, the pid is polled.
    code = (
        _WATCHER
        if pidfd
        else _WATCHER.replace("import sys,", "import os; del os.pidfd_open\nimport sys,")
    )
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    watcher = subprocess.Popen(
        [sys.executable, "-c", code, str(watched.pid)], stdout=subprocess.PIPE
    )
    try:
        assert watcher.stdout.readline() == b"watching\n"
        time.sleep(0.2)
        assert watcher.poll() is None  # the watched process lives: the watcher goes on
        watched.kill()
        watched.wait(timeout=10)  # reaped: with polling, a zombie would count as alive
        assert watcher.wait(timeout=5) == 70
    finally:
        for process in (watched, watcher):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        watcher.stdout.close()


def test_a_process_told_to_watch_an_ended_process_exits_at_once() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=20)
    done = _run(
        f"from dicontour._process import exit_with\nexit_with({gone.pid})\nprint('survived')\n"
    )
    assert (done.returncode, done.stdout) == (70, b"")
