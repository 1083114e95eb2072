"""Trust the data: consistency checks, visual QA, intensity study, heuristic segmentation.

Modules, by concept::

    checks.py          pixel checks (the scan's geometry checks are in dicontour.consistency)
    preview.py         per-slice PNGs, contact sheets, index.html
    intensity.py       blood pool vs myocardium intensities, histograms
    segment.py         non-learned blood-pool segmentation methods
    study.py           scoring (Dice, IoU) and leave-one-patient-out tuning
    segment_report.py  CSVs and best/worst figures of a segmentation run
    metrics.py         dice, iou
    threshold.py       Otsu's threshold in numpy

QA is the last stage: nothing in dicontour below it imports it (only the
package front and the CLI do).  scipy, scikit-image, scikit-learn and
matplotlib (the ``qa`` extra) are imported inside the functions that need
them.
"""

from .checks import check_index, check_patient, with_problems
from .intensity import intensity_study, write_intensity_report
from .metrics import dice, iou
from .preview import render_slice, write_preview
from .segment import DEFAULT_METHOD, METHODS, segment_blood_pool
from .study import evaluate, leave_one_patient_out, load_labelled, well_aligned_patients
from .threshold import otsu_threshold

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "check_index",
    "check_patient",
    "dice",
    "evaluate",
    "intensity_study",
    "iou",
    "leave_one_patient_out",
    "load_labelled",
    "otsu_threshold",
    "render_slice",
    "segment_blood_pool",
    "well_aligned_patients",
    "with_problems",
    "write_intensity_report",
    "write_preview",
]
