"""Visual QA: each labelled slice with its contours, contact sheets, and an HTML index.

``write_preview(index, out)`` writes::

    OUT/index.html                    every patient: sheet, slices, problems beside them
    OUT/<patient_id>/<slice>.png      the image in grey, i- and o-contours drawn, masks filled
    OUT/<patient_id>/sheet.png        the patient's slices, cropped to the contours

The HTML is self-contained (inline CSS, no script, relative links), so the
folder can be zipped or served as is.  The problems shown are the scan's and,
unless ``checks=False``, those of the pixel checks (:func:`check_index`'s
``contour-on-background`` and ``duplicate-contour``), each beside the slice
it names (by patient and slice), patient-wide ones under the patient's name.

Drawing uses Pillow only (a core dependency).  Coordinates: contour points
are (x, y) = (column, row) with pixel centres at integers; a pixel (r, c)
covers ``[c, c + 1) x [r, r + 1)`` times the scale in the PNG, so a point
is drawn at ``((x + 0.5) * scale, (y + 0.5) * scale)``.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np

from ..errors import ContourError, DicomError
from ..index import Index, Sample, SampleRecord, read_image, read_polygon
from ..problems import Problem
from ..raster import polygon_to_mask
from .checks import contour_on_background, duplicate_contours, unloadable

if TYPE_CHECKING:  # Pillow is imported where it is used
    from PIL.Image import Image as PILImage

#: RGB colours: i-contour (blood pool) red, o-contour (epicardium) cyan.
I_COLOUR = (255, 70, 70)
O_COLOUR = (40, 210, 255)
#: Opacity of the mask fills.
FILL_ALPHA = {"i": 0.28, "o": 0.16}
#: Tile size (pixels) of the contact sheets, and tiles per row.
TILE = 160
SHEET_COLUMNS = 6


@dataclass(frozen=True)
class PreviewResult:
    """What :func:`write_preview` wrote.

    Attributes
    ----------
    html : Path
        ``OUT/index.html``.
    images : tuple of Path
        Every per-slice PNG and contact sheet.
    patients : tuple of str
        The patients shown.
    problems : tuple of Problem
        The problems shown (scan and pixel checks).
    """

    html: Path
    images: tuple[Path, ...]
    patients: tuple[str, ...]
    problems: tuple[Problem, ...]


def window(image: np.ndarray) -> np.ndarray:
    """Map intensities to uint8 grey, from the 1st to the 99.5th percentile.

    Examples
    --------
    >>> window(np.arange(4.0).reshape(2, 2)).dtype
    dtype('uint8')
    """
    image = np.asarray(image, dtype=np.float64)
    if image.size == 0:
        return np.zeros(image.shape, np.uint8)
    low, high = np.percentile(image, [1.0, 99.5])
    if high <= low:
        high = low + 1.0
    scaled = (np.clip(image, low, high) - low) / (high - low)
    return np.round(scaled * 255).astype(np.uint8)


def render_slice(
    image: np.ndarray,
    i_mask: np.ndarray | None = None,
    o_mask: np.ndarray | None = None,
    *,
    i_points: np.ndarray | None = None,
    o_points: np.ndarray | None = None,
    scale: int = 2,
) -> PILImage:
    """The slice in grey with the masks lightly filled and the contours drawn.

    Parameters
    ----------
    image : float ndarray of shape (H, W)
    i_mask, o_mask : bool ndarray of shape (H, W), optional
        Filled in red (i) and cyan (o).
    i_points, o_points : float ndarray of shape (N, 2), optional
        The polygons as (x, y) = (column, row), drawn as closed lines.
    scale : int
        Output pixels per image pixel (nearest-neighbour).

    Returns
    -------
    PIL.Image.Image
        RGB, of size (W * scale, H * scale).

    Examples
    --------
    >>> picture = render_slice(np.zeros((4, 6)), scale=3)
    >>> picture.size, picture.mode
    ((18, 12), 'RGB')
    """
    from PIL import Image, ImageDraw

    if scale < 1:
        raise ValueError(f"scale must be a positive integer; got {scale}")
    grey = window(image).astype(np.float64)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    for kind, mask, colour in (("o", o_mask, O_COLOUR), ("i", i_mask, I_COLOUR)):
        if mask is None:
            continue
        if mask.shape != grey.shape:
            raise ValueError(f"{kind}_mask shape {mask.shape} != image shape {grey.shape} (H, W)")
        alpha = FILL_ALPHA[kind]
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.array(colour, dtype=np.float64)
    picture = Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    if scale != 1:
        size = (picture.width * scale, picture.height * scale)
        picture = picture.resize(size, Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(picture)
    for points, colour in ((o_points, O_COLOUR), (i_points, I_COLOUR)):
        if points is None or len(points) < 2:
            continue
        xy = [((x + 0.5) * scale, (y + 0.5) * scale) for x, y in np.asarray(points, float)]
        draw.line([*xy, xy[0]], fill=colour, width=max(1, scale // 2))
    return picture


def _crop_box(sample: Sample, pad: int = 12) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a square around the slice's masks, in image pixels."""
    masks = [m for m in (sample.i_mask, sample.o_mask) if m is not None and m.any()]
    height, width = sample.image.shape
    if not masks:
        return 0, 0, width, height
    union = np.logical_or.reduce(masks)
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    side = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 + 2 * pad
    centre_r, centre_c = (rows[0] + rows[-1]) // 2, (cols[0] + cols[-1]) // 2
    top = int(np.clip(centre_r - side // 2, 0, max(height - side, 0)))
    left = int(np.clip(centre_c - side // 2, 0, max(width - side, 0)))
    return left, top, min(left + side, width), min(top + side, height)


def _load_with_points(index: Index, record: SampleRecord) -> tuple[Sample, dict[str, np.ndarray]]:
    """The slice as :meth:`Index.load` reads it, and its contour points: each file read once."""
    image = read_image(index.location, record)
    points = {  # checked as Index.load checks them (bounds, rasteriser limit)
        kind: read_polygon(index.location, path, record.shape)
        for kind, path in (("i", record.i_contour), ("o", record.o_contour))
        if path
    }
    masks = {kind: polygon_to_mask(polygon, record.shape) for kind, polygon in points.items()}
    return Sample(image, masks.get("i"), masks.get("o"), record.patient_id, record.slice), points


def contact_sheet(
    tiles: Sequence[tuple[PILImage, str, bool]], columns: int = SHEET_COLUMNS
) -> PILImage:
    """Tiles in a grid, each labelled; a flagged tile gets an orange frame.

    Parameters
    ----------
    tiles : sequence of (PIL.Image.Image, label, flagged)
    columns : int

    Returns
    -------
    PIL.Image.Image
    """
    from PIL import Image, ImageDraw

    count = max(len(tiles), 1)
    columns = max(1, min(columns, count))
    rows = (count + columns - 1) // columns
    label_height = 14
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + label_height)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for n, (tile, label, flagged) in enumerate(tiles):
        left, top = (n % columns) * TILE, (n // columns) * (TILE + label_height)
        sheet.paste(tile.resize((TILE, TILE)), (left, top))
        if flagged:
            draw.rectangle([left, top, left + TILE - 1, top + TILE - 1], outline=(255, 150, 0))
            draw.rectangle(
                [left + 1, top + 1, left + TILE - 2, top + TILE - 2], outline=(255, 150, 0)
            )
        draw.text((left + 3, top + TILE + 1), label, fill=(230, 230, 230))
    return sheet


def _chosen_records(
    index: Index, patients: Iterable[str] | None, limit: int | None
) -> dict[str, list[int]]:
    """patient_id -> positions in the index of the slices to show (at most ``limit`` each)."""
    wanted = None if patients is None else list(dict.fromkeys(patients))
    chosen: dict[str, list[int]] = {pid: [] for pid in wanted} if wanted else {}
    for k, record in enumerate(index):
        if wanted is not None and record.patient_id not in wanted:
            continue
        positions = chosen.setdefault(record.patient_id, [])
        if limit is None or len(positions) < limit:
            positions.append(k)
    return chosen


def write_preview(
    index: Index,
    out: str | Path,
    *,
    patients: Iterable[str] | None = None,
    limit: int | None = None,
    checks: bool = True,
    scale: int = 2,
    progress: bool = False,
) -> PreviewResult:
    """Write per-slice PNGs, per-patient contact sheets and ``OUT/index.html``.

    Parameters
    ----------
    index : Index
        A scan's result; its slices are read.
    out : str or Path
        Output folder (created; existing files of the same names are replaced).
    patients : iterable of str, optional
        Only these patients (all by default).  An unknown id gets a section
        that says it has no labelled slice.
    limit : int, optional
        At most this many labelled slices per patient (all by default).
    checks : bool
        Also run the pixel checks on the slices shown and list their findings.
    scale : int
        Pixels per image pixel in the per-slice PNGs.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    PreviewResult

    Raises
    ------
    ValueError
        ``limit`` below 1 or ``scale`` below 1.
    OSError
        The output folder cannot be written.

    A slice that cannot be loaded (a file changed since the scan, pixels that
    do not decode) is listed as a problem beside the others; the rest are drawn.

    Examples
    --------
    >>> result = write_preview(dicontour.scan("final_data"), "qa", limit=4)  # doctest: +SKIP
    >>> result.html                                                          # doctest: +SKIP
    PosixPath('qa/index.html')
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1; got {limit}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    chosen = _chosen_records(index, patients, limit)
    shown = set(chosen)
    problems = [p for p in index.problems if patients is None or p.patient_id in shown]
    rendered, images = _write_slices(index, folder, chosen, problems, checks, scale, progress)
    if checks:
        problems.extend(_duplicates_shown(index, rendered))
    by_slice = _by_slice(problems)
    sheets = _write_sheets(folder, rendered, by_slice, images)
    page = _html(index, chosen, rendered, sheets, by_slice, problems, limit)
    (folder / "index.html").write_text(page, encoding="utf-8")
    return PreviewResult(folder / "index.html", tuple(images), tuple(chosen), tuple(problems))


#: One drawn slice: its record, the loaded sample, its PNG relative to the output folder.
_Drawn = tuple[SampleRecord, Sample, str]
#: Problems by (patient_id, slice); None for dataset-wide or patient-wide ones.
_BySlice = dict[tuple[str | None, int | None], list[Problem]]


def _write_slices(
    index: Index,
    folder: Path,
    chosen: dict[str, list[int]],
    problems: list[Problem],
    checks: bool,
    scale: int,
    progress: bool,
) -> tuple[dict[str, list[_Drawn]], list[Path]]:
    """Draw each chosen slice to ``<pid>/<slice>.png``; (drawn slices by patient, PNGs).

    Slices that cannot be loaded, and with ``checks`` the background check's
    findings, are appended to ``problems``.
    """
    images: list[Path] = []
    rendered: dict[str, list[_Drawn]] = defaultdict(list)
    steps = [(pid, k) for pid, positions in chosen.items() for k in positions]
    iterator: Iterable[tuple[str, int]] = steps
    if progress:
        from tqdm import tqdm  # not a cycle: only when a bar is shown (slow to import)

        iterator = tqdm(steps, desc="preview", unit="slice", leave=False)
    for pid, k in iterator:
        record = index[k]
        try:
            sample, points = _load_with_points(index, record)
        except (DicomError, ContourError) as exc:  # one bad slice: a problem, not the end
            problems.append(unloadable(record, exc))
            continue
        if checks:
            problems.extend(contour_on_background(record, sample))
        picture = render_slice(
            sample.image,
            sample.i_mask,
            sample.o_mask,
            i_points=points.get("i"),
            o_points=points.get("o"),
            scale=scale,
        )
        relative = f"{pid}/{record.slice}.png"
        (folder / pid).mkdir(parents=True, exist_ok=True)
        picture.save(folder / relative)
        images.append(folder / relative)
        rendered[pid].append((record, sample, relative))
    return rendered, images


def _duplicates_shown(index: Index, rendered: dict[str, list[_Drawn]]) -> list[Problem]:
    """The ``duplicate-contour`` findings of the slices drawn."""
    keys = {(r.patient_id, r.slice) for slices in rendered.values() for r, _, _ in slices}
    return [p for p in duplicate_contours(index) if (p.patient_id, p.slice) in keys]


def _by_slice(problems: Sequence[Problem]) -> _BySlice:
    """Problems grouped by (patient_id, slice), errors first, then by path and code."""
    by_slice: _BySlice = defaultdict(list)
    for p in sorted(problems, key=lambda p: (p.severity != "error", p.path, p.code)):
        by_slice[p.patient_id, p.slice].append(p)
    return by_slice


def _write_sheets(
    folder: Path, rendered: dict[str, list[_Drawn]], by_slice: _BySlice, images: list[Path]
) -> dict[str, str]:
    """One contact sheet per patient, ``<pid>/sheet.png`` (appended to ``images``)."""
    sheets = {}
    for pid, slices in rendered.items():
        tiles = []
        for record, sample, _ in slices:
            box = _crop_box(sample)
            tile = render_slice(
                sample.image[box[1] : box[3], box[0] : box[2]],
                None if sample.i_mask is None else sample.i_mask[box[1] : box[3], box[0] : box[2]],
                None if sample.o_mask is None else sample.o_mask[box[1] : box[3], box[0] : box[2]],
                scale=1,
            )
            flagged = bool(by_slice.get((pid, record.slice)))
            tiles.append((tile, f"slice {record.slice}" + (" !" if flagged else ""), flagged))
        sheets[pid] = f"{pid}/sheet.png"
        contact_sheet(tiles).save(folder / sheets[pid])
        images.append(folder / sheets[pid])
    return sheets


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse}td{vertical-align:top;padding:6px;border-bottom:1px solid #ddd}
.error{color:#b00020}.warning{color:#a05a00}.info{color:#555}
ul.problems{margin:0;padding-left:1.2em}code{font-size:12px}
.legend span{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em}
img.slice{width:256px;image-rendering:pixelated}img.sheet{max-width:100%}
.clean{color:#2a7a2a}
"""


def _problem_list(problems: Sequence[Problem]) -> str:
    if not problems:
        return '<span class="clean">no problems</span>'
    items = "".join(
        f'<li class="{p.severity}"><b>{html.escape(p.severity)}</b> '
        f"<code>{html.escape(p.code)}</code> {html.escape(p.message)} "
        f"<small>({html.escape(p.path)})</small></li>"
        for p in problems
    )
    return f'<ul class="problems">{items}</ul>'


def _html(
    index: Index,
    chosen: dict[str, list[int]],
    rendered: dict[str, list[_Drawn]],
    sheets: dict[str, str],
    by_slice: _BySlice,
    problems: Sequence[Problem],
    limit: int | None,
) -> str:
    """The whole ``index.html``: head and summary, dataset problems, one section per patient."""
    parts = _head(index, chosen, rendered, problems, limit)
    dataset_level = [p for (pid, _), found in by_slice.items() if pid is None for p in found]
    if dataset_level:
        parts += ["<h2>Dataset</h2>", _problem_list(dataset_level)]
    if chosen:
        parts.append(
            "<p>Patients: "
            + " ".join(f'<a href="#{quote(pid)}">{html.escape(pid)}</a>' for pid in chosen)
            + "</p>"
        )
    for pid in chosen:
        parts += _patient_section(pid, rendered.get(pid, []), sheets, by_slice)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _head(
    index: Index,
    chosen: dict[str, list[int]],
    rendered: dict[str, list[_Drawn]],
    problems: Sequence[Problem],
    limit: int | None,
) -> list[str]:
    """The page's head, title, counts line and colour legend."""
    counts = Counter(p.severity for p in problems)
    codes = Counter(p.code for p in problems)
    i_rgb, o_rgb = (f"rgb{c}" for c in (I_COLOUR, O_COLOUR))
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>dicontour preview: {html.escape(index.location.redacted())}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>dicontour preview: {html.escape(index.location.redacted())}</h1>",
        f"<p>{sum(len(v) for v in rendered.values())} labelled slices of {len(chosen)} "
        f"patients{'' if limit is None else f' (at most {limit} per patient)'}; problems: "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("error", "warning", "info"))
        + (" (" + ", ".join(f"{c} {n}" for c, n in sorted(codes.items())) + ")" if codes else "")
        + "</p>",
        f'<p class="legend">i-contour (blood pool)<span style="background:{i_rgb}"></span> '
        f'o-contour (outer myocardium)<span style="background:{o_rgb}"></span> '
        "masks lightly filled; an orange frame on the sheet marks a slice with problems.</p>",
    ]


def _patient_section(
    pid: str, slices: list[_Drawn], sheets: dict[str, str], by_slice: _BySlice
) -> list[str]:
    """One patient: heading, patient-wide problems, contact sheet, a table row per slice."""
    original = slices[0][0].original_id if slices else ""
    parts = [
        f'<h2 id="{html.escape(pid)}">{html.escape(pid)}'
        + (f" <small>({html.escape(original)})</small>" if original else "")
        + "</h2>"
    ]
    patient_wide = by_slice.get((pid, None), [])
    if patient_wide:
        parts.append(_problem_list(patient_wide))
    if not slices:
        # Only slices that could not be loaded can have problems here.
        return [*parts, "<p>No labelled slice.</p>", *_unshown_section(by_slice, pid, set())]
    parts.append(
        f'<p><a href="{quote(sheets[pid])}"><img class="sheet" src="{quote(sheets[pid])}" '
        f'alt="contact sheet of {html.escape(pid)}"></a></p>'
    )
    parts.append("<table>")
    parts += [_slice_row(pid, drawn, by_slice) for drawn in slices]
    parts.append("</table>")
    return parts + _unshown_section(by_slice, pid, {record.slice for record, _, _ in slices})


def _slice_row(pid: str, drawn: _Drawn, by_slice: _BySlice) -> str:
    """A table row: the slice's PNG, its file and mask areas, its problems."""
    record, sample, relative = drawn
    areas = ", ".join(
        f"{kind} {int(mask.sum())} px"
        for kind, mask in (("i", sample.i_mask), ("o", sample.o_mask))
        if mask is not None
    )
    return (
        f'<tr id="{html.escape(pid)}-{record.slice}">'
        f'<td><a href="{quote(relative)}"><img class="slice" src="{quote(relative)}" '
        f'alt="{html.escape(pid)} slice {record.slice}"></a></td>'
        f"<td><b>slice {record.slice}</b><br><small>{html.escape(record.dicom)}<br>"
        f"{areas}</small></td>"
        f"<td>{_problem_list(by_slice.get((pid, record.slice), []))}</td></tr>"
    )


def _unshown_section(by_slice: _BySlice, pid: str, shown: set[int]) -> list[str]:
    """A heading and list of the problems of ``pid``'s slices not drawn, if there are any."""
    other = _unshown(by_slice, pid, shown)
    return ["<h3>Problems of slices not shown</h3>", _problem_list(other)] if other else []


def _unshown(by_slice: _BySlice, pid: str, shown: set[int]) -> list[Problem]:
    """The problems of patient ``pid``'s slices that are not among ``shown``."""
    return [
        p
        for (owner, number), found in sorted(
            by_slice.items(), key=lambda item: (str(item[0][0]), item[0][1] or 0)
        )
        if owner == pid and number is not None and number not in shown
        for p in found
    ]
