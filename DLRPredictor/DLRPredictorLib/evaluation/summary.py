"""Compact summaries of :func:`.report.evaluate_scores` results (manifest metrics, model card tables)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..base.json_values import to_json_value


def flatten_score(res: Mapping[str, Any]) -> dict[str, Any]:
    """One score's evaluation as flat name -> number (JSON values; NaN as None).

    Args:
        res: one entry of ``evaluate_scores(...)["scores"]``.

    Returns:
        auc, auc_ci_low, auc_ci_high, cutoff, calibration_slope, calibration_intercept,
        hosmer_lemeshow_p and, for sensitivity, specificity, ppv, npv and accuracy, the value and
        ``<name>_ci`` as [low, high]; None where the score has no such metric.
    """
    auc = res.get("auc") or {}
    m = res.get("metrics") or {}
    cal = res.get("calibration") or {}
    hl = res.get("hosmer_lemeshow") or {}
    flat = {
        "auc": auc.get("auc"),
        "auc_ci_low": auc.get("ci_low"),
        "auc_ci_high": auc.get("ci_high"),
        "cutoff": res.get("cutoff"),
        "calibration_slope": cal.get("slope"),
        "calibration_intercept": cal.get("intercept"),
        "hosmer_lemeshow_p": hl.get("p"),
    }
    for k in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
        flat[k] = m.get(k)
        flat[f"{k}_ci"] = (m.get(f"{k}_ci_low"), m.get(f"{k}_ci_high"))
    return to_json_value(flat)
