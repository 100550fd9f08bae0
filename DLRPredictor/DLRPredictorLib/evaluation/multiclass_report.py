"""The K-class report: index.html, CSV tables, PNG figures and metrics.json of
:func:`.multiclass.evaluate_multiclass`, written like the binary report (:mod:`.report`)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..base.json_values import to_json_value
from ..base.version import __version__
from . import multiclass_figures
from .multiclass import evaluate_multiclass
from .report import _check_destination, write_staged
from .report_html import _ci, _fmt, _html_table, page_start

TABLES = (
    "multiclass_metrics.csv",
    "multiclass_summary.csv",
    "confusion_matrix.csv",
    "multiclass_calibration.csv",
    "metrics.json",
)
_PROPORTIONS = ("sensitivity", "specificity", "ppv", "npv")


def per_class_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per class (vs rest): counts, AUC with its intervals, proportions, calibration."""
    rows = []
    for r in result["per_class"]:
        row = {k: v for k, v in r.items() if k != "calibration"}
        cal = r["calibration"] or {}
        row["calibration_slope"] = cal.get("slope", float("nan"))
        row["calibration_intercept"] = cal.get("intercept", float("nan"))
        row["brier"] = cal.get("brier", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """The whole-endpoint numbers: accuracy, balanced accuracy, macro/micro AUC, multinomial Brier."""
    nan = float("nan")
    return pd.DataFrame(
        [
            ("accuracy", result["accuracy"], result["accuracy_ci_low"], result["accuracy_ci_high"]),
            ("balanced_accuracy", result["balanced_accuracy"], nan, nan),
            ("macro_auc", result["macro_auc"], nan, nan),
            ("micro_auc", result["micro_auc"], result["micro_auc_ci_low"], result["micro_auc_ci_high"]),
            ("multinomial_brier", result["multinomial_brier"], nan, nan),
        ],
        columns=["metric", "value", "ci_low", "ci_high"],
    )


def confusion_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """Counts: rows are the true classes, columns the predicted ones."""
    names = result["classes"]
    return pd.DataFrame(result["confusion"], index=pd.Index(names, name="true \\ predicted"), columns=names)


def calibration_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """The per-class calibration curves, one row per non-empty bin."""
    rows = [
        {"class": r["class"], **b}
        for r in result["per_class"]
        if r["calibration"] is not None
        for b in r["calibration"]["bins"]
    ]
    return pd.DataFrame(rows, columns=["class", "mean_predicted", "observed", "count"])


def _page(
    result: Mapping[str, Any], metrics: pd.DataFrame, title: str, notes: list[str], figures: list[str]
) -> str:
    esc = html.escape
    per_class = _html_table(
        [
            "Class",
            "Cases",
            "AUC vs rest [95% CI]",
            "Sensitivity",
            "Specificity",
            "PPV",
            "NPV",
            "Brier",
            "Cal. slope",
            "Cal. intercept",
        ],
        [
            [
                esc(str(r["class"])),
                _fmt(r["n_positive"]),
                _ci(r, "auc"),
                *(_ci(r, k) for k in _PROPORTIONS),
                _fmt(r["brier"]),
                _fmt(r["calibration_slope"], 2),
                _fmt(r["calibration_intercept"], 2),
            ]
            for _, r in metrics.iterrows()
        ],
    )
    summary = _html_table(
        ["Metric", "Value", "95% CI"],
        [
            [
                esc(str(r["metric"])),
                _fmt(r["value"]),
                "n/a" if np.isnan(r["ci_low"]) else f"{_fmt(r['ci_low'])}-{_fmt(r['ci_high'])}",
            ]
            for _, r in summary_table(result).iterrows()
        ],
    )
    names = result["classes"]
    confusion = _html_table(
        ["true \\ predicted", *names],
        [[esc(n), *(str(c) for c in row)] for n, row in zip(names, result["confusion"])],
    )
    warnings_html = "".join(f"<li>{esc(w)}</li>" for w in result["warnings"]) or "<li>none</li>"
    notes_html = "".join(f"<li>{esc(n)}</li>" for n in notes) or "<li>none</li>"
    figs_html = "".join(f'<figure><img src="{esc(f)}" alt="{esc(f)}"></figure>' for f in figures)
    files_html = ", ".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in (*TABLES, *figures))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""{page_start(title or "DLRPredictor evaluation, K classes")}
