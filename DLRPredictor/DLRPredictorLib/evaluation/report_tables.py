"""The report's tables: metrics.csv, delong.csv, calibration.csv and decision_curve.csv, and, when
cluster ids or a reader column are given, delong_clustered.csv and reader_comparison.csv."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The table files of a report, in the order its index.html links them (metrics.json included).
TABLES = ("metrics.csv", "delong.csv", "calibration.csv", "decision_curve.csv", "metrics.json")
CLUSTERED_TABLE = "delong_clustered.csv"
READER_TABLE = "reader_comparison.csv"
_TEST_COLUMNS = ["score_a", "score_b", "auc_a", "auc_b", "diff", "se_diff", "z", "p", "p_holm"]
_IMPROVEMENTS = ("nri_categorical", "nri_continuous", "idi")
_IMPROVEMENT_PARTS = ("value", "events", "nonevents", "ci_low", "ci_high", "p", "boot_ci_low", "boot_ci_high")


def optional_tables(result: Mapping[str, Any]) -> list[str]:
    """The tables written only for clustered data or a reader comparison, in link order."""
    out = [CLUSTERED_TABLE] if result.get("clusters") else []
    return out + ([READER_TABLE] if result.get("reader_comparison") else [])


def metrics_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per score: AUC, cutoff metrics with CIs, calibration and Hosmer-Lemeshow."""
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
        row.update(_interval_columns(r, result))
        rows.append(row)
    return pd.DataFrame(rows)


def _interval_columns(r: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """Clustered and bootstrap intervals of one score (columns after the original ones)."""
    clu = r.get("auc_clustered") or {}
    boot = r.get("auc_bootstrap") or {}
    clusters = result.get("clusters") or {}
    row: dict[str, Any] = {
        "n_clusters": clusters.get("n_clusters", pd.NA),
        "auc_clustered_se": clu.get("se", np.nan),
        "auc_clustered_ci_low": clu.get("ci_low", np.nan),
        "auc_clustered_ci_high": clu.get("ci_high", np.nan),
        "auc_boot_ci_low": boot.get("ci_low", np.nan),
        "auc_boot_ci_high": boot.get("ci_high", np.nan),
    }
    mb = r.get("metrics_bootstrap") or {}
    for key in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
        row[f"{key}_boot_ci_low"] = (mb.get(key) or {}).get("ci_low", np.nan)
        row[f"{key}_boot_ci_high"] = (mb.get(key) or {}).get("ci_high", np.nan)
    return row


def _policy_column(result: Mapping[str, Any], thresholds: pd.Series) -> pd.Series:
    """Net benefit of the reader's policy (biopsy every BI-RADS >= 4) at each row's threshold.

    Only when every case has a reader value: otherwise the policy's curve is on another set of
    cases than the models' and is left in reader_comparison (metrics.json) alone.
    """
    comp = result.get("reader_comparison")
    if not comp or comp["n_missing"]:
        return pd.Series(np.nan, index=thresholds.index)
    policy = dict(zip(comp["policy"]["threshold"], comp["policy"]["net_benefit"]))
    return thresholds.map(policy).astype(float)


def reader_table(comparison: Mapping[str, Any]) -> pd.DataFrame:
    """One row for the reader and one per score: AUC with its intervals, the test against the
    reader (raw and Holm-adjusted p), and NRI / IDI with Wald and bootstrap intervals."""
    rows = []
    reader = dict(comparison["reader"])
    policy = reader.pop("policy")
    reader.update({f"policy_{k}": v for k, v in policy.items()})
    for r in [reader, *comparison["rows"]]:
        row = {k: v for k, v in r.items() if k not in _IMPROVEMENTS}
        row["n"] = comparison["n"]
        for kind in _IMPROVEMENTS:
            imp = r.get(kind) or {}
            for part in _IMPROVEMENT_PARTS:
                row[f"{kind}_{part}"] = imp.get(part, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _long_table(result: Mapping[str, Any], key: str, columns: list[str]) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for name, r in result["scores"].items():
        if key == "calibration":
            items = (r["calibration"] or {}).get("bins", [])
        else:
            items = r[key] or []
        rows.extend({"score": name, **item} for item in items)
    return pd.DataFrame(rows, columns=["score", *columns])


def write_tables(result: Mapping[str, Any], folder: Path) -> pd.DataFrame:
    """Write the four CSV tables of :func:`..report.evaluate_scores` output into ``folder``.

    Returns:
        The metrics table (index.html shows it too).
    """
    metrics = metrics_table(result)
    metrics.to_csv(folder / "metrics.csv", index=False)
    pd.DataFrame(result["delong"], columns=_TEST_COLUMNS).to_csv(folder / "delong.csv", index=False)
    _long_table(
        result, "calibration", ["bin", "bin_low", "bin_high", "n", "mean_predicted", "observed"]
    ).to_csv(folder / "calibration.csv", index=False)
    curves = _long_table(
        result,
        "decision_curve",
        [
            "threshold",
            "tp",
            "fp",
            "net_benefit",
            "treat_all",
            "treat_none",
            "net_benefit_ci_low",
            "net_benefit_ci_high",
        ],
    )
    curves["reader_policy"] = _policy_column(result, curves["threshold"])
    curves.to_csv(folder / "decision_curve.csv", index=False)
    if result.get("clusters"):
        pd.DataFrame(result["delong_clustered"], columns=_TEST_COLUMNS).to_csv(
            folder / CLUSTERED_TABLE, index=False
        )
    if result.get("reader_comparison"):
        reader_table(result["reader_comparison"]).to_csv(folder / READER_TABLE, index=False)
    return metrics
