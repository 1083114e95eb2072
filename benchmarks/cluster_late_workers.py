"""Late workers (issue 13, point 2): are workers that join after the client connects used?

Starts a `dask scheduler` on 127.0.0.1, connects a ``DaskEngine`` while no
worker is there, then starts ``--workers`` single-threaded `dask worker`
processes and at once runs ``--tasks`` tasks of one second each.  Prints the
wall time of the run (worker start-up included) and the most tasks running
at once, from the tasks' own start and end times.  Every process it started
is killed (its process group) before it exits.

Not part of ``make bench``.  The dicontour measured is the one first on
``PYTHONPATH`` (workers get the same), so the code of another checkout can be
measured with the same script:

    PYTHONPATH=src python benchmarks/cluster_late_workers.py
    PYTHONPATH=../main/src python benchmarks/cluster_late_workers.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dicontour
from dicontour.engine import DaskEngine


def one_second(_: int) -> tuple[float, float]:
    start = time.time()
    time.sleep(1.0)
    return start, time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=16)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = str(Path(dicontour.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": source}
    started: list[subprocess.Popen] = []

    def start(*argv: str) -> None:
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", *argv],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    address = f"tcp://127.0.0.1:{port}"
    try:
        start(
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            ":0",
        )
        with DaskEngine(address) as engine:
            for _ in range(args.workers):
                start(
                    "distributed.cli.dask_worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--memory-limit",
                    "0",
                )
            began = time.monotonic()
            spans = [span for _, span in engine.run(one_second, range(args.tasks))]
            elapsed = time.monotonic() - began
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    running = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    first = min(s for s, _ in spans)
    print(
        json.dumps(
            {
                "dicontour": source,
                "workers": args.workers,
                "tasks": args.tasks,
                "seconds": round(elapsed, 2),
                "seconds_from_first_task": round(max(e for _, e in spans) - first, 2),
                "most_running": running,
            }
        )
    )


if __name__ == "__main__":
    main()