<p>Generated {generated} by DLRPredictor {esc(__version__)}. Cases: {result["n"]}; classes, in
their declared order: {esc(", ".join(names))}. Decision rule: {esc(result["decision_rule"])}.</p>
<h2>Warnings</h2><ul>{warnings_html}</ul>
<h2>Notes</h2><ul>{notes_html}</ul>
<h2>Whole endpoint</h2>
{summary}
<p>Accuracy: 95% Wilson interval. Balanced accuracy: mean of the per-class sensitivities. Macro AUC:
mean of the one-vs-rest AUCs. Micro AUC: AUC of all (case, class) cells pooled, its interval
clustered by case (Obuchowski). Multinomial Brier: mean over cases of the summed squared errors of the
K probabilities (0 perfect, 2 worst).</p>
<h2>Each class against the rest</h2>
{per_class}
<p>AUC 95% CI: DeLong, Wald interval clipped to [0, 1]. Sensitivity etc. of "predicted class = this
class" under the decision rule, with 95% Wilson intervals. Calibration of the class's probability
against "this class or not": slope from logit(P) = a + b logit(p), intercept with the slope fixed at
1, Brier score of that probability.</p>
<h2>Confusion matrix</h2>
{confusion}
<h2>Figures</h2>
{figs_html}
<h2>Files</h2><p>{files_html}</p>
</body></html>
"""


def write_multiclass_report(
    report_dir: str | Path,
    labels: Sequence[object] | np.ndarray,
    prob: object,
    classes: Sequence[str],
    cutoffs: Mapping[str, float] | None = None,
    *,
    clusters: Sequence[object] | np.ndarray | None = None,
    title: str = "",
    notes: list[str] | None = None,
) -> Path:
    """Write the K-class report folder (see :data:`TABLES` and :data:`.multiclass_figures.FIGURES`).

    Args:
        report_dir: destination folder; a previous report there is replaced, any other non-empty
            folder is refused. Written into a temporary sibling and renamed at the end.
        labels, prob, classes, cutoffs, clusters: see :func:`.multiclass.evaluate_multiclass`.
        title: page title.
        notes: lines shown in the notes (e.g. rows dropped).

    Returns:
        The report folder.

    Raises:
        InputError: invalid inputs or destination.
    """
    target = Path(report_dir).expanduser().resolve()
    replace = _check_destination(target)
    result = evaluate_multiclass(labels, prob, classes, cutoffs, clusters)
    all_notes = list(notes or [])
    if clusters is not None:
        all_notes.append(
            "Clustered (Obuchowski) per-class AUC intervals: auc_clustered_* in multiclass_metrics.csv; "
            "the micro AUC interval is clustered by the same ids."
        )

    def write(tmp: Path) -> None:
        metrics = per_class_table(result)
        metrics.to_csv(tmp / TABLES[0], index=False)
        summary_table(result).to_csv(tmp / TABLES[1], index=False)
        confusion_table(result).to_csv(tmp / TABLES[2])
        calibration_table(result).to_csv(tmp / TABLES[3], index=False)
        payload = {
            "title": title,
            "generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "software": {"dlrpredictor": __version__},
            **result,
            "notes": all_notes,
        }
        (tmp / TABLES[4]).write_text(json.dumps(to_json_value(payload), indent=1, allow_nan=False))
        figures = multiclass_figures.write_figures(result, tmp)
        (tmp / "index.html").write_text(_page(result, metrics, title, all_notes, figures), encoding="utf-8")

    write_staged(target, replace, write)
    return target
