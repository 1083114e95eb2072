"""dicontour.qa.preview: the PNGs, the contact sheets, index.html, and a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dicontour import scan, write_preview
from dicontour.cli import main
from dicontour.qa.preview import I_COLOUR, O_COLOUR, render_slice, window

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Appended to a copy of the page: after load, count the images the browser decoded.
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var drawn = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-rendered", String(drawn.length));
});
</script>"""


@pytest.fixture(scope="module")
def dataset(phantom) -> Path:
    # faults=True: an unparseable i-contour on PHA00001's first labelled slice (whose
    # o-contour still makes a sample), a missing DICOM, a stray file, ...
    return phantom(patients=2, slices=6, shape=(48, 48), labelled_every=1, seed=5)


@pytest.fixture(scope="module")
def preview(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("preview-out") / "qa"
    return write_preview(scan(dataset), out)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.rows: dict[str, str] = {}
        self._row: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.sources.append(attributes["src"])
        if tag == "tr":
            self._row, self._text = attributes.get("id"), []

    def handle_endtag(self, tag):
        if tag == "tr" and self._row:
            self.rows[self._row] = " ".join(self._text)
            self._row = None

    def handle_data(self, data):
        if self._row:
            self._text.append(data)


def test_render_slice_draws_both_contours_in_their_colours():
    image = np.zeros((20, 20), np.float32)
    square_i = np.array([(6, 6), (12, 6), (12, 12), (6, 12)], float)
    square_o = np.array([(3, 3), (15, 3), (15, 15), (3, 15)], float)
    i_mask = np.zeros((20, 20), bool)
    i_mask[6:12, 6:12] = True
    o_mask = np.zeros((20, 20), bool)
    o_mask[3:15, 3:15] = True
    picture = np.asarray(
        render_slice(image, i_mask, o_mask, i_points=square_i, o_points=square_o, scale=4)
    )
    assert picture.shape == (80, 80, 3)
    colours = {tuple(int(v) for v in px) for px in picture.reshape(-1, 3)}
    assert I_COLOUR in colours and O_COLOUR in colours
    # Point (x=6, y=9) of the i-square's left edge is drawn at ((6.5) * 4, (9.5) * 4).
    assert tuple(picture[38, 26]) == I_COLOUR
    # Background stays black; the filled masks are tinted, not opaque.
    assert tuple(picture[0, 0]) == (0, 0, 0)
    inside = tuple(int(v) for v in picture[9 * 4 + 2, 9 * 4 + 2])
    assert inside != (0, 0, 0) and inside != I_COLOUR
    with pytest.raises(ValueError, match=r"i_mask shape \(3, 3\) != image shape \(20, 20\)"):
        render_slice(image, np.zeros((3, 3), bool))


def test_window_maps_percentiles_to_full_grey_range():
    grey = window(np.linspace(0, 1000, 10000).reshape(100, 100))
    assert grey.min() == 0 and grey.max() == 255
    assert window(np.full((3, 3), 7.0)).max() == 0


def test_preview_writes_every_slice_sheet_and_relative_links(dataset, preview):
    index = scan(dataset)
    out = preview.html.parent
    slices = [p for p in preview.images if p.name != "sheet.png"]
    assert len(slices) == len(index)
    assert {p.name for p in preview.images if p.name == "sheet.png"} == {"sheet.png"}
    assert (out / "PHA00001" / "sheet.png").exists() and (out / "PHA00002" / "sheet.png").exists()
    for path in preview.images:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.width > 0
    page = preview.html.read_text()
    links = _Links()
    links.feed(page)
    assert len(links.sources) == len(preview.images)
    for source in links.sources:
        assert not source.startswith(("/", "file:", "http")), source  # relative
        assert (out / source).is_file(), source
    assert "<script" not in page  # self-contained and static


def test_problems_sit_beside_the_slices_they_concern(dataset, preview):
    index = scan(dataset)
    links = _Links()
    links.feed(preview.html.read_text())
    slice_problems = [p for p in index.problems if p.slice is not None]
    assert slice_problems, "the phantom's faults give slice problems"
    shown = {(r.patient_id, r.slice) for r in index}
    for p in slice_problems:
        if (p.patient_id, p.slice) in shown:
            row = links.rows[f"{p.patient_id}-{p.slice}"]
            assert p.code in row and p.path in row
        else:  # e.g. the contour of a missing DICOM: listed under its patient
            page = preview.html.read_text()
            section = page.split(f'id="{p.patient_id}"')[1].split("<h2")[0]
            assert "Problems of slices not shown" in section and p.code in section
    clean = [key for key in shown if key not in {(p.patient_id, p.slice) for p in slice_problems}]
    assert clean and all("no problems" in links.rows[f"{pid}-{n}"] for pid, n in clean)
    dataset_level = [p for p in index.problems if p.patient_id is None]
    assert dataset_level
    assert all(p.code in preview.html.read_text().split("<h2")[1] for p in dataset_level)


def test_preview_command_patient_and_limit(dataset, tmp_path, capsys):
    out = tmp_path / "qa"
    options = ["--quiet", "--patient", "PHA00002", "--limit", "2"]
    assert main(["preview", *options, str(dataset), str(out)]) == 0
    assert "2 slices of 1 patients" in capsys.readouterr().out
    first_two = [r.slice for r in scan(dataset) if r.patient_id == "PHA00002"][:2]
    expected = sorted([*(f"{n}.png" for n in first_two), "sheet.png"])
    assert sorted(p.name for p in (out / "PHA00002").iterdir()) == expected
    assert not (out / "PHA00001").exists()
    with pytest.raises(SystemExit):
        main(["preview", "--limit", "0", str(dataset), str(out)])


def test_preview_of_an_unknown_patient_is_an_error(dataset, tmp_path, capsys):
    out = tmp_path / "qa"
    assert main(["preview", "--quiet", "--patient", "NOPE", str(dataset), str(out)]) == 1
    assert "no labelled slices for patient NOPE" in capsys.readouterr().err
    assert not (out / "index.html").exists()


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _rendered(browser: str, page: Path, profile: Path) -> tuple[int, int]:
    """(images on the page, images the browser decoded), from the DOM after load."""
    command = [
        browser,
        *BROWSER_FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    body = re.search(r"<body[^>]*data-images=\"(\d+)\"[^>]*data-rendered=\"(\d+)\"", done.stdout)
    assert body, f"no probe result from {browser} (exit {done.returncode}): {done.stderr[-800:]}"
    return int(body.group(1)), int(body.group(2))


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_index_html_renders_its_images_in_chromium(preview, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(
            "no Chromium on PATH (looked for chromium, chromium-browser, google-chrome); "
            "install Debian's chromium package to run the browser test"
        )
    probe = preview.html.with_name("probe.html")
    probe.write_text(preview.html.read_text().replace("</body>", PROBE + "</body>"))
    images, drawn = _rendered(browser, probe, tmp_path / "profile")
    assert images == len(preview.images)
    assert drawn == images
    # The probe can fail: a page with one missing image reports it.
    broken = preview.html.with_name("broken.html")
    source = Path(preview.images[0]).relative_to(preview.html.parent).as_posix()
    broken.write_text(
        f'<html><body><img src="{source}"><img src="missing.png">{PROBE}</body></html>'
    )
    assert _rendered(browser, broken, tmp_path / "profile") == (2, 1)
