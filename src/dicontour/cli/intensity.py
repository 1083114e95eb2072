"""``dicontour intensity ROOT``: blood pool vs myocardium intensities, per slice and patient."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_dataset_command, scan_root
from ._format import echo, print_json, printable, table


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_dataset_command(
        sub,
        "intensity",
        help="intensity of the blood pool (inside i) vs the myocardium (between i and o)",
    )
    parser.add_argument("--out", type=Path, help="write CSVs, JSON and histogram PNGs here")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..qa.intensity import intensity_study, write_intensity_report
    from ..qa.study import load_labelled, well_aligned_patients

    index = scan_root(args)
    aligned = well_aligned_patients(index)
    slices = load_labelled(index)
    if args.out:
        study, _ = write_intensity_report(slices, args.out, well_aligned=aligned)
    else:
        study = intensity_study(slices)
    if args.json:
        print_json({"well_aligned": aligned, **study.to_dict()})
        return 0
    rows = [
        [
            p.patient_id,
            sum(s.patient_id == p.patient_id for s in study.slices),
            f"{p.blood_mean:.0f} ± {p.blood_sd:.0f}",
            f"{p.myo_mean:.0f} ± {p.myo_sd:.0f}",
            f"{p.auc:.3f}",
            f"{p.overlap:.3f}",
            f"{p.oracle_dice:.3f}",
            f"{p.otsu_dice:.3f}",
            "yes" if p.patient_id in aligned else "no",
        ]
        for p in study.patients
    ]
    headers = [
        "patient",
        "slices",
        "blood mean ± sd",
        "myocardium mean ± sd",
        "AUC",
        "overlap",
        "oracle Dice",
        "Otsu Dice",
        "well-aligned",
    ]
    echo(
        "blood pool (inside i) vs myocardium (between i and o), pooled per patient;\n"
        "oracle Dice: best single threshold inside o, per slice, averaged\n" + table(headers, rows)
    )
    if args.out:
        echo(f"\nwrote {printable(args.out)}/slices.csv, patients.csv, intensity.json, histograms/")
    return 0
