"""Export the real data to nnU-Net and run nnU-Net's own dataset integrity check on it.

nnU-Net is heavy (torch and friends), so it lives in its own venv::

    python3 -m venv /tmp/nnunet-venv
    /tmp/nnunet-venv/bin/pip install -c constraints.txt torch==2.13.0 nnunetv2   # CPU torch
    PYTHONPATH=src python benchmarks/nnunet_check.py ../shared/data/final_data OUT \\
        --nnunet-python /tmp/nnunet-venv/bin/python

The export runs here (dicontour's environment); the check runs in the nnU-Net
venv, which needs nothing of dicontour.  Exit status: the check's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import dicontour
from dicontour.export import export

CHECK = (
    "import sys\n"
    "from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity\n"
    "verify_dataset_integrity(sys.argv[1], num_processes=2)\n"
    "print('nnU-Net integrity check passed')\n"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("out", help="a new folder, e.g. .../Dataset501_Sunnybrook")
    parser.add_argument("--nnunet-python", default=sys.executable)
    args = parser.parse_args()
    start = time.perf_counter()
    report = export(dicontour.scan(args.root), args.out, "nnunet")
    print(f"export: {report.cases} cases, {len(report.written)} files, "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run([args.nnunet_python, "-c", CHECK, args.out], check=False)
    print(f"check: exit {done.returncode}, {time.perf_counter() - start:.1f} s")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
