"""The report's patient-level and resampling statistics, added to :func:`.report.evaluate_scores` output.

- Clustered AUC (Obuchowski 1997) per score and clustered paired tests, when cluster ids
  (patients) are given; the ids are used for grouping only and never stored.
- Bootstrap percentile intervals (by patient when cluster ids are given, else by case) for the
  AUC, the cutoff metrics and the net benefit at each decision-curve threshold.
- Holm-adjusted p-values next to the raw ones for every family of pairwise tests.
- Warnings when the set is too small for an interval (:mod:`.sample_size`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .bootstrap import BootstrapSettings, bootstrap_auc, bootstrap_net_benefit, bootstrap_ratios
from .clustered_auc import auc_obuchowski, cluster_codes, pairwise_obuchowski
from .multiplicity import holm_adjust
from .sample_size import auc_warnings, bootstrap_warning, proportion_warnings

#: The cutoff metrics given bootstrap intervals: name -> (numerator, denominator) of per-case flags.
_RATIOS = ("sensitivity", "specificity", "ppv", "npv", "accuracy")


def _ratio_flags(lab: np.ndarray, called: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = lab == 1, lab == 0
    tp, tn = called & pos, ~called & neg
    num = np.stack([tp, tn, tp, tn, tp | tn], axis=1)
    den = np.stack([pos, neg, called, ~called, np.ones_like(pos)], axis=1)
    return num.astype(float), den.astype(float)


def _add_holm(tests: list[dict[str, Any]]) -> None:
    adjusted = holm_adjust([t["p"] for t in tests])
    for t, p in zip(tests, adjusted):
        t["p_holm"] = float(p)


def add_intervals(
    result: dict[str, Any],
    lab: np.ndarray,
    arrays: Mapping[str, np.ndarray],
    called_at: Mapping[str, float | np.ndarray | None],
    *,
    clusters: Sequence[object] | np.ndarray | None,
    settings: BootstrapSettings,
) -> np.ndarray | None:
    """Add clustered AUCs, bootstrap intervals, Holm-adjusted p-values and warnings to ``result``.

    Args:
        result: :func:`.report.evaluate_scores` output, changed in place: each score gains
            ``auc_clustered`` (or None), ``auc_bootstrap`` and ``metrics_bootstrap``; decision-curve
            rows gain ``net_benefit_ci_low`` / ``net_benefit_ci_high``; each DeLong test gains
            ``p_holm``; ``delong_clustered``, ``clusters``, ``bootstrap`` and ``warnings`` are set.
        lab: validated labels.
        arrays: validated scores by name.
        called_at: per score, the cutoff (or per-case cutoffs) its metrics were computed at.
        clusters: one cluster (patient) id per case, or None.
        settings: bootstrap resamples, seed and level.

    Returns:
        The cluster codes (None without clusters), for the reader comparison.
    """
    warnings: list[str] = auc_warnings(result["n_positive"], result["n_negative"])
    codes = None if clusters is None else cluster_codes(clusters, lab.size)
    boot_codes = codes if codes is not None else np.arange(lab.size)
    unit = "patient" if codes is not None else "case"
    for name, res in result["scores"].items():
        s = arrays[name]
        if min(result["n_positive"], result["n_negative"]) < 2:
            res["auc"].update(ci_low=float("nan"), ci_high=float("nan"))
        res["auc_clustered"] = None
        if codes is not None:
            c = auc_obuchowski(lab, s, codes)
            res["auc_clustered"] = {"auc": c.auc, "se": c.se, "ci_low": c.ci_low, "ci_high": c.ci_high}
        b = bootstrap_auc(lab, s, boot_codes, settings)
        res["auc_bootstrap"] = {"ci_low": b.low, "ci_high": b.high, "n_used": b.n_used}
        warnings += bootstrap_warning(f"'{name}' bootstrap AUC", b.n_used, b.n_resamples)
        res["metrics_bootstrap"] = None
        cut = called_at.get(name)
        if cut is not None and res["metrics"] is not None:
            num, den = _ratio_flags(lab, s >= np.asarray(cut, dtype=float))
            ivs = bootstrap_ratios(num, den, boot_codes, settings)
            res["metrics_bootstrap"] = {
                k: {"ci_low": iv.low, "ci_high": iv.high, "n_used": iv.n_used} for k, iv in zip(_RATIOS, ivs)
            }
            warnings += proportion_warnings(name, res["metrics"])
        if res["decision_curve"]:
            pt = np.array([r["threshold"] for r in res["decision_curve"]])
            low, high = bootstrap_net_benefit(lab, s, pt, boot_codes, settings)
            for r, lo, hi in zip(res["decision_curve"], low, high):
                r.update(net_benefit_ci_low=float(lo), net_benefit_ci_high=float(hi))
    _add_holm(result["delong"])
    result["delong_clustered"] = []
    result["clusters"] = None
    if codes is not None:
        first = next(iter(arrays))
        c = auc_obuchowski(lab, arrays[first], codes)
        result["clusters"] = {
            "n_clusters": c.n_clusters,
            "n_clusters_positive": c.n_clusters_positive,
            "n_clusters_negative": c.n_clusters_negative,
        }
        warnings += auc_warnings(c.n_clusters_positive, c.n_clusters_negative, "patients")
        tests = pairwise_obuchowski(lab, arrays, codes)
        result["delong_clustered"] = [t.record() for t in tests]
        _add_holm(result["delong_clustered"])
    result["bootstrap"] = {
        "n_resamples": int(settings.n_resamples),
        "seed": int(settings.seed),
        "level": float(settings.level),
        "unit": unit,
    }
    result["warnings"] = list(dict.fromkeys(warnings))
    return codes
