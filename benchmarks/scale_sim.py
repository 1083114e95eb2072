"""Scale simulation (issue 4, point 6): scan and cache-build rates and peak memory at two sizes.

Writes phantom datasets of ``--sizes`` labelled slices (100 slices per patient,
128x128, every slice labelled, no faults) under ``--work`` (default
/tmp/dicontour-scale, outside the repository), then measures each step in a
fresh process, so that each peak-memory figure belongs to that step alone:

* scan: one process, and on the local engine (``--workers`` processes);
* cache build: one process, the local engine and Dask (``--workers``);
* verify: every checksum;
* train: one epoch of BatchLoader.from_cache (batch 32, 2 workers).

Each step reports items/s (wall) and items per CPU second (this process and its
workers), the figure that survives a busy machine.  Peak memory is the high-water
resident set (``getrusage``): of the measuring
process (the parent) and of its largest child (a worker).  The parent's figure
includes the imports; ``base`` is that baseline, taken before the work.

Not part of ``make bench``: it needs minutes and a few GB of /tmp.

    python benchmarks/scale_sim.py                      # 5,000 and 20,000 slices
    python benchmarks/scale_sim.py --sizes 1000 --keep  # a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

SLICES_PER_PATIENT = 100
SHAPE = (128, 128)
STEPS = (
    "scan-1",
    "scan-local",
    "build-1",
    "build-local",
    "verify",
    "train",
    "build-dask",
)


def peak_kb(who: int) -> int:
    return int(resource.getrusage(who).ru_maxrss)  # KiB on Linux


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure(step: str, root: str, cache: str, workers: int) -> dict[str, float]:
    """Run one step in this (fresh) process; return its figures."""
    import dicontour
    from dicontour.cache import build_cache, verify_cache
    from dicontour.engine import DaskEngine, LocalEngine

    base = peak_kb(resource.RUSAGE_SELF)
    cpu_before = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN)
    figures: dict[str, float] = {}
    start = time.perf_counter()
    if step.startswith("scan"):
        engine = LocalEngine(1 if step == "scan-1" else workers)
        with engine:
            index = dicontour.scan(root, mapper=engine.map)
        figures["items"] = len(index)
    elif step.startswith("build"):
        shutil.rmtree(cache, ignore_errors=True)
        if step == "build-dask":
            engine = DaskEngine(workers=workers)
        else:
            engine = LocalEngine(1 if step == "build-1" else workers)
        started = time.perf_counter()
        with engine:
            report = build_cache(root, cache, engine=engine)
        figures["engine_start"] = started - start
        figures.update({f"{k}_s": v for k, v in report.seconds.items()})
        figures["items"] = report.samples
        figures["cache_bytes"] = sum(
            p.stat().st_size for p in Path(cache).rglob("*") if p.is_file()
        )
    elif step == "verify":
        checked = verify_cache(cache)
        figures["items"] = checked.samples
        figures["bytes"] = checked.bytes
    elif step == "train":
        seen = 0
        with dicontour.BatchLoader.from_cache(cache, 32, workers=2, seed=0) as loader:
            for images, _ in loader:
                seen += len(images)
        figures["items"] = seen
    figures["seconds"] = time.perf_counter() - start
    figures["rate"] = figures["items"] / figures["seconds"]
    # CPU seconds of this process and of its finished children (the workers): on a
    # shared machine, items per CPU second is the figure that survives contention.
    figures["cpu_s"] = (
        cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    )
    figures["rate_per_cpu"] = figures["items"] / figures["cpu_s"]
    figures["base_mb"] = base / 1024
    figures["parent_peak_mb"] = peak_kb(resource.RUSAGE_SELF) / 1024
    figures["child_peak_mb"] = peak_kb(resource.RUSAGE_CHILDREN) / 1024
    return figures


def ensure_dataset(work: Path, size: int) -> Path:
    from dicontour.phantom import write_phantom

    root = work / f"data-{size}"
    if (root / "link.csv").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    patients = max(1, size // SLICES_PER_PATIENT)
    start = time.perf_counter()
    info = write_phantom(
        root,
        patients=patients,
        slices=SLICES_PER_PATIENT,
        shape=SHAPE,
        labelled_every=1,
        faults=False,
    )
    print(
        f"wrote {info.dicoms:,} slices ({info.i_contours:,} i-, {info.o_contours:,} o-contours) "
        f"to {root} in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000])
    parser.add_argument("--work", default="/tmp/dicontour-scale")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument("--keep", action="store_true", help="keep the datasets and caches")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for size in args.sizes:
        root = ensure_dataset(work, size)
        cache = work / f"cache-{size}"
        results[str(size)] = {}
        for step in args.steps:
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    step,
                    str(root),
                    str(cache),
                    str(args.workers),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode:
                print(f"{size} {step}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            results[str(size)][step] = figures
            print(
                f"{size:>7,} {step:<12} {figures['rate']:>9,.0f} /s  {figures['seconds']:>7.1f} s  "
                f"{figures['rate_per_cpu']:>7,.0f} /cpu-s  "
                f"parent peak {figures['parent_peak_mb']:>6.0f} MB (base "
                f"{figures['base_mb']:.0f})  child peak {figures['child_peak_mb']:>6.0f} MB"
                + (
                    f"  [list {figures['list_s']:.1f} s, scan {figures['scan_s']:.1f} s, "
                    f"shards {figures['build_s']:.1f} s, "
                    f"cache {figures['cache_bytes'] / 1e9:.2f} GB]"
                    if "build_s" in figures
                    else ""
                ),
                flush=True,
            )
        if not args.keep:
            shutil.rmtree(cache, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if not args.keep:
        for size in args.sizes:
            shutil.rmtree(work / f"data-{size}", ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        step, root, cache, workers = sys.argv[2:6]
        print(json.dumps(measure(step, root, cache, int(workers))))
        sys.exit(0)
    sys.exit(main())
