"""Performance per subgroup (scanner, site, dataset): AUC with its DeLong CI, n and events.

A group with one class only has no AUC (the row says why); a group with fewer than
``MIN_PER_CLASS`` cases of either class gets its AUC with a note that the Wald CI is unreliable
there. Groups are compared descriptively: no test between groups is made.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import InputError
from ..base.labels import validate_labels
from .auc import auc_delong
from .validation import validate_scores

#: Fewer positives or negatives than this in a group: the DeLong CI is flagged as unreliable.
MIN_PER_CLASS = 10
COLUMNS = ("score", "group", "n", "events", "auc", "ci_low", "ci_high", "note")


def subgroup_rows(
    y: Sequence[int] | np.ndarray,
    scores: Mapping[str, Sequence[float] | np.ndarray],
    groups: Sequence[Any] | np.ndarray,
) -> list[dict[str, Any]]:
    """One row per (score, group): n, events (positives), AUC and its 95% DeLong CI, and a note.

    Args:
        y: 0/1 labels.
        scores: name -> one score per case.
        groups: one group value per case (e.g. the scanner).

    Returns:
        Rows with the keys of ``COLUMNS``, groups in sorted order, then an "all" row per score.

    Raises:
        InputError: mismatched lengths or invalid labels / scores.
    """
    lab = validate_labels(y)
    g = np.array([str(v) for v in np.asarray(groups, dtype=object).tolist()])
    if g.shape != lab.shape:
        raise InputError(f"{g.size} group values for {lab.size} cases; give one per case")
    out: list[dict[str, Any]] = []
    for name, raw in scores.items():
        s = validate_scores(raw, lab.size, name)
        for value in [*sorted(set(g.tolist())), None]:
            keep = np.ones(lab.size, bool) if value is None else g == value
            out.append(_row(name, "all" if value is None else value, lab[keep], s[keep]))
    return out


def _row(name: str, group: str, y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    n, events = int(y.size), int(y.sum())
    row: dict[str, Any] = {"score": name, "group": group, "n": n, "events": events}
    if events in (0, n):
        return {**row, "auc": None, "ci_low": None, "ci_high": None, "note": "one class only: no AUC"}
    res = auc_delong(y, s)
    few = min(events, n - events) < MIN_PER_CLASS
    note = f"fewer than {MIN_PER_CLASS} cases of a class: CI unreliable" if few else ""
    return {**row, "auc": res.auc, "ci_low": res.ci_low, "ci_high": res.ci_high, "note": note}


def write_subgroups(folder: Path, rows: list[dict[str, Any]], column: str) -> None:
    """``subgroups.csv`` in a report folder; the group column is named after the grouping column."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(COLUMNS)).rename(columns={"group": column})
    frame.to_csv(folder / "subgroups.csv", index=False)


def subgroups_html(rows: list[dict[str, Any]], column: str) -> str:
    """An HTML section with the per-group table, for the report page."""

    def cell(v: Any, digits: int = 3) -> str:
        return "n/a" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else html.escape(str(v)))

    head = "".join(
        f"<th>{html.escape(h)}</th>" for h in ("score", column, "n", "events", "AUC (95% CI)", "note")
    )
    body = "".join(
        f"<tr><td>{cell(r['score'])}</td><td>{cell(r['group'])}</td><td>{r['n']}</td><td>{r['events']}</td>"
        f"<td>{cell(r['auc'])} ({cell(r['ci_low'])}-{cell(r['ci_high'])})</td><td>{cell(r['note'])}</td></tr>"
        for r in rows
    )
    return (
        f"<h2>Per {html.escape(column)}</h2><p>AUC with its 95% DeLong CI within each value of "
        f"'{html.escape(column)}' (descriptive; no test between groups).</p>"
        f"<table><tr>{head}</tr>{body}</table>"
    )


def add_section(page: str, section: str) -> str:
    """The report page with ``section`` inserted before its closing body tag (or appended)."""
    at = page.rfind("</body>")
    return page + section if at < 0 else page[:at] + section + page[at:]


def group_values(
    frame: Any, column: str, by_case: Mapping[str, str] | None = None, *, file_name: str = ""
) -> np.ndarray:
    """The group value of each row of a predictions table, as text ("(missing)" when empty).

    Args:
        frame: the predictions DataFrame.
        column: its group column; or, with ``by_case``, the manifest column the values came from.
        by_case: case_id -> group value (e.g. read from the cohort manifest), joined on the
            table's ``case_id`` column.
        file_name: the table's file, for messages.

    Raises:
        InputError: when the column (or the case_id column for ``by_case``) is absent.
    """
    if by_case is not None:
        if "case_id" not in frame.columns:
            raise InputError(f"{file_name or 'the predictions'} has no case_id column to join '{column}' on")
        raw = frame["case_id"].map(lambda c: by_case.get(str(c), ""))
    elif column in frame.columns:
        raw = frame[column]
    else:
        raise InputError(
            f"Group column '{column}' not found in {file_name or 'the predictions'}; available columns: "
            f"{list(frame.columns)}."
        )
    text = raw.fillna("").astype(str).str.strip()
    return np.where(text == "", "(missing)", text).astype(str)
