"""Robustness figures of a training run: the contour-variant ICC table and the per-group folds.

- ICC: per radiomics feature, ICC(2,1) and ICC(3,1) across the Rad signature's contour variants
  of the training lesions (``models.icc``); ``selection.icc_min`` drops features below it inside
  every fold (``crossfit.CrossFitter.rad_columns``), this table is the one of all training cases.
- Leave-one-group-out: with ``split.fold_column`` (e.g. the scanner) each training fold holds one
  value out, so the out-of-fold scores of a value come from models that never saw that value; their
  AUC per value is the leave-one-group-out estimate.

Both are written to ``<work>/reports`` (``icc.csv``, ``leave_one_group_out.csv``) and summarised in
the manifest metrics and the model card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..base.errors import InputError
from .config import TrainConfig
from .data import TrainingCase
from .run import TrainingRun


def fold_column_values(config: TrainConfig, cases: list[TrainingCase]) -> np.ndarray | None:
    """The ``split.fold_column`` value of every case ("" when absent), or None without the option."""
    column = config.split.fold_column
    if column is None:
        return None
    if not any(column in c.extra or column in c.clinical for c in cases):
        raise InputError(f"split.fold_column: the manifest has no column '{column}'")
    return np.array([str(c.extra.get(column) or c.clinical.get(column) or "").strip() for c in cases])


def icc_table(run: TrainingRun) -> pd.DataFrame | None:
    """ICC(2,1), ICC(3,1) and the screen's verdict per radiomics feature, on the training lesions.

    None when the Rad signature trains on one contour variant only (no ICC across variants).
    """
    from ..models.icc import icc_keep, variant_icc

    variants = run.config.contours.for_radiomics()
    if len(variants) < 2:
        return None
    cohort = run.cohort
    ids = [cohort.cases[i].case_id for i in cohort.plan.train]
    res = variant_icc(cohort.rad, ids, variants)
    threshold = run.config.selection.icc_min
    kept = icc_keep(res, threshold) if threshold is not None else np.ones(len(res.icc21), bool)
    return pd.DataFrame(
        {"feature": cohort.rad_names, "icc21": res.icc21, "icc31": res.icc31, "kept": kept}
    ).assign(n_lesions=res.n_targets, variants=",".join(variants))


def group_oof_rows(run: TrainingRun) -> list[dict[str, Any]] | None:
    """Out-of-fold AUC per ``split.fold_column`` value (exact-contour rows), or None without it."""
    from ..evaluation.subgroups import subgroup_rows

    values = fold_column_values(run.config, run.cohort.cases)
    if values is None:
        return None
    oof = run.oof
    exact = oof.exact
    groups = values[oof.exact_cases]
    scores = {name: s[exact] for name, s in oof.scores.items()}
    return subgroup_rows(oof.y[exact], scores, groups)


def write_robustness(run: TrainingRun, reports: Path) -> dict[str, Any]:
    """Write ``icc.csv`` and ``leave_one_group_out.csv`` to ``reports``; their summary for the manifest.

    Without an ICC (one variant, or fewer than 2 lesions with every variant) ``icc`` is left out.
    """
    reports.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    try:
        table = icc_table(run)
    except InputError:  # fewer than 2 lesions with every variant: no ICC, the bundle is still written
        table = None
    if table is not None:
        table.to_csv(reports / "icc.csv", index=False)
        icc = table["icc21"].to_numpy(dtype=float)
        threshold = run.config.selection.icc_min
        out["icc"] = {
            "kind": "ICC(2,1) (two-way random effects, absolute agreement, single contour)",
            "variants": run.config.contours.for_radiomics(),
            "lesions": int(table["n_lesions"].iloc[0]),
            "features": len(table),
            "median": float(np.nanmedian(icc)) if np.isfinite(icc).any() else None,
            "at_least_0.75": int(np.sum(icc >= 0.75)),
            "at_least_0.9": int(np.sum(icc >= 0.9)),
            "threshold": threshold,
            "dropped": None if threshold is None else int((~table["kept"]).sum()),
        }
    rows = group_oof_rows(run)
    if rows is not None:
        pd.DataFrame(rows).to_csv(reports / "leave_one_group_out.csv", index=False)
        out["leave_one_group_out"] = {"column": run.config.split.fold_column, "rows": rows}
    return out


def robustness_card_lines(robustness: dict[str, Any] | None) -> list[str]:
    """The model card's robustness section (empty without figures)."""
    if not robustness:
        return []
    lines = ["## Robustness"]
    icc = robustness.get("icc")
    if icc:
        screen = (
            f"features below {icc['threshold']} were dropped before selection "
            f"({icc['dropped']} of {icc['features']})"
            if icc["threshold"] is not None
            else "no feature was dropped for it (`selection.icc_min` not set)"
        )
        median = "n/a" if icc["median"] is None else f"{icc['median']:.3f}"
        lines += [
            f"- Contour robustness: {icc['kind']} of each radiomics feature across the "
            f"{', '.join(icc['variants'])} outlines of {icc['lesions']} training lesions: median {median}; "
            f"{icc['at_least_0.75']} of {icc['features']} features >= 0.75, {icc['at_least_0.9']} >= 0.9; "
            f"{screen}. The variants are synthetic perturbations of one reader's mask, not second readers.",
        ]
    logo = robustness.get("leave_one_group_out")
    if logo:
        lines += [
            "",
            f"Leave-one-{logo['column']}-out (training folds, exact contours; each value's out-of-fold "
            "scores come from models that never saw it):",
            "",
            f"| score | {logo['column']} | n | events | AUC (95% DeLong CI) |",
            "|---|---|---|---|---|",
        ]
        for r in logo["rows"]:
            auc = "n/a" if r["auc"] is None else f"{r['auc']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})"
            lines.append(f"| {r['score']} | {r['group']} | {r['n']} | {r['events']} | {auc} |")
    return [*lines, ""]
