"""Cohort manifests with several named inputs per case (views, modalities).

Column scheme (a one-input manifest, with plain ``image`` / ``mask`` columns, is read by
``cohort_csv`` exactly as before and never reaches this module):

- ``image:NAME`` and ``mask:NAME``: the image and lesion mask of input NAME (e.g. ``image:US``,
  ``mask:US``, ``image:MG``, ``mask:MG``); NAME is 1-32 letters, digits or ``_``;
- optional ``segment:NAME`` (segment name of a ``.seg.nrrd`` mask) and ``spacing_mm:NAME``
  (pixel size of a 2D file without spacing; a plain ``spacing_mm`` column applies to every input
  without its own);
- ``case_id``, ``label``, ``patient_id`` and clinical columns as in a one-input manifest.

A case lacking an input leaves both its cells empty; an image without its mask (or the reverse)
is refused with its row. Paths resolve as in ``cohort_csv`` (relative to the manifest's folder,
lexically, no link following).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import ManifestError
from .cohort_csv import CohortRow, read_cohort_csv, resolve_path
from .spacing import parse_spacing_mm

#: Per-input column kinds, written ``KIND:NAME``.
INPUT_COLUMN_KINDS = ("image", "mask", "segment", "spacing_mm")
INPUT_NAME = re.compile(r"^[A-Za-z0-9_]{1,32}$")


@dataclass(frozen=True)
class MultiInputRow:
    """One case of a multi-input manifest.

    Attributes:
        row_number: row in the file (header = row 1).
        case_id: the case (lesion) identifier, unique in the manifest.
        inputs: input name -> that input's row (a ``CohortRow`` with this case's id, label and
            patient), only for the inputs the case has.
        label: 1 / 0 / None, as in ``CohortRow``.
        label_raw: the label cell as written, or None.
        patient_id: the patient identifier, or None.
        clinical: clinical column -> value as written.
        extra: other columns (not per-input, not clinical) -> value.
    """

    row_number: int
    case_id: str
    inputs: dict[str, CohortRow]
    label: int | None = None
    label_raw: str | None = None
    patient_id: str | None = None
    clinical: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)


def check_input_name(name: Any, where: str) -> str:
    """The input name if it is 1-32 letters, digits or ``_``.

    Raises:
        ManifestError: naming ``where``.
    """
    if not isinstance(name, str) or not INPUT_NAME.match(name):
        raise ManifestError(f"{where}: input name {name!r} must be 1-32 letters, digits or '_'")
    return name


def input_columns(columns: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per-input columns of a header: input name -> {kind: column}, inputs in header order.

    Raises:
        ManifestError: a ``KIND:NAME`` column with a bad name.
    """
    out: dict[str, dict[str, str]] = {}
    for col in columns:
        kind, sep, name = col.partition(":")
        if sep and kind in INPUT_COLUMN_KINDS:
            check_input_name(name, f"column '{col}'")
            out.setdefault(name, {})[kind] = col
    return out


def is_multi_input_manifest(path: Path | str) -> bool:
    """Whether the manifest names its inputs (``image:NAME`` columns).

    Raises:
        ManifestError: an unreadable or malformed manifest (as ``read_cohort_csv``).
    """
    rows = read_cohort_csv(path, required=(), clinical_names=())
    return any(kinds.get("image") for kinds in input_columns(list(rows[0].extra)).values())


