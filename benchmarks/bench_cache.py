"""Training from the cache, and building it (issue 4, point 5).

On the real data (i-contour samples, batch 8, 2 workers, warm epochs):

* BatchLoader.from_cache(workers=2), with ``copy=True`` (the default: each
  batch copied out of shared memory into arrays the caller owns) and with
  ``copy=False`` (each batch lent as read-only views of its shared-memory
  slot); memory-mapped ``.npy`` shards copied by the workers straight into
  the slots;
* (a) torch DataLoader(num_workers=2, batch_size=8, shuffle=True) over the
  same arrays held in memory (skipped without torch);
* (b) one process gathering shuffled batches from the in-memory arrays with
  numpy fancy indexing: the memory-speed limit.

Goals: >= 1.5x (a) and >= 0.8x (b).  Rates are the best of ``ROUNDS``
interleaved rounds of ``EPOCHS`` epochs each (a, b, copy=True, copy=False, a,
b, ...), so that load from other processes on this shared machine hits every
contender alike.  For each loader mode, the CPU time per batch of the
training process and of the workers is printed too: on 2 cores, the three
processes share 2 CPU-seconds per second, which bounds the rate (see
docs/loader.md).  Then the cache build rate (scan + decode + write,
samples/s) in one process, on the local engine and on Dask, 2 workers.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import REAL_DATA, report

import dicontour
from dicontour.cache import build_cache, open_cache
from dicontour.engine import DaskEngine, LocalEngine

BATCH = 8
WORKERS = 2
EPOCHS = 20
ROUNDS = 5
BUILD_ROUNDS = 3
SHARD = 16  # 96 samples -> 6 shards, so that 2 workers have something to share


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Contender:
    """One way of producing batches: an epoch function, its best rate, its CPU use."""

    def __init__(self, run_epoch: Callable[[], None], pids: Callable[[], list[int]]) -> None:
        self.run_epoch, self.pids = run_epoch, pids
        self.best = 0.0
        self.epochs = 0
        self.cpu = {"training process": 0.0, "workers": 0.0}

    def round(self, samples_per_epoch: int) -> None:
        workers = self.pids()
        before = time.process_time(), sum(cpu_seconds(pid) for pid in workers)
        start = time.perf_counter()
        for _ in range(EPOCHS):
            self.run_epoch()
        elapsed = time.perf_counter() - start
        self.cpu["training process"] += time.process_time() - before[0]
        self.cpu["workers"] += sum(cpu_seconds(pid) for pid in workers) - before[1]
        self.epochs += EPOCHS
        self.best = max(self.best, EPOCHS * samples_per_epoch / elapsed)


def interleaved(contenders: dict[str, Contender], samples_per_epoch: int) -> None:
    """ROUNDS rounds of every contender in turn."""
    for _ in range(ROUNDS):
        for contender in contenders.values():
            contender.round(samples_per_epoch)
            time.sleep(0.1)  # let background work (prefetch) settle before the next one


def build_rates(work: Path) -> None:
    """Cache build samples/s: one process, local engine and Dask with 2 workers."""
    print(f"\ncache build of the real data (shard size {SHARD}), best of {BUILD_ROUNDS}:")
    one = None
    for name, make in (
        ("one process", lambda: LocalEngine(workers=1)),
        ("local engine, 2 worker processes", lambda: LocalEngine(workers=WORKERS)),
        ("Dask LocalCluster, 2 workers", lambda: DaskEngine(workers=WORKERS)),
    ):
        started = time.perf_counter()
        try:
            engine = make()
        except Exception as exc:  # Dask missing: say so, measure the rest
            print(f"{name}: skipped ({exc})")
            continue
        startup = time.perf_counter() - started
        best, samples = 0.0, 0
        try:
            if isinstance(engine, LocalEngine) and engine.workers > 1:
                list(engine.map(abs, range(WORKERS)))  # start the pool's processes
                startup = time.perf_counter() - started
            for round_ in range(BUILD_ROUNDS):
                cache = work / f"build-{name.split()[0]}-{round_}"
                start = time.perf_counter()
                result = build_cache(REAL_DATA, cache, shard_size=SHARD, engine=engine)
                best = max(best, result.samples / (time.perf_counter() - start))
                samples = result.samples
                shutil.rmtree(cache)
        finally:
            engine.close()
        report(f"build: {name}", best, "samples/s", one)
        print(f"{'    engine start-up':<48} {startup:>12.2f} s   ({samples} samples per build)")
        one = one or best


def main() -> int:
    if not REAL_DATA.exists():
        print(f"skipped: real data not found at {REAL_DATA}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="dicontour-bench-cache-"))
    try:
        return run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path) -> int:
    cache = work / "cache"
    built = build_cache(REAL_DATA, cache, shard_size=SHARD)
    source = open_cache(cache, root=REAL_DATA)
    with_i = np.flatnonzero(source.has("i"))
    n = len(with_i)
    images = np.stack([source.read(int(k), "i")[0] for k in with_i])
    masks = np.stack([source.read(int(k), "i")[1] for k in with_i])
    batches = -(-n // BATCH)
    print(
        f"{n} i-contour samples of {built.samples} cached ({images.nbytes / 1e6:.0f} MB images), "
        f"batch {BATCH}, {WORKERS} workers, {os.cpu_count()} CPUs; best of {ROUNDS} "
        f"interleaved rounds of {EPOCHS} warm epochs"
    )
    contenders: dict[str, Contender] = {}

    # (b) memory speed: shuffled gathers from in-memory arrays, one process.
    rng = np.random.default_rng(0)

    def gather_epoch() -> None:
        order = rng.permutation(n)
        for start in range(0, n, BATCH):
            chosen = order[start : start + BATCH]
            images[chosen], masks[chosen]

    contenders["b"] = Contender(gather_epoch, list)

    torch_loaders = []
    try:
        import torch
        from torch.utils.data import DataLoader
    except ImportError:
        print("(a) skipped: torch is not installed (pip install 'dicontour[torch]')")
    else:
        torch.manual_seed(0)

        class InMemory:
            def __len__(self) -> int:
                return n

            def __getitem__(self, j: int) -> tuple[np.ndarray, np.ndarray]:
                return images[j], masks[j]

        for name, persistent in (("a", True), ("a, not persistent", False)):
            baseline = DataLoader(
                InMemory(),
                batch_size=BATCH,
                shuffle=True,
                num_workers=WORKERS,
                persistent_workers=persistent,
            )

            def torch_epoch(loader: DataLoader = baseline) -> None:
                for _images, _masks in loader:
                    pass

            torch_epoch()  # warm-up
            torch_loaders.append(baseline)
            contenders[name] = Contender(torch_epoch, list)

    loaders: list[dicontour.BatchLoader] = []
    startups = {}
    for copy in (True, False):
        started = time.perf_counter()
        loader = dicontour.BatchLoader.from_cache(
            cache, BATCH, root=REAL_DATA, workers=WORKERS, seed=0, copy=copy
        )
        loaders.append(loader)
        first = iter(loader)
        next(first)
        startups[copy] = time.perf_counter() - started
        for _ in first:  # the rest of the warm-up epoch
            pass
        del first

        def loader_epoch(loader: dicontour.BatchLoader = loader) -> None:
            for _images, _masks in loader:
                pass

        pids = loader.worker_pids
        contenders[f"copy={copy}"] = Contender(loader_epoch, lambda pids=pids: pids)
    try:
        interleaved(contenders, n)
    finally:
        for loader in loaders:
            loader.close()
        del torch_loaders

    gather = contenders["b"].best
    report("(b) numpy gather from memory, one process", gather, "samples/s")
    torch_rate = None
    if "a" in contenders:
        torch_rate = contenders["a"].best
        report("(a) torch DataLoader(num_workers=2), in memory", torch_rate, "samples/s", gather)
        print("    (persistent_workers=True, warm; without it each epoch starts new workers:)")
        report(
            "    the same, persistent_workers=False",
            contenders["a, not persistent"].best,
            "samples/s",
            gather,
        )
    for copy in (True, False):
        contender = contenders[f"copy={copy}"]
        ours = contender.best
        print(f"{f'BatchLoader.from_cache(copy={copy}) start-up':<48} {startups[copy]:>12.2f} s")
        report(f"BatchLoader.from_cache(workers=2, copy={copy})", ours, "samples/s", gather)
        per_batch = {
            who: seconds / (contender.epochs * batches) * 1e6
            for who, seconds in contender.cpu.items()
        }
        print(
            f"    CPU per batch: training process {per_batch['training process']:.0f} us, "
            f"workers {per_batch['workers']:.0f} us (mean over all rounds)"
        )
        if torch_rate:
            goal = "met" if ours >= 1.5 * torch_rate else "NOT met"
            print(f"    / torch DataLoader (a): {ours / torch_rate:.2f}x (goal >= 1.5x: {goal})")
        goal = "met" if ours >= 0.8 * gather else "NOT met"
        print(f"    / numpy gather (b):     {ours / gather:.2f}x (goal >= 0.8x: {goal})")

    build_rates(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
