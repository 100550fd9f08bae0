"""The report's tables: metrics.csv, delong.csv, calibration.csv and decision_curve.csv."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The table files of a report, in the order its index.html links them (metrics.json included).
TABLES = ("metrics.csv", "delong.csv", "calibration.csv", "decision_curve.csv", "metrics.json")


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
    pd.DataFrame(
        result["delong"], columns=["score_a", "score_b", "auc_a", "auc_b", "diff", "se_diff", "z", "p"]
    ).to_csv(folder / "delong.csv", index=False)
    _long_table(
        result, "calibration", ["bin", "bin_low", "bin_high", "n", "mean_predicted", "observed"]
    ).to_csv(folder / "calibration.csv", index=False)
    _long_table(
        result, "decision_curve", ["threshold", "tp", "fp", "net_benefit", "treat_all", "treat_none"]
    ).to_csv(folder / "decision_curve.csv", index=False)
    return metrics
