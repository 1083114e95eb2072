"""Problems found in a dataset: a stable code, a severity, the file, a message.

Codes are part of the public interface: scripts filter on them, so they are
never renamed.  Each code has one fixed severity:

* ``error``: data was lost (a file could not be used);
* ``warning``: the data is used but looks wrong;
* ``info``: worth knowing, nothing lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast, get_args

from ._asdict import AsDict

if TYPE_CHECKING:
    from .errors import ContourError, DicomError, RefusedFileError

Severity = Literal["error", "warning", "info"]
Removes = Literal["patient-o", "slice", "contour"]

#: Every problem code with its severity and meaning, one code a line (the
#: meaning going on in indented lines); ``#`` lines name the groups.
_CODES_TABLE = """\
# link.csv and folders
missing-patient-folder    error    a link.csv row whose dicoms/<patient_id> folder is missing
missing-contour-folder    warning  a link.csv row whose contourfiles/<original_id> is missing
not-in-link-csv           warning  a folder that no link.csv row names; its files are not used
duplicate-link            error    a patient_id or original_id on more than one link.csv row
stray-file                info     a file or folder that is not part of the layout; ignored
bad-link-row              error    a link.csv row that cannot be used (not two plain folder names,
                                   not UTF-8 text, control characters); the other rows are
# what is never read (see dicontour.storage)
not-a-regular-file        error    a FIFO, socket or device where a file or folder belongs
link-outside-root         error    a symbolic link leading outside the dataset root
broken-link               error    a symbolic link to nothing (dangling) or in a loop
unreadable-folder         error    a folder that cannot be listed (permissions, I/O error)
root-unreachable          error    a patient scanned where the dataset root is not visible (a
                                   cluster worker without the same mount, a store without the same
                                   credentials); the patient's files are not used
# DICOM files
missing-dicom             error    a contour for a slice whose DICOM file does not exist
unreadable-dicom          error    a DICOM file that is not DICOM, truncated or undecodable
no-pixel-data             error    a DICOM file without pixel data
image-too-large           error    a DICOM image over the size limit
file-too-large            error    a DICOM file over the file size limit (MAX_FILE_BYTES)
header-too-large          error    a DICOM file whose header takes more than MAX_HEADER_BYTES to
                                   parse
invalid-rescale           error    a DICOM rescale that is not finite or takes pixel values beyond
                                   float32
instance-number-mismatch  warning  <n>.dcm whose InstanceNumber is not n
# contour files
empty-contour             error    a contour file with no points
unparseable-contour       error    a contour line that is not two numbers, or not text
non-finite-coordinate     error    a contour coordinate that is NaN or infinite
too-few-points            error    a contour with fewer than 3 distinct points
too-many-points           error    a contour over the point limit
missing-contour           error    a contour file that vanished while scanning
out-of-bounds             error    a contour reaching more than 1 pixel outside the image
too-many-crossings        error    a contour whose edges cross more image rows in total than
                                   MAX_CROSSINGS
# RT Structure Sets (scan with dicontour.rtstruct.RtstructContours)
malformed-rtstruct        error    an RTSTRUCT file that is not a readable RT Structure Set (not
                                   DICOM, wrong SOP class, missing sequences, bad contour data); its
                                   contours are not used
referenced-image-missing  error    an RTSTRUCT contour referencing a SOP Instance UID that no image
                                   of the patient has
contour-on-no-image       error    an RTSTRUCT contour without an image reference whose plane holds
                                   no image, or several (cine phases share a plane)
off-plane                 error    an RTSTRUCT contour whose points lie off its image's plane
                                   (beyond the tolerance)
unmapped-roi              warning  an RTSTRUCT ROI whose name is not in the ROI name map; its
                                   contours are not used
extra-contour             warning  a second contour of the same kind on one image (RTSTRUCT); only
                                   the first is used
# consistency
i-outside-o               warning  part of the i-contour's mask lies outside the o-contour's
shape-mismatch            warning  image shapes differ within one patient
contours-misaligned       warning  most of a patient's slices with both contours have i-outside-o
                                   (one line per patient)
implausible-area          warning  a contour's area is far outside the range of the patient's other
                                   contours of its kind
# pixel checks (dicontour check, dicontour preview; not in the header-only scan)
contour-on-background     warning  most of a contour's mask lies on dark background
duplicate-contour         warning  a contour file with the same points as another one
# training (BatchLoader, on_error="skip")
transform-failed          error    a sample whose augmentation transform raised or returned unusable
                                   arrays (path: its case id)
