"""Cohort manifest CSV: validation and path resolution.

Columns (header names exact, surrounding spaces ignored):
- ``case_id`` (unique, non-empty), ``image``, ``mask``: required by default;
- optional ``segment``, ``spacing_mm`` (positive mm), ``label``, ``patient_id``;
- any other column is a clinical value, kept as text and checked later against the bundle.

The file is UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8"); the delimiter is
``,``, ``;`` (European Excel) or a tab, detected from the header row.

Paths: an absolute path is used as written. A relative path is joined to the manifest's folder
and normalised lexically (``a/../b`` -> ``b``); it may lead outside that folder (cohorts often
live in a sibling data folder, ``../data/case1.png``), but nothing is expanded or followed: no
``~``, no environment variables, no resolution of symbolic links, so the file read is the one
the manifest names. On POSIX systems a backslash in a path is taken as a folder separator, so
that manifests written on Windows work. A missing file is not a manifest error: it becomes that
case's error when the case is processed.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..base.case_ids import case_id_problem
from ..base.errors import ManifestError
from ..base.labels import code_label, label_codes
from .spacing import parse_spacing_mm

#: Column names with a fixed meaning; every other column is a clinical value.
RESERVED_COLUMNS = ("case_id", "image", "mask", "segment", "spacing_mm", "label", "patient_id")
_DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True)
class CohortRow:
    """One case of a cohort manifest.

    Attributes:
        row_number: row in the file, the header being row 1 (as a spreadsheet shows it).
        case_id: the case identifier (unique in the manifest).
        image: the image path as written.
        mask: the mask path as written ("" when the column is absent and not required).
        resolved_image: the image path resolved as described in the module notes.
        resolved_mask: the mask path resolved likewise, or None when absent.
        segment: segment name for .seg.nrrd masks, or None.
        spacing_mm: pixel size in mm for files without spacing, or None.
        label: 1 (positive class) / 0, or None when the manifest has no label for the case.
        label_raw: the label cell as written, or None.
        patient_id: the patient (group) identifier, or None.
        clinical: clinical column -> value as written ("" when empty), for the columns the caller
            declared (or every other column when the caller declared none, see read_cohort_csv).
        extra: other columns -> value: not clinical variables of the bundle, ignored.
    """

    row_number: int
    case_id: str
    image: str
    mask: str
    resolved_image: Path | None
    resolved_mask: Path | None
    segment: str | None = None
    spacing_mm: float | None = None
    label: int | None = None
    label_raw: str | None = None
    patient_id: str | None = None
    clinical: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)


def read_cohort_csv(
    path: Path | str,
    required: Sequence[str] = ("case_id", "image", "mask"),
    clinical_names: Sequence[str] | None = (),
    *,
    label_values: Mapping[str, int] | None = None,
    code_labels: bool = True,
    warn: Callable[[str], None] | None = None,
) -> list[CohortRow]:
    """Read and validate a cohort manifest CSV.

    Args:
        path: the CSV file.
        required: columns that must be present and non-empty in every row (add "label" for
            training and evaluation).
        clinical_names: the bundle's clinical variable names; other unreserved columns are
            reported through ``warn`` and kept in ``CohortRow.extra``. None accepts every
            unreserved column as clinical (e.g. before a bundle exists).
        label_values: accepted label texts besides "0"/"1", e.g. {"malignant": 1, "benign": 0}
            (the bundle's positive class -> 1); read by ``base.labels.code_label`` (case and
            surrounding blanks ignored, any other text refused with its row).
        code_labels: False for a K-class endpoint: ``label`` stays None and ``label_raw`` holds
            the class name, which the caller reads against its declared classes.
        warn: called once per unknown column with a message for the user.

    Returns:
        One row per case, in file order.

    Raises:
        ManifestError: unreadable or empty file, missing columns, empty required or case_id
            cells, duplicate case ids, a case id with a control character or a leading
            ``= + - @`` (``base.case_ids``), a NUL character anywhere, a bad spacing_mm or label.
    """
    path = Path(path)
    name = path.name
    header, records = _read_table(path)
    present = [h for h in header if h]
    missing = [c for c in required if c not in present]
    if missing:
        raise ManifestError(
            f"manifest '{name}' lacks the column(s) {', '.join(missing)}; its columns are: "
            f"{', '.join(present) or '(none)'}"
        )
    dupes = sorted({h for h in present if present.count(h) > 1})
    if dupes:
        raise ManifestError(f"manifest '{name}' has the column(s) {', '.join(dupes)} more than once")

    others = [h for h in present if h not in RESERVED_COLUMNS]
    known = set(others if clinical_names is None else clinical_names)
    for col in others:
        if col not in known and warn is not None:
            close = difflib.get_close_matches(col, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            warn(f"column '{col}' is not a clinical variable of this bundle{hint}; it is ignored")

    labels = label_codes(label_values) if code_labels else {}
    base = path.parent
    rows: list[CohortRow] = []
    for row_number, cells in records:
        if len(cells) > len(header):
            raise ManifestError(
                f"manifest '{name}' row {row_number} has {len(cells)} values but the header has "
                f"{len(header)} columns (a value with the delimiter in it must be quoted)"
            )
        values = {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header) if h}
        rows.append(_row(name, row_number, values, required=required, known=known, labels=labels, base=base))
    if "case_id" in present:
        _check_unique(name, rows)
    return rows


def _row(
    name: str,
    row_number: int,
    values: dict[str, str],
    *,
    required: Sequence[str],
    known: set[str],
    labels: dict[str, int],
    base: Path,
) -> CohortRow:
    case_id = values.get("case_id", "")
    where = f"manifest '{name}' row {row_number}" + (f" (case '{case_id}')" if case_id else "")
    if "case_id" in values and not case_id:
        raise ManifestError(f"manifest '{name}' row {row_number} has an empty case_id; every case needs one")
    problem = case_id_problem(case_id) if case_id else None
    if problem:
        # the id is not repeated: it is what cannot be printed or written safely
        raise ManifestError(f"manifest '{name}' row {row_number}: the case_id {problem}")
    for col in required:
        if not values.get(col):
            raise ManifestError(f"{where} has an empty '{col}' cell")

    spacing = None
    if values.get("spacing_mm"):
        spacing = parse_spacing_mm(values["spacing_mm"], where, ManifestError)

    label = None
    label_raw = values.get("label") or None
    if label_raw is not None and labels:
        label = code_label(label_raw, labels)
        if label is None:
            accepted = ", ".join(f"'{k}'" for k in labels)
            raise ManifestError(f"{where}: label '{label_raw}' is not one of {accepted}")

    image, mask = values.get("image", ""), values.get("mask", "")
    return CohortRow(
        row_number=row_number,
        case_id=case_id,
        image=image,
        mask=mask,
        resolved_image=resolve_path(base, image) if image else None,
        resolved_mask=resolve_path(base, mask) if mask else None,
        segment=values.get("segment") or None,
        spacing_mm=spacing,
        label=label,
        label_raw=label_raw,
        patient_id=values.get("patient_id") or None,
        clinical={k: v for k, v in values.items() if k in known},
        extra={k: v for k, v in values.items() if k not in RESERVED_COLUMNS and k not in known},
    )


def resolve_path(base: Path, value: str) -> Path:
    """Resolve a manifest path as described in the module notes (lexically, no link following).

    Args:
        base: the manifest's folder.
        value: the path as written in the manifest.

    Returns:
        The absolute path if written absolute, else ``base / value`` normalised.
    """
    if os.sep == "/":
        value = value.replace("\\", "/")
    p = Path(value)
    return p if p.is_absolute() else Path(os.path.normpath(base / p))


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header names (stripped) and the non-blank records with their spreadsheet row numbers."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"manifest '{path}' cannot be read ({e.strerror})") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(
            f"manifest '{path.name}' is not UTF-8 text (byte {e.start}); save it as 'CSV UTF-8'"
        ) from e
    if "\x00" in text:
        # csv refuses NUL before Python 3.11 and keeps it since: refused here alike, with its line.
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ManifestError(
            f"manifest '{path.name}' line {line} holds a NUL character; a CSV holds printable text"
        )
    if not text.strip():
        raise ManifestError(
            f"manifest '{path.name}' is empty: it needs a header row (case_id, image, mask, ...) "
            f"and one row per case"
        )
    first_line = text.lstrip("\r\n").splitlines()[0]
    delimiter = max(_DELIMITERS, key=lambda d: len(next(csv.reader([first_line], delimiter=d))))
    try:
        table = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as e:
        raise ManifestError(f"manifest '{path.name}' is not a valid CSV file: {e}") from e
    numbered = [(i + 1, r) for i, r in enumerate(table) if any(c.strip() for c in r)]
    if not numbered:
        raise ManifestError(
            f"manifest '{path.name}' has only blank cells: it needs a header row (case_id, image, mask, "
            f"...) and one row per case"
        )
    header = numbered[0][1]
    records = numbered[1:]
    if not records:
        raise ManifestError(f"manifest '{path.name}' has a header but no case rows")
    return [h.strip() for h in header], records


def _check_unique(name: str, rows: list[CohortRow]) -> None:
    where: dict[str, list[int]] = {}
    for r in rows:
        where.setdefault(r.case_id, []).append(r.row_number)
    dupes = {k: v for k, v in where.items() if len(v) > 1}
    if dupes:
        listed = "; ".join(f"'{k}' (rows {', '.join(map(str, v))})" for k, v in dupes.items())
        raise ManifestError(
            f"manifest '{name}' has duplicate case_id values: {listed}; each case needs its own id"
        )
