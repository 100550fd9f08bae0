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
from .report_tables import TABLES, optional_tables


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


def _span(low: Any, high: Any) -> str:
    lo, hi = _fmt(low), _fmt(high)
    if "n/a" in (lo, hi):
        return "n/a"
    return f"{lo} to {hi}" if lo.startswith("-") or hi.startswith("-") else f"{lo}-{hi}"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page_start(title: str) -> str:
    """A report page from its doctype to its heading: the title and the style every report shares."""
    heading = html.escape(title)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{heading}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; }}
th {{ background: #eee; }}
figure {{ display: inline-block; margin: 0.5em; }}
img {{ max-width: 600px; }}
</style></head><body>
<h1>{heading}</h1>"""


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
    delong_html = _tests_html(result["delong"])
    notes_html = "".join(f"<li>{esc(n)}</li>" for n in notes) or "<li>none</li>"
    figs_html = "".join(f'<figure><img src="{esc(f)}" alt="{esc(f)}"></figure>' for f in figures)
    files = (*TABLES, *optional_tables(result), *figures)
    files_html = ", ".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in files)
    warnings_html = "".join(f"<li>{esc(w)}</li>" for w in result.get("warnings", [])) or "<li>none</li>"
    intervals_html = _intervals_html(result, metrics)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""{page_start(title or "DLRPredictor evaluation")}
<p>Generated {generated} by DLRPredictor {esc(__version__)}. Cases: {result["n"]}
({result["n_positive"]} positive, {result["n_negative"]} negative; prevalence
{_fmt(result["prevalence"])}).</p>
<h2>Warnings</h2><ul>{warnings_html}</ul>
<h2>Notes</h2><ul>{notes_html}</ul>
<h2>Discrimination, cutoff metrics and calibration</h2>
{metrics_html}
<p>AUC 95% CI: DeLong standard error, Wald interval clipped to [0, 1]. Proportions: 95% Wilson score
intervals. A case is positive when score &ge; cutoff. Calibration slope from logit(P) = a + b logit(p);
intercept = calibration-in-the-large (slope fixed at 1). HL: Hosmer-Lemeshow over deciles of risk.</p>
{intervals_html}
<h2>Paired DeLong comparisons</h2>
{delong_html}
<p>p: raw two-sided p-value; p (Holm): adjusted for all the pairwise tests of this table (Holm's
step-down procedure, family-wise error rate).</p>
{_clustered_html(result)}
{_reader_html(result)}
<h2>Figures</h2>
{figs_html}
<h2>Files</h2><p>{files_html}</p>
</body></html>
"""


def _tests_html(tests: list[Mapping[str, Any]]) -> str:
    rows = [
        [
            html.escape(d["score_a"]),
            html.escape(d["score_b"]),
            _fmt(d["auc_a"]),
            _fmt(d["auc_b"]),
            _fmt(d["diff"]),
            _fmt(d["z"], 2),
            _fmt_p(d["p"]),
            _fmt_p(d.get("p_holm")),
        ]
        for d in tests
    ]
    if not rows:
        return "<p>Only one score: no comparison.</p>"
    return _html_table(["Score A", "Score B", "AUC A", "AUC B", "Difference", "z", "p", "p (Holm)"], rows)


_BOOT_METRICS = ("sensitivity", "specificity", "ppv", "npv")


def _intervals_html(result: Mapping[str, Any], metrics: pd.DataFrame) -> str:
    """AUC intervals side by side (DeLong, clustered, bootstrap) and bootstrap cutoff-metric CIs."""
    boot = result.get("bootstrap") or {}
    clusters = result.get("clusters")
    rows = [
        [
            html.escape(str(r["score"])),
            _fmt(r["auc"]),
            _span(r["auc_ci_low"], r["auc_ci_high"]),
            _span(r["auc_clustered_ci_low"], r["auc_clustered_ci_high"]),
            _span(r["auc_boot_ci_low"], r["auc_boot_ci_high"]),
            *(_span(r[f"{k}_boot_ci_low"], r[f"{k}_boot_ci_high"]) for k in _BOOT_METRICS),
        ]
        for _, r in metrics.iterrows()
    ]
    header = ["Score", "AUC", "DeLong CI", "Clustered CI", "Bootstrap CI", "Sens.", "Spec.", "PPV", "NPV"]
    unit = (
        f"{clusters['n_clusters']} patients ({clusters['n_clusters_positive']} with a positive case, "
        f"{clusters['n_clusters_negative']} with a negative one)"
        if clusters
        else "cases (no cluster column given: every case counts as its own patient)"
    )
    return f"""<h2>Patient-level and bootstrap intervals</h2>
{_html_table(header, rows)}
<p>95% intervals. DeLong: cases taken as independent. Clustered: Obuchowski (1997), cases of one
patient kept together (only with a cluster column). Bootstrap: percentile interval over
{boot.get("n_resamples", "n/a")} resamples (seed {boot.get("seed", "n/a")}) of {html.escape(unit)};
sensitivity, specificity, PPV and NPV at the cutoff of the table above.</p>"""


def _clustered_html(result: Mapping[str, Any]) -> str:
    if not result.get("clusters"):
        return ""
    return f"""<h2>Paired clustered comparisons (Obuchowski 1997)</h2>
{_tests_html(result["delong_clustered"])}"""


def _improvement_cell(imp: Mapping[str, Any] | None) -> str:
    if not imp:
        return "n/a"
    return f"{_fmt(imp['value'])} [{_span(imp['boot_ci_low'], imp['boot_ci_high'])}]"


def _reader_html(result: Mapping[str, Any]) -> str:
    comp = result.get("reader_comparison")
    if not comp:
        return ""
    esc = html.escape
    reader = comp["reader"]
    pol = reader["policy"]
    rows = [
        [
            esc(comp["reader_name"]) + " (reader)",
            f"{_fmt(reader['auc'])} [{_span(reader['auc_ci_low'], reader['auc_ci_high'])}]",
            "",
            "",
            "",
            "n/a",
            "n/a",
            "n/a",
        ]
    ]
    for r in comp["rows"]:
        rows.append(
            [
                esc(r["score"]) + (" (clinical-only)" if r["role"] == "clinical-only" else ""),
                f"{_fmt(r['auc'])} [{_span(r['auc_ci_low'], r['auc_ci_high'])}]",
                _fmt(r["diff_vs_reader"]),
                _fmt_p(r["p"]),
                _fmt_p(r["p_holm"]),
                _improvement_cell(r.get("nri_categorical")),
                _improvement_cell(r.get("nri_continuous")),
                _improvement_cell(r.get("idi")),
            ]
        )
    header = ["Score", "AUC [DeLong CI]", "AUC - reader", "p", "p (Holm)"]
    header += ["NRI (categories)", "NRI (continuous)", "IDI"]
    cuts = ", ".join(f"{100 * c:g}%" for c in comp["risk_cutoffs"])
    return f"""<h2>Readers as comparator ({esc(comp["reader_name"])})</h2>
<p>{comp["n"]} cases with a {esc(comp["reader_name"])} value ({comp["n_positive"]} positive,
{comp["n_negative"]} negative). Policy "{esc(comp["policy_name"])}": sensitivity {_fmt(pol["sensitivity"])},
specificity {_fmt(pol["specificity"])}, PPV {_fmt(pol["ppv"])}, NPV {_fmt(pol["npv"])}.</p>
{_html_table(header, rows)}
<p>AUC of the reader from the BI-RADS category as an ordinal score. Test against the reader:
{esc(comp["rows"][0]["test"] if comp["rows"] else "")}; p (Holm) adjusted over the scores of this
table. NRI and IDI of each score (new) over the reader (old), the reader's risk being the midpoint
of its category's likelihood of malignancy in the ACR BI-RADS Atlas; categorical NRI with risk
cut-offs {esc(cuts)}; [95% bootstrap percentile interval]. reader_comparison.csv also gives Wald
intervals and the events' and non-events' components.</p>"""
