"""The input fingerprint of a results row: what must be unchanged for a rerun to reuse the row.

A row depends on the bytes of the image and mask files, the case's clinical values, segment and
spacing, the bundle's content and the options that change a row (``stability``). The
fingerprint (``input_digest``) is a sha256 over all of them; a rerun reuses a journalled or
previously written row only when its fingerprint is the one computed now (``journal.reuse_verdict``).

Files are hashed by content, not by name or time: a corrected manifest that names another file,
a file replaced in place, or a bundle rebuilt under the same id and version all give another
fingerprint. The bundle part is the verified bundle's content digest (``bundle.trust``: the
canonical manifest.json plus the sha256 of every file, ``Predictor.bundle_digest``), the same
digest the results CSV shows in ``bundle_digest``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Version of the fingerprint recipe: a new recipe must not match fingerprints of the old one.
FINGERPRINT_VERSION = 1
_CHUNK = 1 << 20
# Header formats whose pixel data live in another file named in the header.
_DATA_FILE_LINE = {
    ".nhdr": re.compile(r"^data ?file:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE),
    ".mhd": re.compile(r"^ElementDataFile\s*=\s*(.+?)\s*$", re.MULTILINE),
}


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)


def file_digest(path: str | Path | None) -> str:
    """sha256 of what reading ``path`` reads: a file's bytes, or every file of a DICOM folder.

    A ``.nhdr`` / ``.mhd`` header is hashed with the data file it names. A path that does not
    exist or cannot be read gets a digest of that fact (its case fails and is retried anyway).

    Args:
        path: an image or mask path as resolved from the cohort CSV, or None.

    Returns:
        The lowercase hex digest.
    """
    h = hashlib.sha256()
    if not path:
        h.update(b"none")
        return h.hexdigest()
    p = Path(path)
    try:
        if p.is_dir():
            # One DICOM series per folder (images.read_image): the folder's own files, by name.
            for child in sorted(c for c in p.iterdir() if c.is_file()):
                h.update(child.name.encode("utf-8", "surrogateescape") + b"\0")
                _hash_file(h, child)
                h.update(b"\0")
            return h.hexdigest()
        _hash_file(h, p)
        pattern = _DATA_FILE_LINE.get(p.suffix.lower())
        if pattern is not None:
            match = pattern.search(p.read_text(encoding="latin-1"))
            name = match.group(1) if match else ""
            if name and name != "LOCAL" and (p.parent / name).is_file():
                h.update(b"\0data\0")
                _hash_file(h, p.parent / name)
    except OSError as exc:
        h = hashlib.sha256(f"unreadable: {type(exc).__name__}".encode())
    return h.hexdigest()


def input_digest(job: Mapping[str, Any], bundle: str, *, stability: bool) -> str:
    """The fingerprint of one case's results row.

    Args:
        job: the case (``rows.job_from_cohort_row``): image, mask, segment, spacing_mm, clinical.
        bundle: the content digest of the bundle that predicts it (``Predictor.bundle_digest``,
            from ``bundle.trust``: manifest.json and every file).
        stability: whether the row holds the contour-stability columns.

    Returns:
        The lowercase hex digest (64 characters).
    """
    spacing = job.get("spacing_mm")
    parts = {
        "fingerprint": FINGERPRINT_VERSION,
        "image": file_digest(job.get("image")),
        "mask": file_digest(job.get("mask")),
        "segment": job.get("segment") or "",
        "spacing_mm": "" if spacing is None else repr(float(spacing)),
        "clinical": sorted((str(k), str(v)) for k, v in (job.get("clinical") or {}).items()),
        "bundle": bundle,
        "stability": bool(stability),
    }
    if job.get("site") is not None:  # a harmonising bundle: the site changes the prediction
        parts["site"] = str(job["site"])
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()
