"""Evaluation report: every metric of :mod:`stats` per score, as HTML with PNG figures, CSV and JSON.

Cutoffs are never chosen on the data being scored unless the caller asks for it explicitly
(``optimistic_youden=True``), and such cutoffs are labelled "optimistic" everywhere they appear.
A report is written into a temporary folder next to the destination and renamed into place at the
end, so that a failure leaves no half-written report.
"""

from __future__ import annotations

import html
import json
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..base.compat import zip_strict
from ..base.errors import InputError
from ..base.version import __version__
from . import stats

DEFAULT_CUTOFF = 0.5
SOURCE_GIVEN = "pre-specified"
SOURCE_DEFAULT = "default 0.5 (no cutoff given)"
SOURCE_OPTIMISTIC = "optimistic: Youden cutoff chosen on these same data"
SOURCE_NONE = "none (not a probability and no cutoff given)"

FIGURES = {"roc": "roc.png", "calibration": "calibration.png", "decision_curve": "decision_curve.png"}
TABLES = ("metrics.csv", "delong.csv", "calibration.csv", "decision_curve.csv", "metrics.json")


# ------------------------------------------------------------------------------------ evaluation


def evaluate_scores(
    y: Sequence[int] | np.ndarray,
    scores: Mapping[str, Sequence[float] | np.ndarray],
    cutoffs: Mapping[str, float] | None = None,
    *,
    optimistic_youden: bool = False,
    n_bins: int = 10,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Every metric of :mod:`stats` for each named score, and pairwise DeLong tests.

    A score whose values all lie in [0, 1] is treated as a probability: it gets cutoff metrics,
    calibration, Hosmer-Lemeshow and a decision curve. Other scores get AUC/ROC, and cutoff metrics
    only when a cutoff is given (or with ``optimistic_youden``). Without a given cutoff a
    probability uses 0.5, and the output says so in ``cutoff_source``.

    Args:
        y: 0/1 labels (both classes required).
        scores: name -> one score per case (same cases, same order).
        cutoffs: name -> pre-specified cutoff (positive when score >= cutoff).
        optimistic_youden: for scores without a given cutoff, choose Youden's cutoff on these same
            data (labelled optimistic) instead of 0.5.
        n_bins: bins of the calibration curve (equal width on [0, 1]).
        thresholds: decision-curve threshold probabilities (default 0.01-0.99).

    Returns:
        dict with n, n_positive, n_negative, prevalence, scores (per-score results), delong (list of
        pairwise tests) and notes (list of strings).

    Raises:
        InputError: no scores, invalid labels or scores, or a cutoff for an unknown score.
    """
    if not scores:
        raise InputError("No scores to evaluate: give at least one score column.")
    cutoffs = dict(cutoffs or {})
    unknown = sorted(set(cutoffs) - set(scores))
    if unknown:
        raise InputError(f"Cutoffs given for unknown score(s) {unknown}; the scores are {list(scores)}.")
    lab = stats.validate_labels(y)
    arrays = {str(k): stats.validate_scores(v, lab.size, str(k)) for k, v in scores.items()}
    notes: list[str] = []
    per_score: dict[str, Any] = {}
    for name, s in arrays.items():
        per_score[name] = _evaluate_one(
            lab,
            s,
            name,
            cutoffs.get(name),
            optimistic=optimistic_youden,
            n_bins=n_bins,
            thresholds=thresholds,
        )
        notes.extend(per_score[name].pop("_notes"))
    delong = [
        {
            "score_a": t.name_a,
            "score_b": t.name_b,
            "auc_a": t.auc_a,
            "auc_b": t.auc_b,
            "diff": t.diff,
            "se_diff": t.se_diff,
            "z": t.z,
            "p": t.p,
        }
        for t in stats.pairwise_delong(lab, arrays)
    ]
    if len(delong) > 1:
        notes.append("DeLong p-values are not adjusted for multiple comparisons.")
    return {
        "n": int(lab.size),
        "n_positive": int(lab.sum()),
        "n_negative": int(lab.size - lab.sum()),
        "prevalence": float(lab.mean()),
        "scores": per_score,
        "delong": delong,
        "notes": notes,
    }


def _evaluate_one(
    lab: np.ndarray,
    s: np.ndarray,
    name: str,
    cutoff: float | None,
    *,
    optimistic: bool,
    n_bins: int,
    thresholds: Sequence[float] | np.ndarray | None,
) -> dict[str, Any]:
    notes: list[str] = []
    is_prob = bool(s.min() >= 0.0 and s.max() <= 1.0)
    auc = stats.auc_delong(lab, s)
    fpr, tpr, thr = stats.roc_curve_points(lab, s)
    if cutoff is not None:
        source = SOURCE_GIVEN
    elif optimistic:
        cutoff, source = stats.youden_cutoff(lab, s), SOURCE_OPTIMISTIC
        notes.append(
            f"'{name}': cutoff {cutoff:.4g} was chosen on the evaluated data (Youden); its "
            "sensitivity/specificity are optimistic."
        )
    elif is_prob:
        cutoff, source = DEFAULT_CUTOFF, SOURCE_DEFAULT
        notes.append(f"'{name}': no cutoff given; 0.5 used (not tuned on these data).")
    else:
        source = SOURCE_NONE
        notes.append(f"'{name}' is not a probability in [0, 1]: only AUC/ROC reported (no cutoff given).")
    out: dict[str, Any] = {
        "is_probability": is_prob,
        "auc": {"auc": auc.auc, "se": auc.se, "ci_low": auc.ci_low, "ci_high": auc.ci_high},
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()},
        "cutoff": None if cutoff is None else float(cutoff),
        "cutoff_source": source,
        "metrics": None if cutoff is None else stats.binary_metrics(lab, s, float(cutoff)),
        "calibration": None,
        "hosmer_lemeshow": None,
        "decision_curve": None,
        "_notes": notes,
    }
    if not is_prob:
        return out
    cal = stats.calibration(lab, s, n_bins=n_bins)
    if not cal.converged:
        notes.append(f"'{name}': the logistic recalibration fit did not converge (separation?).")
    out["calibration"] = {
        "slope": cal.slope,
        "intercept": cal.intercept,
        "intercept_joint": cal.intercept_joint,
        "brier": cal.brier,
        "converged": cal.converged,
        "bins": [
            {
                "bin": int(b),
                "bin_low": float(cal.bin_edges[b]),
                "bin_high": float(cal.bin_edges[b + 1]),
                "n": int(c),
                "mean_predicted": float(m),
                "observed": float(o),
            }
            for b, c, m, o in zip_strict(cal.bin_index, cal.counts, cal.mean_predicted, cal.observed)
        ],
    }
    try:
        hl_stat, hl_dof, hl_p = stats.hosmer_lemeshow(lab, s)
        out["hosmer_lemeshow"] = {"statistic": hl_stat, "dof": hl_dof, "p": hl_p}
    except InputError as exc:
        notes.append(f"'{name}': Hosmer-Lemeshow not computed: {exc}")
    out["decision_curve"] = stats.decision_curve(lab, s, thresholds).to_dict(orient="records")
    return out


# ----------------------------------------------------------------------------------- tables


def _metrics_table(result: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for name, r in result["scores"].items():
        row: dict[str, Any] = {
            "score": name,
            "is_probability": r["is_probability"],
            "n": result["n"],
            "n_positive": result["n_positive"],
            "n_negative": result["n_negative"],
            "auc": r["auc"]["auc"],
            "auc_se": r["auc"]["se"],
            "auc_ci_low": r["auc"]["ci_low"],
            "auc_ci_high": r["auc"]["ci_high"],
            "cutoff": np.nan if r["cutoff"] is None else r["cutoff"],
            "cutoff_source": r["cutoff_source"],
        }
        m = r["metrics"] or {}
        for key in ("tp", "fp", "tn", "fn"):
            row[key] = m.get(key, pd.NA)
        for key in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
            for suffix in ("", "_ci_low", "_ci_high"):
                row[key + suffix] = m.get(key + suffix, np.nan)
        cal = r["calibration"] or {}
        row["brier"] = cal.get("brier", np.nan)
        row["calibration_slope"] = cal.get("slope", np.nan)
        row["calibration_intercept"] = cal.get("intercept", np.nan)
        row["calibration_intercept_joint"] = cal.get("intercept_joint", np.nan)
        hl = r["hosmer_lemeshow"] or {}
        row["hl_statistic"] = hl.get("statistic", np.nan)
        row["hl_dof"] = hl.get("dof", pd.NA)
        row["hl_p"] = hl.get("p", np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _long_table(result: Mapping[str, Any], key: str, columns: list[str]) -> pd.DataFrame:
    rows = []
    for name, r in result["scores"].items():
        if key == "calibration":
            items = (r["calibration"] or {}).get("bins", [])
        else:
            items = r[key] or []
        rows.extend({"score": name, **item} for item in items)
    return pd.DataFrame(rows, columns=["score", *columns])


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, so that the JSON is strict."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is pd.NA:
        return None
    return obj


# ---------------------------------------------------------------------------------- figures


def _new_figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    # Object-oriented Agg canvas: renders PNGs without touching pyplot's global backend (which
    # matters inside the Slicer application).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 5.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _plot_roc(result: Mapping[str, Any], path: Path) -> None:
    fig, ax = _new_figure("ROC curves", "1 - specificity", "Sensitivity")
    for name, r in result["scores"].items():
        a = r["auc"]
        label = f"{name} (AUC {a['auc']:.3f} [{a['ci_low']:.3f}-{a['ci_high']:.3f}])"
        ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], drawstyle="default", label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize="small")
    fig.savefig(path, format="png")


def _plot_calibration(result: Mapping[str, Any], path: Path) -> None:
    fig, ax = _new_figure("Calibration", "Mean predicted probability", "Observed fraction positive")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="ideal")
    for name, r in result["scores"].items():
        if r["calibration"] is None:
            continue
        bins = r["calibration"]["bins"]
        label = f"{name} (slope {r['calibration']['slope']:.2f}, Brier {r['calibration']['brier']:.3f})"
        ax.plot([b["mean_predicted"] for b in bins], [b["observed"] for b in bins], marker="o", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize="small")
    fig.savefig(path, format="png")


def _plot_decision(result: Mapping[str, Any], path: Path) -> None:
    fig, ax = _new_figure("Decision curves", "Threshold probability", "Net benefit")
    treat_all = None
    for name, r in result["scores"].items():
        if r["decision_curve"] is None:
            continue
        dc = pd.DataFrame(r["decision_curve"])
        ax.plot(dc["threshold"], dc["net_benefit"], label=name)
        treat_all = dc
    if treat_all is not None:
        ax.plot(treat_all["threshold"], treat_all["treat_all"], color="grey", label="treat all")
        ax.plot(treat_all["threshold"], treat_all["treat_none"], color="black", label="treat none")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.05, result["prevalence"] + 0.05)
    ax.legend(loc="upper right", fontsize="small")
    fig.savefig(path, format="png")


# -------------------------------------------------------------------------------------- HTML


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


def _html(
    result: Mapping[str, Any], metrics: pd.DataFrame, title: str, notes: list[str], figures: list[str]
) -> str:
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


# ---------------------------------------------------------------------------------- writing


def _check_destination(target: Path) -> bool:
    """True when ``target`` holds a previous report to replace; raises if it holds anything else."""
    if not target.exists():
        return False
    if not target.is_dir():
        raise InputError(f"The report destination {target} is a file; choose a folder name.")
    if not any(target.iterdir()):
        return False
    if (target / "metrics.json").is_file() and (target / "index.html").is_file():
        return True
    raise InputError(
        f"The report folder {target} already exists and is not a DLRPredictor report; choose a new "
        "or empty folder so that nothing of yours is overwritten."
    )


def write_report(
    report_dir: str | Path,
    y: Sequence[int] | np.ndarray,
    scores: Mapping[str, Sequence[float] | np.ndarray],
    cutoffs: Mapping[str, float] | None = None,
    *,
    title: str = "",
    notes: list[str] | None = None,
    optimistic_youden: bool = False,
) -> Path:
    """Write an evaluation report: index.html, PNG figures, CSV tables and metrics.json.

    Files: index.html (self-contained page referring to the PNGs next to it), roc.png,
    calibration.png and decision_curve.png (when at least one score is a probability),
    metrics.csv, delong.csv, calibration.csv, decision_curve.csv and metrics.json. Everything is
    written into a temporary sibling folder which is renamed to ``report_dir`` at the end; a
    previous report in ``report_dir`` is replaced, any other non-empty folder is refused.

    Args:
        report_dir: destination folder.
        y: 0/1 labels.
        scores: name -> one score per case.
        cutoffs: name -> pre-specified cutoff.
        title: page title.
        notes: extra lines shown first in the notes (e.g. how many rows were excluded).
        optimistic_youden: see :func:`evaluate_scores`.

    Returns:
        The report folder.

    Raises:
        InputError: invalid inputs, or a destination that is a file or a non-report folder.
    """
    target = Path(report_dir).expanduser().resolve()
    replace = _check_destination(target)
    result = evaluate_scores(y, scores, cutoffs, optimistic_youden=optimistic_youden)
    all_notes = [*(notes or []), *result["notes"]]
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        metrics = _metrics_table(result)
        metrics.to_csv(tmp / "metrics.csv", index=False)
        pd.DataFrame(
            result["delong"], columns=["score_a", "score_b", "auc_a", "auc_b", "diff", "se_diff", "z", "p"]
        ).to_csv(tmp / "delong.csv", index=False)
        _long_table(
            result, "calibration", ["bin", "bin_low", "bin_high", "n", "mean_predicted", "observed"]
        ).to_csv(tmp / "calibration.csv", index=False)
        _long_table(
            result, "decision_curve", ["threshold", "tp", "fp", "net_benefit", "treat_all", "treat_none"]
        ).to_csv(tmp / "decision_curve.csv", index=False)
        payload = {
            "title": title,
            "generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "software": {"dlrpredictor": __version__},
            **result,
            "notes": all_notes,
        }
        (tmp / "metrics.json").write_text(json.dumps(_json_safe(payload), indent=1, allow_nan=False))
        figures = [FIGURES["roc"]]
        _plot_roc(result, tmp / FIGURES["roc"])
        if any(r["is_probability"] for r in result["scores"].values()):
            _plot_calibration(result, tmp / FIGURES["calibration"])
            _plot_decision(result, tmp / FIGURES["decision_curve"])
            figures += [FIGURES["calibration"], FIGURES["decision_curve"]]
        (tmp / "index.html").write_text(_html(result, metrics, title, all_notes, figures), encoding="utf-8")
        _move_into_place(tmp, target, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # only folders this call created, innermost first, only if empty
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        raise
    return target


def _move_into_place(tmp: Path, target: Path, replace: bool) -> None:
    if target.is_dir() and not replace:
        target.rmdir()  # checked empty by _check_destination
    if not replace:
        tmp.rename(target)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    backup.rmdir()
    target.rename(backup)
    try:
        tmp.rename(target)
    except BaseException:
        backup.rename(target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


# ------------------------------------------------------------------------------ from a CSV file


def _read_csv(csv_path: Path) -> pd.DataFrame:
    if not csv_path.is_file():
        raise InputError(f"Predictions file not found: {csv_path}.")
    try:
        df = pd.read_csv(csv_path, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read {csv_path} as a CSV file: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip())


def _parse_labels(col: pd.Series, column: str, positive_label: str | int | None) -> tuple[pd.Series, str]:
    present = col.dropna()
    if positive_label is not None:
        pos = str(positive_label).strip()
        values = sorted(present.unique().tolist())
        if pos not in values:
            raise InputError(
                f"The positive label '{pos}' does not occur in column '{column}'; its values are {values}."
            )
        counts = present.value_counts()
        desc = ", ".join(f"'{v}' = {int(counts[v])}" for v in values)
        note = f"Label column '{column}': positive class '{pos}'; every other value is negative ({desc})."
        return col.map(lambda v: np.nan if pd.isna(v) else float(v == pos)), note
    num = pd.to_numeric(col, errors="coerce")
    bad = col.notna() & ~num.isin([0.0, 1.0])
    if bad.any():
        raise InputError(
            f"Label column '{column}' must hold 0/1 values; found {sorted(col[bad].unique().tolist())[:5]}. "
            "Recode it as 0/1, or name the positive class (positive_label)."
        )
    return num, f"Label column '{column}': 1 = positive, 0 = negative."


def report_from_predictions_csv(
    csv_path: str | Path,
    label_column: str,
    score_columns: Sequence[str],
    report_dir: str | Path,
    positive_label: str | int | None = None,
    *,
    cutoffs: Mapping[str, float] | None = None,
    optimistic_youden: bool = False,
    title: str | None = None,
    skip_empty_scores: bool = False,
) -> Path:
    """Evaluation report from any CSV with a label column and score columns (``dlrpredictor report``).

    Rows whose ``status`` column (if present) is ``error`` are excluded; rows with a missing label or
    a missing value in any of the score columns are dropped, so that all scores are compared on the
    same cases. Both counts appear in the report's notes. When ``probability`` is scored without a
    given cutoff and the CSV has a ``cutoff`` column holding one value (the bundle's frozen cutoff
    in a DLRPredictor results CSV), that cutoff is used.

    Args:
        csv_path: the CSV file.
        label_column: column with 0/1 labels, or with strings when ``positive_label`` is given.
        score_columns: the score columns to evaluate and compare.
        report_dir: destination folder of the report.
        positive_label: the label value of the positive class (all other values are negative).
        cutoffs: score column -> pre-specified cutoff.
        optimistic_youden: see :func:`evaluate_scores`.
        title: page title (default "Evaluation of <file name>").
        skip_empty_scores: leave out (with a note) score columns with no value in any usable row,
            such as the combined model's score of a cohort without clinical data; otherwise such
            a column leaves no complete row and is an error.

    Returns:
        The report folder.

    Raises:
        InputError: unreadable file, missing columns (the available ones are listed), labels or
            scores that cannot be used, or no usable rows.
    """
    csv_path = Path(csv_path)
    score_columns = [str(c).strip() for c in score_columns if str(c).strip()]
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
    if "status" in df.columns:
        is_error = df["status"].str.lower().eq("error").fillna(False).astype(bool)
        if is_error.any():
            notes.append(f"{int(is_error.sum())} rows with status=error excluded.")
        df = df[~is_error]
    numeric: dict[str, pd.Series] = {}
    for c in score_columns:
        num = pd.to_numeric(df[c], errors="coerce")
        bad = df[c].notna() & ~np.isfinite(num)  # present but not a finite number
        if bad.any():
            first = bad.idxmax()
            raise InputError(
                f"Score column '{c}' has {int(bad.sum())} non-numeric value(s), e.g. '{df.at[first, c]}' "
                f"on line {int(first) + 2} of {csv_path.name}; scores must be numbers."
            )
        numeric[c] = num
    skipped: list[str] = []
    if skip_empty_scores:
        empty = [c for c in score_columns if not numeric[c].notna().any()]
        if empty and len(empty) < len(score_columns):
            skipped = empty
            score_columns = [c for c in score_columns if c not in empty]
            notes.append(f"Score column(s) {empty} have no value in any row and are not evaluated.")
    labels, label_note = _parse_labels(df[label_column], label_column, positive_label)
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
    cut = {k: v for k, v in (cutoffs or {}).items() if k not in skipped}
    if "probability" in score_columns and "probability" not in cut and "cutoff" in df.columns:
        frozen = pd.to_numeric(df.loc[complete, "cutoff"], errors="coerce").dropna().unique()
        if frozen.size == 1:
            cut["probability"] = float(frozen[0])
            notes.append(f"Cutoff {frozen[0]:.4g} for 'probability' taken from the file's 'cutoff' column.")
    return write_report(
        report_dir,
        labels[complete].to_numpy(dtype=int),
        {c: numeric[c][complete].to_numpy(dtype=float) for c in score_columns},
        cutoffs=cut,
        title=title if title is not None else f"Evaluation of {csv_path.name}",
        notes=notes,
        optimistic_youden=optimistic_youden,
    )