"""


def _read_codes(table: str) -> dict[str, tuple[Severity, str]]:
    """The codes of a table laid out as :data:`_CODES_TABLE`, in order.

    Examples
    --------
    >>> _read_codes("# a group\\nno-such  info  a meaning\\n         going on")
    {'no-such': ('info', 'a meaning going on')}
    """
    codes: dict[str, tuple[Severity, str]] = {}
    code = ""
    for line in table.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line[0] == " ":  # the meaning of the code above goes on
            known, meaning = codes[code]
            codes[code] = (known, f"{meaning} {line.strip()}")
            continue
        code, severity, meaning = line.split(maxsplit=2)
        if severity not in get_args(Severity) or code in codes:
            raise ValueError(f"problem code {code!r}: repeated, or unknown severity {severity!r}")
        codes[code] = (cast(Severity, severity), meaning)
    return codes


#: Every problem code, its severity and what it means.
CODES: dict[str, tuple[Severity, str]] = _read_codes(_CODES_TABLE)


#: What ``Index.subset(exclude=[code])`` removes for each problem of ``code``:
#:
#: * ``"patient-o"``: every o-contour of the problem's patient (its i-contours stay);
#: * ``"slice"``: both contours of the problem's slice (the slice leaves the index);
#: * ``"contour"``: the one contour file the problem names.
#:
#: Only the scan's warnings are here: an error already removed its file during
#: the scan, and ``info`` codes concern files that are not used.
EXCLUDES: dict[str, tuple[Removes, str]] = {
    "contours-misaligned": (
        "patient-o",
        "the patient's o-contours: they do not line up with its i-contours on most slices",
    ),
    "i-outside-o": (
        "slice",
        "the slice's i- and o-contour: they disagree, and one slice cannot tell which is wrong",
    ),
    "implausible-area": ("contour", "the contour whose area is implausible"),
    "shape-mismatch": ("slice", "the slice whose image shape differs from the patient's"),
    "instance-number-mismatch": (
        "slice",
        "the slice whose InstanceNumber disagrees with its file name",
    ),
}


@dataclass(frozen=True)
class Problem(AsDict):
    """One finding of a scan.

    Attributes
    ----------
    code : str
        Stable kebab-case code, a key of :data:`CODES`.
    severity : {"error", "warning", "info"}
        Fixed by the code.
    path : str
        The file or folder concerned, relative to the dataset root.
    message : str
        What is wrong, for a person.
    patient_id : str or None
    slice : int or None
    """

    code: str
    severity: Severity
    path: str
    message: str
    patient_id: str | None = None
    slice: int | None = None

    @classmethod
    def from_error(
        cls,
        error: DicomError | ContourError | RefusedFileError,
        *,
        path: str | None = None,
        note: str = "",
        patient_id: str | None = None,
        slice: int | None = None,
    ) -> Problem:
        """The problem a file error stands for: the one conversion the scan, checks and loader use.

        Parameters
        ----------
        error : DicomError, ContourError or RefusedFileError
            Its ``code`` becomes the problem's code (the error class's default
            code when it is not a problem code); its reason, after ``line N:``
            when one line is at fault, the message.
        path : str, optional
            The file to name, relative to the root (default: the error's path).
        note : str
            Appended to the message: what became of the file, e.g.
            ``" (skipped by the loader)"``.
        patient_id, slice
            Where the file belongs.

        Examples
        --------
        >>> from dicontour.errors import ContourError
        >>> error = ContourError("c.txt", "not two numbers", line=3, code="unparseable-contour")
        >>> p = Problem.from_error(error, note="; not used", slice=4)
        >>> p.code, p.path, p.message
        ('unparseable-contour', 'c.txt', 'line 3: not two numbers; not used')
        """
        code = error.code if error.code in CODES else type(error).default_code
        line = getattr(error, "line", None)
        message = (f"line {line}: " if line is not None else "") + error.reason + note
        return problem(
            code,
            error.path if path is None else path,
            message,
            patient_id=patient_id,
            slice=slice,
        )


def problem(
    code: str, path: str, message: str, *, patient_id: str | None = None, slice: int | None = None
) -> Problem:
    """Make a :class:`Problem` with the severity that ``code`` always has.

    Examples
    --------
    >>> problem("missing-dicom", "dicoms/P1/9.dcm", "no such slice").severity
    'error'
    """
    if code not in CODES:
        raise ValueError(f"unknown problem code {code!r}; known codes: {sorted(CODES)}")
    return Problem(code, CODES[code][0], path, message, patient_id, slice)
