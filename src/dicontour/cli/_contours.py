"""``--contours text|rtstruct`` and ``--roi-map``: which contour source a command scans with."""

from __future__ import annotations

import argparse
import os

from ..rtstruct import RtstructContours, parse_roi_map
from ..scan import ContourSource, TextContours


def add_contour_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--contours`` and ``--roi-map`` to a subcommand that scans."""
    parser.add_argument(
        "--contours",
        choices=["text", "rtstruct"],
        default="text",
        help="contour files: text (contourfiles/<id>/{i,o}-contours/*.txt, the default) or "
        "rtstruct (RT Structure Sets in contourfiles/<id>/*.dcm)",
    )
    parser.add_argument(
        "--roi-map",
        nargs="+",
        metavar="KIND=NAME[,NAME...]|FILE.json",
        help="with --contours rtstruct: ROI names for i and o, e.g. i=LV_Endo,Endocardium "
        'o=LV_Epi, or a JSON file {"i": [...], "o": [...]}; replaces the default names',
    )


def contour_source(args: argparse.Namespace) -> ContourSource:
    """The contour source the options ask for (``ValueError``, exit 2, on a bad ROI map)."""
    if args.contours == "text":
        if args.roi_map:
            raise ValueError("--roi-map applies to --contours rtstruct only")
        return TextContours()
    spec = args.roi_map
    if spec and len(spec) == 1 and "=" not in spec[0] and os.path.exists(spec[0]):
        return RtstructContours(parse_roi_map(spec[0]))
    return RtstructContours(parse_roi_map(spec) if spec else None)
