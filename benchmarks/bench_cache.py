"""Training from the cache, and building it (issue 4, point 5).

On the real data (i-contour samples, batch 8, 2 workers, warm epochs):

* BatchLoader.from_cache(workers=2): memory-mapped ``.npy`` shards, batches
  handed over in shared memory;
* (a) torch DataLoader(num_workers=2, batch_size=8, shuffle=True) over the
  same arrays held in memory (skipped without torch);
* (b) one process gathering shuffled batches from the in-memory arrays with
  numpy fancy indexing: the memory-speed limit.

Goals: >= 1.5x (a) and >= 0.8x (b).  Then the cache build rate (scan + decode
+ write, samples/s) in one process, on the local engine and on Dask, 2 workers.
Rates are the best of a few rounds (the machine is shared).
"""

from __future__ import annotations

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
ROUNDS = 3
SHARD = 16  # 96 samples -> 6 shards, so that 2 workers have something to share


def best_rate(run_epoch: Callable[[], None], samples_per_epoch: int) -> float:
    """Best samples/s over ROUNDS rounds of EPOCHS epochs."""
    best = 0.0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(EPOCHS):
            run_epoch()
        best = max(best, EPOCHS * samples_per_epoch / (time.perf_counter() - start))
    return best


def build_rates(work: Path) -> None:
    """Cache build samples/s: one process, local engine and Dask with 2 workers."""
    print(f"\ncache build of the real data (shard size {SHARD}), best of {ROUNDS}:")
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
            for round_ in range(ROUNDS):
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
    print(
        f"{n} i-contour samples of {built.samples} cached ({images.nbytes / 1e6:.0f} MB images), "
        f"batch {BATCH}, {WORKERS} workers; best of {ROUNDS} rounds of {EPOCHS} warm epochs"
    )

    # (b) memory speed: shuffled gathers from in-memory arrays, one process.
    rng = np.random.default_rng(0)

    def gather_epoch() -> None:
        order = rng.permutation(n)
        for start in range(0, n, BATCH):
            chosen = order[start : start + BATCH]
            images[chosen], masks[chosen]

    gather = best_rate(gather_epoch, n)
    report("(b) numpy gather from memory, one process", gather, "samples/s")

    torch_rate = None
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

        def torch_rate_of(**options: object) -> float:
            baseline = DataLoader(
                InMemory(), batch_size=BATCH, shuffle=True, num_workers=WORKERS, **options
            )

            def epoch() -> None:
                for _images, _masks in baseline:
                    pass

            epoch()  # warm-up
            return best_rate(epoch, n)

        torch_rate = torch_rate_of(persistent_workers=True)
        report("(a) torch DataLoader(num_workers=2), in memory", torch_rate, "samples/s", gather)
        print("    (persistent_workers=True, warm; without it each epoch starts new workers:)")
        report("    the same, persistent_workers=False", torch_rate_of(), "samples/s", gather)

    started = time.perf_counter()
    with dicontour.BatchLoader.from_cache(
        cache, BATCH, root=REAL_DATA, workers=WORKERS, seed=0
    ) as loader:
        batches = iter(loader)
        next(batches)
        startup = time.perf_counter() - started
        for _ in batches:  # the rest of the warm-up epoch
            pass

        def loader_epoch() -> None:
            for _images, _masks in loader:
                pass

        ours = best_rate(loader_epoch, n)
    print(f"{'BatchLoader.from_cache start-up (first batch)':<48} {startup:>12.2f} s")
    report("BatchLoader.from_cache(workers=2)", ours, "samples/s", gather)
    if torch_rate:
        goal = "met" if ours >= 1.5 * torch_rate else "NOT met"
        print(f"from_cache / torch DataLoader (a): {ours / torch_rate:.2f}x (goal >= 1.5x: {goal})")
    goal = "met" if ours >= 0.8 * gather else "NOT met"
    print(f"from_cache / numpy gather (b):     {ours / gather:.2f}x (goal >= 0.8x: {goal})")

    build_rates(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
