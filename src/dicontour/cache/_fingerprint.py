"""What a cache was built from: a fingerprint of the dataset's files, cheap to recompute.

No pixel is read.  The fingerprint hashes one line per file of the layout
(``link.csv`` and everything under ``dicoms/`` and ``contourfiles/``)::

    <relative path> <size> <version tag>

where the version tag is what the store already keeps for each file: the
modification time in nanoseconds on a local disk, the ETag on S3, the MD5 or
generation on GCS.  One directory walk (local) or one recursive listing (an
object store returns 1,000 keys per request) gives it, so checking a cache
against 1,000,000 slices costs about 2,000 list requests, not 2,000,000 reads.
Files are hashed in groups (``link.csv``, ``dicoms/<patient_id>``,
``contourfiles/<original_id>``) so that a stale cache can say which patients
changed.  A file added, removed, resized or rewritten changes the fingerprint;
a file that is only read does not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..storage import Location

#: The parts of a dataset root that the fingerprint covers.
LAYOUT = ("link.csv", "dicoms", "contourfiles")


def list_files(root: Location) -> dict[str, str]:
    """``{relative path: "<size> <tag>"}`` for every file of the layout under ``root``."""
    return root.file_versions(files=LAYOUT[:1], folders=LAYOUT[1:])


def _group(relative: str) -> str:
    parts = relative.split("/")
    return "/".join(parts[:2]) if parts[0] in ("dicoms", "contourfiles") else relative


@dataclass(frozen=True)
class Fingerprint:
    """A dataset's files, hashed per group.

    Attributes
    ----------
    groups : dict of str to str
        ``link.csv``, ``dicoms/<patient_id>``, ``contourfiles/<original_id>``
        (and any other file of the layout) -> sha256 of its files' lines.
    files : int
        Number of files hashed.
    """

    groups: dict[str, str]
    files: int

    @property
    def sha256(self) -> str:
        """One hash over all groups."""
        digest = hashlib.sha256()
        for group in sorted(self.groups):
            digest.update(f"{group}\t{self.groups[group]}\n".encode())
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "groups": dict(sorted(self.groups.items()))}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Fingerprint:
        return cls(dict(document["groups"]), int(document["files"]))

    def differences(self, now: Fingerprint) -> str:
        """Which groups changed from ``self`` (then) to ``now``, in words."""
        added = sorted(set(now.groups) - set(self.groups))
        removed = sorted(set(self.groups) - set(now.groups))
        changed = sorted(
            g for g in set(self.groups) & set(now.groups) if self.groups[g] != now.groups[g]
        )
        parts = []
        for label, names in (("changed", changed), ("added", added), ("removed", removed)):
            if names:
                shown = ", ".join(names[:5]) + (
                    f" and {len(names) - 5} more" if len(names) > 5 else ""
                )
                parts.append(f"{label}: {shown}")
        parts.append(f"{self.files} files at build time, {now.files} now")
        return "; ".join(parts)


def fingerprint(files: dict[str, str]) -> Fingerprint:
    """Hash the listing of :func:`list_files` per group."""
    grouped: dict[str, hashlib._Hash] = {}
    for relative in sorted(files):
        digest = grouped.setdefault(_group(relative), hashlib.sha256())
        digest.update(f"{relative}\t{files[relative]}\n".encode())
    return Fingerprint({g: d.hexdigest() for g, d in grouped.items()}, len(files))
