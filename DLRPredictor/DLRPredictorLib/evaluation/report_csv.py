"""Evaluation report from any CSV with a label column and score columns (``dlrpredictor report``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.errors import InputError
from ..base.labels import code_label, label_codes, label_key
from ..base.outputs import refuse_overwriting_inputs
from . import subgroups
from .bootstrap import BootstrapSettings
from .report import write_report


def _read_csv(csv_path: Path) -> pd.DataFrame:
    if not csv_path.is_file():
        raise InputError(f"Predictions file not found: {csv_path}.")
    try:
        # Blank lines kept, then dropped: the index + 2 is each row's number in the file, the
        # header being row 1, as the cohort CSV reader and a spreadsheet count them.
        df = pd.read_csv(csv_path, dtype=str, skipinitialspace=True, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read {csv_path} as a CSV file: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.apply(lambda col: col.str.strip())
    return df[df.notna().any(axis=1)]


def _row_number(index: object) -> int:
    return int(str(index)) + 2


def drop_error_rows(df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """The rows whose ``status`` column (if any) is not ``error``; the count dropped goes to ``notes``."""
    if "status" not in df.columns:
        return df
    is_error = df["status"].str.lower().eq("error").fillna(False).astype(bool)
    if is_error.any():
        notes.append(f"{int(is_error.sum())} rows with status=error excluded.")
    return df[~is_error]


def _parse_labels(
    col: pd.Series,
    column: str,
    positive_label: str | int | None,
    negative_label: str | int | None = None,
    *,
    file_name: str = "",
) -> tuple[pd.Series, str]:
    """The label column as 1.0 / 0.0 / NaN (missing), and the note saying how it was read.

    Each label is read by ``base.labels.code_label``, as the cohort CSV reader reads its label
    cells: case and surrounding blanks ignored, numeric 0/1 accepted, any other text refused with
    its row. When only the positive class is named, the negative class is the one other value
    the column holds; several other values are refused (name the negative class).
    """
    present = col.dropna()
    names: dict[str, int] = {}
    if positive_label is not None:
        pos = str(positive_label).strip()
        if not present.map(label_key).eq(label_key(pos)).any():
            values = sorted(present.unique().tolist())
            raise InputError(
                f"The positive label '{pos}' does not occur in column '{column}'; its values are {values}."
            )
        names[pos] = 1
        if negative_label is not None:
            names[str(negative_label).strip()] = 0
        else:
            others = present[present.map(label_key) != label_key(pos)]
            first = others.groupby(others.map(label_key), sort=True).head(1)
            if first.size > 1:
                listed = ", ".join(f"'{v}' (row {_row_number(i)})" for i, v in first.items())
                raise InputError(
                    f"Label column '{column}' holds {first.size} values besides the positive class "
                    f"'{pos}': {listed}; name the negative class (negative_label, --negative) and "
                    "correct the other labels."
                )
            # the other value is the negative class, unless it is 0/1 (already coded)
            names.update({str(v): 0 for v in first.tolist() if code_label(v, label_codes()) is None})
    codes = label_codes(names)
    coded = present.map(lambda v: code_label(v, codes))
    unknown = coded[coded.isna()]
    if not unknown.empty:
        i = unknown.index[0]
        accepted = ", ".join(f"'{k}'" for k in codes)
        hint = "" if names else " Recode it as 0/1 values, or name the positive class (positive_label)."
        raise InputError(
            f"{file_name or 'The predictions file'} row {_row_number(i)}: label '{present[i]}' in "
            f"column '{column}' is not one of {accepted} ({unknown.size} such row(s)).{hint}"
        )
    labels = coded.reindex(col.index).astype(float)  # missing labels: NaN
    if not names:
        return labels, f"Label column '{column}': 1 = positive, 0 = negative."
    counts = present.groupby(present.map(label_key), sort=True).size()
    desc = ", ".join(f"'{k}' = {int(n)}" for k, n in counts.items())
    classes = ", ".join(f"'{k}' = {'positive' if v else 'negative'}" for k, v in label_codes(names).items())
    note = (
        f"Label column '{column}' read without case or surrounding blanks: {classes}; any other "
        f"value is refused (rows per value: {desc})."
    )
    return labels, note


def _row_cutoffs(df: pd.DataFrame, notes: list[str]) -> dict[str, float | np.ndarray]:
    """The 'probability' cutoff from the file's 'cutoff' column: one value, or one per row.

    A results CSV labels each row at the cutoff of the model that answered it (``model_used``);
    scoring every row at one model's cutoff would report metrics of labels nobody was given.
    """
    per_row = pd.to_numeric(df["cutoff"], errors="coerce")
    frozen = per_row.dropna().unique()
    if frozen.size == 1:
        notes.append(f"Cutoff {frozen[0]:.4g} for 'probability' taken from the file's 'cutoff' column.")
        return {"probability": float(frozen[0])}
    if frozen.size == 0 or per_row.isna().any():
        return {}  # no usable cutoff for every row: the report's default applies (and says so)
    if "model_used" in df.columns:
        groups = df.assign(_cut=per_row).groupby(["model_used", "_cut"], sort=True).size()
        used = "; ".join(f"{model}: {c:.4g} ({int(n)} rows)" for (model, c), n in groups.items())
    else:
        used = "; ".join(f"{c:.4g} ({int(n)} rows)" for c, n in per_row.value_counts().sort_index().items())
    notes.append(
        "Each row of 'probability' is called at its own cutoff from the file's 'cutoff' column (the "
        f"cutoff of the model that answered it, as its predicted label was): {used}."
    )
    return {"probability": per_row.to_numpy(dtype=float)}


def _case_column(
    df: pd.DataFrame,
    column: str,
    option: str,
    values_by_case: Mapping[str, Mapping[str, str]] | None,
    file_name: str,
) -> pd.Series:
    """A column of the CSV, or else joined on ``case_id`` from ``values_by_case`` (the manifest)."""
    if column in df.columns:
        return df[column]
    if values_by_case is not None and column in values_by_case and "case_id" in df.columns:
        return df["case_id"].map(values_by_case[column])
    raise InputError(
        f"{option}: column '{column}' not found in {file_name}; available columns: {list(df.columns)}."
    )


def report_from_predictions_csv(
    csv_path: str | Path,
    label_column: str,
    score_columns: Sequence[str],
    report_dir: str | Path,
    positive_label: str | int | None = None,
    *,
    negative_label: str | int | None = None,
    cutoffs: Mapping[str, float] | None = None,
    optimistic_youden: bool = False,
    title: str | None = None,
    cluster_column: str | None = None,
    reader_column: str | None = None,
    clinical_column: str | None = None,
    values_by_case: Mapping[str, Mapping[str, str]] | None = None,
    bootstrap: BootstrapSettings | None = None,
    skip_empty_scores: bool = False,
    group_column: str | None = None,
    group_by_case: Mapping[str, str] | None = None,
) -> Path:
    """Evaluation report from any CSV with a label column and score columns (``dlrpredictor report``).

    Rows whose ``status`` column (if present) is ``error`` are excluded; rows with a missing label or
    a missing value in any of the score columns are dropped, so that all scores are compared on the
    same cases. Both counts appear in the report's notes. When ``probability`` is scored without a
    given cutoff and the CSV has a ``cutoff`` column (a DLRPredictor results CSV: the frozen cutoff
    of the model that answered each row), each row is called at its own cutoff, as its
    ``predicted_label`` was: the combined model's where clinical values were given, the image-only
    model's elsewhere.

    Args:
        csv_path: the CSV file.
        label_column: column with 0/1 labels, or with strings when ``positive_label`` is given.
        score_columns: the score columns to evaluate and compare.
        report_dir: destination folder of the report.
        positive_label: the label value of the positive class.
        negative_label: the label value of the negative class (default: the one other value in
            the column). Labels are compared without case or surrounding blanks; 0/1 are always
            accepted; any other value is refused with its row (``base.labels``).
        cutoffs: score column -> pre-specified cutoff.
        optimistic_youden: see :func:`evaluate_scores`.
        title: page title (default "Evaluation of <file name>").
        cluster_column: a column of cluster ids (patient id): clustered AUC intervals and tests,
            bootstrap by patient. Used for grouping only; no id is written to the report.
        reader_column: a column of the reader's BI-RADS: adds the reader comparison (cases
            without a value are left out of it alone).
        clinical_column: a score column holding a clinical-only model's probability (evaluated
            like the other scores and marked as the clinical-only row of the reader comparison).
        values_by_case: column -> case_id -> value, for cluster / reader columns that are not in
            the CSV (e.g. read from the cohort manifest); joined on the CSV's ``case_id``.
        bootstrap: resamples, seed and level of the bootstrap intervals.
        skip_empty_scores: leave out (with a note) score columns with no value in any usable row,
            such as the combined model's score of a cohort without clinical data; otherwise such
            a column leaves no complete row and is an error.
        group_column: a column whose values are groups (scanner, site): per-group AUCs are
            added (``evaluation.subgroups``).
        group_by_case: case_id -> group value, when the groups are not in the CSV (e.g. read from
            the cohort manifest); joined on its ``case_id`` column.

    Returns:
        The report folder.

    Raises:
        InputError: unreadable file, missing columns (the available ones are listed), labels or
            scores that cannot be used, or no usable rows.
    """
    csv_path = Path(csv_path)
    refuse_overwriting_inputs({"--report": report_dir}, [csv_path])
    score_columns = [str(c).strip() for c in score_columns if str(c).strip()]
    if clinical_column is not None and clinical_column not in score_columns:
        score_columns.append(clinical_column)
    if not score_columns:
        raise InputError("Give at least one score column to evaluate.")
    if len(set(score_columns)) != len(score_columns):
        raise InputError(f"Score columns are repeated: {score_columns}.")
    df = _read_csv(csv_path)
    missing = [c for c in (label_column, *score_columns) if c not in df.columns]
    if missing:
        raise InputError(
            f"Column(s) {missing} not found in {csv_path.name}; available columns: {list(df.columns)}."
        )
    notes = [f"{len(df)} rows read from {csv_path.name}."]
    df = drop_error_rows(df, notes)
    numeric: dict[str, pd.Series] = {}
    for c in score_columns:
        num = pd.to_numeric(df[c], errors="coerce")
        bad = df[c].notna() & ~np.isfinite(num)  # present but not a finite number
        if bad.any():
            first = bad.idxmax()
            raise InputError(
                f"Score column '{c}' has {int(bad.sum())} non-numeric value(s), e.g. '{df.at[first, c]}' "
                f"on row {_row_number(first)} of {csv_path.name}; scores must be numbers."
            )
        numeric[c] = num
    skipped: list[str] = []
    if skip_empty_scores:
        empty = [c for c in score_columns if not numeric[c].notna().any()]
        if empty and len(empty) < len(score_columns):
            skipped = empty
            score_columns = [c for c in score_columns if c not in empty]
            notes.append(f"Score column(s) {empty} have no value in any row and are not evaluated.")
    labels, label_note = _parse_labels(
        df[label_column], label_column, positive_label, negative_label, file_name=csv_path.name
    )
    notes.append(label_note)
    complete = labels.notna()
    for c in score_columns:
        complete &= numeric[c].notna()
    if (~complete).any():
        notes.append(
            f"{int((~complete).sum())} rows with a missing label or score dropped (all scores are "
            "compared on the same cases)."
        )
    if not complete.any():
        raise InputError(f"No rows of {csv_path.name} have both a label and every score {score_columns}.")
    keep = complete.to_numpy()
    clusters = None
    if cluster_column is not None:
        ids = _case_column(df, cluster_column, "--cluster-column", values_by_case, csv_path.name)
        clusters = ids.fillna("").to_numpy(dtype=object)[keep]
        notes.append(f"Clustered statistics by column '{cluster_column}' (ids used for grouping only).")
    reader = None
    if reader_column is not None:
        cells = _case_column(df, reader_column, "--reader-column", values_by_case, csv_path.name)
        reader = cells.to_numpy(dtype=object)[keep]
    cut: dict[str, float | np.ndarray] = {k: v for k, v in (cutoffs or {}).items() if k not in skipped}
    if "probability" in score_columns and "probability" not in cut and "cutoff" in df.columns:
        cut.update(_row_cutoffs(df[complete], notes))
    groups = None
    if group_column is not None:
        groups = subgroups.group_values(df, group_column, group_by_case, file_name=csv_path.name)
    return write_report(
        report_dir,
        labels[complete].to_numpy(dtype=int),
        {c: numeric[c][complete].to_numpy(dtype=float) for c in score_columns},
        cutoffs=cut,
        title=title if title is not None else f"Evaluation of {csv_path.name}",
        notes=notes,
        clusters=clusters,
        reader=reader,
        reader_name=reader_column or "BI-RADS",
        clinical=clinical_column if clinical_column in score_columns else None,
        bootstrap=bootstrap,
        optimistic_youden=optimistic_youden,
        groups=None if groups is None else groups[complete.to_numpy()],
        group_column=group_column or "group",
    )