def read_multi_input_csv(
    path: Path | str,
    input_names: Sequence[str] | None = None,
    clinical_names: Sequence[str] = (),
    *,
    required_inputs: Sequence[str] = (),
    require_label: bool = False,
    label_values: Mapping[str, int] | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[MultiInputRow]:
    """Read and validate a multi-input cohort manifest.

    Args:
        path: the CSV file.
        input_names: the inputs the bundle declares (None: every ``image:NAME`` of the header).
            A declared input without an ``image:NAME`` column is refused; inputs of the file that
            are not declared are reported through ``warn`` and ignored.
        clinical_names: the bundle's clinical variables.
        required_inputs: inputs every case must have.
        require_label: every row needs a label (training).
        label_values: accepted label texts besides 0/1 (``cohort_csv.read_cohort_csv``).
        warn: called once per ignored column.

    Returns:
        One row per case, in file order.

    Raises:
        ManifestError: the errors of ``read_cohort_csv``, no ``image:NAME`` column, a declared
            input missing from the header, an image without its mask (or the reverse), a case
            without a required input or without any input, a bad per-input spacing.
    """
    path = Path(path)
    base = read_cohort_csv(
        path,
        required=("case_id", "label") if require_label else ("case_id",),
        clinical_names=list(clinical_names),
        label_values=label_values,
    )
    header = list(base[0].extra) + list(base[0].clinical)
    found = input_columns(header)
    names = list(found) if input_names is None else list(input_names)
    if not names or not any(found.get(n, {}).get("image") for n in names):
        raise ManifestError(
            f"manifest '{path.name}' has no 'image:NAME' column; a multi-input manifest names each "
            f"input's image and mask as image:NAME and mask:NAME"
        )
    for n in names:
        kinds = found.get(n, {})
        if "image" not in kinds or "mask" not in kinds:
            raise ManifestError(
                f"manifest '{path.name}' lacks the column(s) image:{n} and/or mask:{n} of the input '{n}'"
            )
    per_input = {c for n in names for c in found.get(n, {}).values()}
    if warn is not None:
        for n in found:
            if n not in names:
                warn(f"input '{n}' is not an input of this bundle; its columns are ignored")
        for col in base[0].extra:
            if col not in per_input and col != "dataset" and ":" not in col:
                warn(f"column '{col}' is not a clinical variable of this bundle; it is ignored")
    return [_row(path, r, names, found, required_inputs) for r in base]


def _row(
    path: Path,
    r: CohortRow,
    names: list[str],
    found: dict[str, dict[str, str]],
    required_inputs: Sequence[str],
) -> MultiInputRow:
    where = f"manifest '{path.name}' row {r.row_number} (case '{r.case_id}')"
    inputs: dict[str, CohortRow] = {}
    for n in names:
        cols = found[n]
        image, mask = r.extra.get(cols["image"], ""), r.extra.get(cols["mask"], "")
        if not image and not mask:
            continue
        if not image or not mask:
            raise ManifestError(
                f"{where} has the {'image' if image else 'mask'} of input '{n}' but not its "
                f"{'mask' if image else 'image'}; give both or neither"
            )
        spacing_text = r.extra.get(cols.get("spacing_mm", ""), "")
        spacing = parse_spacing_mm(spacing_text, where, ManifestError) if spacing_text else r.spacing_mm
        inputs[n] = CohortRow(
            row_number=r.row_number,
            case_id=r.case_id,
            image=image,
            mask=mask,
            resolved_image=resolve_path(path.parent, image),
            resolved_mask=resolve_path(path.parent, mask),
            segment=r.extra.get(cols.get("segment", ""), "") or r.segment,
            spacing_mm=spacing,
            label=r.label,
            label_raw=r.label_raw,
            patient_id=r.patient_id,
            clinical=dict(r.clinical),
            extra={k: v for k, v in r.extra.items() if ":" not in k},
        )
    missing = [n for n in required_inputs if n not in inputs]
    if missing:
        raise ManifestError(f"{where} lacks the required input(s) {', '.join(missing)}")
    if not inputs:
        raise ManifestError(f"{where} has none of the inputs {', '.join(names)}")
    return MultiInputRow(
        row_number=r.row_number,
        case_id=r.case_id,
        inputs=inputs,
        label=r.label,
        label_raw=r.label_raw,
        patient_id=r.patient_id,
        clinical=dict(r.clinical),
        extra={k: v for k, v in r.extra.items() if ":" not in k},
    )
