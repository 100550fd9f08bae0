"""K-class report from a predictions CSV (``dlrpredictor report PRED.csv --classes a,b,c``).

Column scheme: ``probability:<class>`` for every declared class (the class's probability) and a
label column holding class names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.errors import InputError
from ..base.labels import label_key
from ..base.outputs import refuse_overwriting_inputs
from .multiclass import ROW_SUM_TOL, check_classes
from .multiclass_report import write_multiclass_report
from .report_csv import _read_csv, _row_number, drop_error_rows

PREFIX = "probability:"


def probability_column(name: str) -> str:
    """The CSV column holding the probability of class ``name``."""
    return f"{PREFIX}{name}"


def report_from_multiclass_csv(
    csv_path: str | Path,
    classes: Sequence[str],
    report_dir: str | Path,
    label_column: str = "label",
    *,
    cutoffs: Mapping[str, float] | None = None,
    cluster_column: str | None = None,
    title: str | None = None,
    prefix: str = PREFIX,
) -> Path:
    """K-class report from a CSV with ``probability:<class>`` columns and a label column of class names.

    Rows whose ``status`` column (if present) is ``error`` are excluded; rows with a missing label
    or a missing class probability are dropped (counted in the notes). A label that is not a
    declared class is refused with its row.

    Args:
        csv_path: the CSV file.
        classes: the declared classes, in order.
        report_dir: destination folder of the report.
        label_column: the column of class names.
        cutoffs: class -> cutoff of the decision rule (default: argmax).
        cluster_column: a column of cluster (patient) ids: clustered AUC intervals (ids are
            used for grouping only and never written).
        title: page title (default "Evaluation of <file name>").
        prefix: the class probability columns' prefix (``score_dl:`` reads a DLR bundle's DL
            signature's probabilities; default ``probability:``, the answer).

    Returns:
        The report folder.

    Raises:
        InputError: unreadable file, missing columns, undeclared labels, bad probabilities.
    """
    csv_path = Path(csv_path)
    refuse_overwriting_inputs({"--report": report_dir}, [csv_path])
    names = check_classes(classes)
    df = _read_csv(csv_path)
    prob_cols = [f"{prefix}{n}" for n in names]
    wanted = [label_column, *prob_cols, *([cluster_column] if cluster_column else [])]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise InputError(
            f"Column(s) {missing} not found in {csv_path.name}; a K-class file has a label column and "
            f"'{prefix}<class>' for each declared class. Available columns: {list(df.columns)}."
        )
    notes = [f"{len(df)} rows read from {csv_path.name}; classes in order: {', '.join(names)}."]
    df = drop_error_rows(df, notes)
    numeric = df[prob_cols].apply(pd.to_numeric, errors="coerce")
    bad = df[prob_cols].notna() & ~np.isfinite(numeric)
    if bad.to_numpy().any():
        row = bad.any(axis=1).idxmax()
        col = bad.loc[row].idxmax()
        raise InputError(
            f"Column '{col}' holds '{df.at[row, col]}' on row {_row_number(row)} of {csv_path.name}; "
            "class probabilities must be numbers."
        )
    keys = {label_key(n) for n in names}
    present = df[label_column].dropna()
    unknown = present[~present.map(label_key).isin(keys)]
    if not unknown.empty:
        i = unknown.index[0]
        raise InputError(
            f"{csv_path.name} row {_row_number(i)}: label '{unknown[i]}' in column '{label_column}' is "
            f"not one of the declared classes {names} ({unknown.size} such row(s)); correct it or "
            "declare its class (--classes)."
        )
    complete = df[label_column].notna() & numeric.notna().all(axis=1)
    if (~complete).any():
        notes.append(f"{int((~complete).sum())} rows with a missing label or class probability dropped.")
    if not complete.any():
        raise InputError(f"No rows of {csv_path.name} have a label and every class probability.")
    sums = numeric[complete].sum(axis=1)
    off = sums[(sums - 1.0).abs() > ROW_SUM_TOL]
    if not off.empty:  # named by file row here; evaluate_multiclass checks the same again
        raise InputError(
            f"{csv_path.name} row {_row_number(off.index[0])}: the class probabilities sum to "
            f"{off.iloc[0]:.6g}, not 1 ({off.size} such row(s)); give '{prefix}<class>' for every "
            "class, summing to 1."
        )
    clusters = None
    if cluster_column is not None:
        clusters = df.loc[complete, cluster_column].fillna("").to_numpy(dtype=object)
        notes.append(f"Clustered statistics by column '{cluster_column}' (ids used for grouping only).")
    return write_multiclass_report(
        report_dir,
        df.loc[complete, label_column].to_numpy(dtype=object),
        numeric[complete].to_numpy(dtype=float),
        names,
        cutoffs,
        clusters=clusters,
        title=title if title is not None else f"Evaluation of {csv_path.name}",
        notes=notes,
    )
