"""Worker start methods: time to the first batch and worker memory, in a torch script (issue 8).

A training script imports torch at its top and builds its model before it
iterates the loader.  For each start method this runs such a script (written
to a temporary folder, guarded by ``if __name__ == "__main__":``) as a fresh
process, ``ROUNDS`` times, interleaved:

* ``fork``: workers are copies of the training process;
* ``spawn``: fresh interpreters that re-import the script, hence torch;
* ``forkserver``: forked from a server process, then re-import the script;
* ``forkserver+preload``: the same after
  ``multiprocessing.set_forkserver_preload(["dicontour.loader.worker"])``.

Reported per method: seconds from ``BatchLoader(...)`` to the first batch
(2 workers, batch 8; best and median of the rounds, the machine is shared),
the rest of the epoch, and each worker's memory from
``/proc/<pid>/smaps_rollup`` after the first batch: RSS (every resident
page it maps), PSS (shared pages divided among the processes sharing them:
what the worker really costs) and private (pages no other process shares).
The training process's own figures are the baseline.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import REAL_DATA

from dicontour.phantom import write_phantom

ROUNDS = 3
METHODS = ("fork", "spawn", "forkserver", "forkserver+preload")

SCRIPT = '''
import json, multiprocessing, sys, time

import torch  # at the top, as in a training script

import dicontour
from dicontour.phantom import write_phantom


def memory(pid):
    """RSS, PSS and private memory of a process, in MB (/proc/<pid>/smaps_rollup)."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
    private = fields["Private_Clean"] + fields["Private_Dirty"]
    return {"rss": fields["Rss"], "pss": fields["Pss"], "private": private}


if __name__ == "__main__":
    method, root = sys.argv[1], sys.argv[2]
    if method == "forkserver+preload":
        method = "forkserver"
        multiprocessing.set_forkserver_preload(["dicontour.loader.worker"])
    torch.set_num_threads(2)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU())
    net(torch.zeros(8, 1, 256, 256))  # torch's thread pool is up, as after a first step
    index = dicontour.scan(root)
    started = time.perf_counter()
    with dicontour.BatchLoader(index, batch_size=8, workers=2, start_method=method) as loader:
        batches = iter(loader)
        next(batches)
        first = time.perf_counter() - started
        workers = [memory(pid) for pid in loader.worker_pids]
        started = time.perf_counter()
        rest = sum(1 for _ in batches)
        epoch = time.perf_counter() - started
    print(json.dumps({"first": first, "rest": epoch, "batches": rest + 1,
                      "workers": workers, "parent": memory("self")}))
'''


def run(script: Path, method: str, root: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(script), method, root],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{method}: exit {done.returncode}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = str(REAL_DATA)
        if not REAL_DATA.is_dir():
            root = str(Path(tmp) / "phantom")
            write_phantom(root, patients=3, slices=20, shape=(256, 256))
            print(f"real data not found; phantom dataset in {root}")
        script = Path(tmp) / "train.py"
        script.write_text(textwrap.dedent(SCRIPT))
        runs: dict[str, list[dict]] = {method: [] for method in METHODS}
        for _ in range(ROUNDS):
            for method in METHODS:
                runs[method].append(run(script, method, root))
    parent = runs["fork"][0]["parent"]
    print(
        f"training process (torch imported): RSS {parent['rss']:.0f} MB, "
        f"PSS {parent['pss']:.0f} MB, private {parent['private']:.0f} MB"
    )
    print(
        f"{'start method':<20} {'first batch s':>14} {'median':>7} {'rest of epoch s':>16} "
        f"{'worker RSS MB':>14} {'PSS MB':>7} {'private MB':>11}"
    )
    for method, results in runs.items():
        firsts = [r["first"] for r in results]
        rest = statistics.median(r["rest"] for r in results)
        workers = [w for r in results for w in r["workers"]]
        rss = statistics.median(w["rss"] for w in workers)
        pss = statistics.median(w["pss"] for w in workers)
        private = statistics.median(w["private"] for w in workers)
        print(
            f"{method:<20} {min(firsts):>14.2f} {statistics.median(firsts):>7.2f} {rest:>16.2f} "
            f"{rss:>14.0f} {pss:>7.0f} {private:>11.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
