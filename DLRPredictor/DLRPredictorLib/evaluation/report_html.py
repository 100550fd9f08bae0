"""The report's index.html: a self-contained page showing the tables and the PNG figures."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from ..base.version import __version__
from .report_tables import TABLES


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.{digits}f}"


def _fmt_p(p: Any) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "&lt;0.001" if p < 0.001 else f"{p:.3f}"


def _ci(row: Mapping[str, Any], key: str) -> str:
    return f"{_fmt(row[key])} [{_fmt(row[key + '_ci_low'])}-{_fmt(row[key + '_ci_high'])}]"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(
    result: Mapping[str, Any], metrics: pd.DataFrame, title: str, notes: list[str], figures: list[str]
) -> str:
    """The page: notes, the metrics and DeLong tables, the figures and links to every file."""
    esc = html.escape
    metric_rows = []
    for _, r in metrics.iterrows():
        metric_rows.append(
            [
                esc(str(r["score"])),
                _ci(r, "auc"),
                _fmt(r["cutoff"], 4),
                esc(str(r["cutoff_source"])),
                _ci(r, "sensitivity"),
                _ci(r, "specificity"),
                _ci(r, "ppv"),
                _ci(r, "npv"),
                _ci(r, "accuracy"),
                _fmt(r["brier"]),
                _fmt(r["calibration_slope"], 2),
                _fmt(r["calibration_intercept"], 2),
                _fmt_p(r["hl_p"]),
            ]
        )
    metrics_html = _html_table(
        [
            "Score",
            "AUC [95% CI]",
            "Cutoff",
            "Cutoff source",
            "Sensitivity",
            "Specificity",
            "PPV",
            "NPV",
            "Accuracy",
            "Brier",
            "Cal. slope",
            "Cal. intercept",
            "HL p",
        ],
        metric_rows,
    )
    delong_rows = [
        [
            esc(d["score_a"]),
            esc(d["score_b"]),
            _fmt(d["auc_a"]),
            _fmt(d["auc_b"]),
            _fmt(d["diff"]),
            _fmt(d["z"], 2),
            _fmt_p(d["p"]),
        ]
        for d in result["delong"]
    ]
    delong_html = (
        _html_table(["Score A", "Score B", "AUC A", "AUC B", "Difference", "z", "p"], delong_rows)
        if delong_rows
        else "<p>Only one score: no comparison.</p>"
    )
    notes_html = "".join(f"<li>{esc(n)}</li>" for n in notes) or "<li>none</li>"
    figs_html = "".join(f'<figure><img src="{esc(f)}" alt="{esc(f)}"></figure>' for f in figures)
    files_html = ", ".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in (*TABLES, *figures))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title or "DLRPredictor evaluation")}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; }}
th {{ background: #eee; }}
figure {{ display: inline-block; margin: 0.5em; }}
img {{ max-width: 600px; }}
</style></head><body>
<h1>{esc(title or "DLRPredictor evaluation")}</h1>
<p>Generated {generated} by DLRPredictor {esc(__version__)}. Cases: {result["n"]}
({result["n_positive"]} positive, {result["n_negative"]} negative; prevalence
{_fmt(result["prevalence"])}).</p>
<h2>Notes</h2><ul>{notes_html}</ul>
<h2>Discrimination, cutoff metrics and calibration</h2>
{metrics_html}
<p>AUC 95% CI: DeLong standard error, Wald interval clipped to [0, 1]. Proportions: 95% Wilson score
intervals. A case is positive when score &ge; cutoff. Calibration slope from logit(P) = a + b logit(p);
intercept = calibration-in-the-large (slope fixed at 1). HL: Hosmer-Lemeshow over deciles of risk.</p>
<h2>Paired DeLong comparisons</h2>
{delong_html}
<h2>Figures</h2>
{figs_html}
<h2>Files</h2><p>{files_html}</p>
</body></html>
"""
