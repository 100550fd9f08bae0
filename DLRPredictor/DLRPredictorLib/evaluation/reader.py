"""The readers as comparator: a radiologist's BI-RADS assessment against the models' scores.

BI-RADS is read as an ordinal score for discrimination (AUC, paired DeLong or clustered tests of
each model against it) and as a fixed risk, the midpoint of each category's likelihood of
malignancy in the ACR BI-RADS Atlas (5th edition), for reclassification (NRI, IDI). The risks are
not fitted on the evaluated data, so they add no optimism; AUCs and DeLong tests use ranks only and
do not depend on them. The policy "biopsy every BI-RADS >= 4" (4A and above) is a fixed decision:
its net benefit is a line on the decision curve.

Conventions: see :mod:`.validation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..base.errors import InputError
from .auc import auc_delong, pairwise_delong
from .bootstrap import BootstrapSettings, bootstrap_auc
from .clustered_auc import auc_obuchowski, pairwise_obuchowski
from .cutoff_metrics import binary_metrics
from .decision_curve import default_thresholds
from .multiplicity import holm_adjust
from .reclassification import (
    DEFAULT_RISK_CUTOFFS,
    Improvement,
    integrated_discrimination,
    net_reclassification,
)

#: Order of the BI-RADS assessment categories (unspecified 4 ranks with 4B, mid-category).
BIRADS_ORDINAL = {
    "0": float("nan"),
    "1": 1.0,
    "2": 2.0,
    "3": 3.0,
    "4a": 4.25,
    "4": 4.5,
    "4b": 4.5,
    "4c": 4.75,
    "5": 5.0,
    "6": 6.0,
}
#: Likelihood of malignancy per category, the midpoint of the ACR BI-RADS Atlas range:
#: 1-2 essentially 0%, 3 (0, 2]%, 4 (2, 95)%, 4A (2, 10]%, 4B (10, 50]%, 4C (50, 95)%, 5 >= 95%,
#: 6 biopsy-proven malignancy.
BIRADS_RISK = {
    "1": 0.0,
    "2": 0.0,
    "3": 0.01,
    "4a": 0.06,
    "4": 0.485,
    "4b": 0.30,
    "4c": 0.725,
    "5": 0.975,
    "6": 1.0,
}
#: The "biopsy everything suspicious" policy: BI-RADS 4 (any subcategory) and above.
POLICY_MIN_ORDINAL = 4.0
POLICY_NAME = "biopsy every BI-RADS >= 4"


def birads_key(value: object) -> str:
    """A BI-RADS cell as a key of :data:`BIRADS_ORDINAL`: '4A' -> '4a', 4.0 -> '4', ' 5 ' -> '5';
    '' for a missing value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = str(value).strip().lower().replace("bi-rads", "").replace("birads", "").strip()
    if text in ("", "nan", "na", "n/a", "none", "not available"):
        return ""
    try:
        num = float(text)
    except ValueError:
        return text
    return str(int(num)) if num.is_integer() else text


def parse_birads(values: Sequence[object] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BI-RADS cells as (present mask, ordinal score, ACR risk); 0 (incomplete) counts as missing.

    Raises:
        InputError: a value that is not a BI-RADS category, with the values allowed.
    """
    keys = [birads_key(v) for v in values]
    bad = sorted({k for k in keys if k and k not in BIRADS_ORDINAL})
    if bad:
        raise InputError(
            f"Reader column values {bad[:5]} are not BI-RADS categories; use one of "
            f"{[k for k in BIRADS_ORDINAL if k != '0']} (or leave the cell empty)."
        )
    present = np.array([bool(k) and k != "0" for k in keys])
    ordinal = np.array([BIRADS_ORDINAL[k] if p else np.nan for k, p in zip(keys, present)])
    risk = np.array([BIRADS_RISK[k] if p else np.nan for k, p in zip(keys, present)])
    return present, ordinal, risk


def policy_net_benefit(lab: np.ndarray, ordinal: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Net benefit of biopsying every case with BI-RADS >= 4 at each threshold probability."""
    called = ordinal >= POLICY_MIN_ORDINAL
    n = lab.size
    tp = float(np.sum(called & (lab == 1)))
    fp = float(np.sum(called & (lab == 0)))
    pt = np.asarray(thresholds, dtype=float)
    return tp / n - fp / n * pt / (1 - pt)


def _improvement(imp: Improvement) -> dict[str, Any]:
    return {
        "value": imp.value,
        "events": imp.events,
        "nonevents": imp.nonevents,
        "se": imp.se,
        "p": imp.p,
        "ci_low": imp.ci_low,
        "ci_high": imp.ci_high,
        "boot_ci_low": imp.boot_ci_low,
        "boot_ci_high": imp.boot_ci_high,
        "boot_used": imp.boot_used,
    }


def _auc_row(
    lab: np.ndarray, s: np.ndarray, codes: np.ndarray | None, settings: BootstrapSettings
) -> dict[str, Any]:
    d = auc_delong(lab, s)
    row: dict[str, Any] = {"auc": d.auc, "auc_ci_low": d.ci_low, "auc_ci_high": d.ci_high}
    if codes is not None:
        c = auc_obuchowski(lab, s, codes)
        row.update(auc_clustered_ci_low=c.ci_low, auc_clustered_ci_high=c.ci_high)
    boot = bootstrap_auc(lab, s, codes if codes is not None else np.arange(lab.size), settings)
    row.update(auc_boot_ci_low=boot.low, auc_boot_ci_high=boot.high)
    return row


def compare_with_reader(
    lab: np.ndarray,
    reader_values: Sequence[object] | np.ndarray,
    scores: Mapping[str, np.ndarray],
    *,
    clusters: np.ndarray | None = None,
    clinical: str | None = None,
    settings: BootstrapSettings | None = None,
    risk_cutoffs: Sequence[float] = DEFAULT_RISK_CUTOFFS,
    thresholds: Sequence[float] | np.ndarray | None = None,
    reader_name: str = "BI-RADS",
) -> dict[str, Any]:
    """Every score against the reader's BI-RADS on the cases that have one.

    Args:
        lab: 0/1 labels (validated), one per case.
        reader_values: BI-RADS per case ('' or NaN where not given).
        scores: name -> validated scores of the same cases (models, and the clinical-only model).
        clusters: cluster (patient) codes per case, or None for independent cases.
        clinical: the name in ``scores`` of a clinical-only model's probability, if any.
        settings: bootstrap resamples, seed and level.
        risk_cutoffs: risk category boundaries of the categorical NRI.
        thresholds: decision-curve thresholds (for the policy's net benefit).
        reader_name: the reader column's display name.

    Returns:
        dict with n, n_positive, n_negative, n_missing, reader (AUC, intervals and the policy's
        cutoff metrics), rows (one per score: AUC, test against the reader with Holm-adjusted p,
        NRI and IDI where the score is a probability), policy (threshold, net_benefit) and notes.

    Raises:
        InputError: reader values that are not BI-RADS categories, or too few cases with one.
    """
    settings = settings or BootstrapSettings()
    present, ordinal, risk = parse_birads(reader_values)
    if present.sum() < 2 or len(set(lab[present].tolist())) < 2:
        raise InputError(
            f"The reader column has a BI-RADS value for {int(present.sum())} case(s); the comparison "
            "needs positive and negative cases with one."
        )
    y = lab[present]
    codes = None if clusters is None else np.unique(clusters[present], return_inverse=True)[1].ravel()
    boot_codes = codes if codes is not None else np.arange(y.size)
    sub = {k: np.asarray(v, dtype=float)[present] for k, v in scores.items()}
    notes: list[str] = []
    reader_row = {"score": reader_name, "role": "reader", **_auc_row(y, ordinal[present], codes, settings)}
    policy_metrics = binary_metrics(y, (ordinal[present] >= POLICY_MIN_ORDINAL).astype(float), 0.5)
    reader_row["policy"] = {
        k: policy_metrics[k] for k in ("sensitivity", "specificity", "ppv", "npv", "tp", "fp")
    }
    names = list(sub)
    mat = {reader_name: ordinal[present], **sub}
    tests = pairwise_obuchowski(y, mat, codes) if codes is not None else pairwise_delong(y, mat)
    vs_reader = {t.name_b: t for t in tests if t.name_a == reader_name}
    delong = {t.name_b: t for t in pairwise_delong(y, mat) if t.name_a == reader_name}
    holm = holm_adjust([vs_reader[n].p for n in names])
    rows: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        s = sub[name]
        t = vs_reader[name]
        row: dict[str, Any] = {
            "score": name,
            "role": "clinical-only" if name == clinical else "model",
            **_auc_row(y, s, codes, settings),
            "diff_vs_reader": -t.diff,  # score minus reader
            "p_delong": delong[name].p,
            "p": t.p,
            "p_holm": float(holm[i]),
            "test": "clustered (Obuchowski)" if codes is not None else "DeLong",
        }
        if s.min() >= 0 and s.max() <= 1:
            old = risk[present]
            row["nri_categorical"] = _improvement(
                net_reclassification(y, s, old, boot_codes, settings, cutoffs=risk_cutoffs)
            )
            row["nri_continuous"] = _improvement(
                net_reclassification(y, s, old, boot_codes, settings, cutoffs=None)
            )
            row["idi"] = _improvement(integrated_discrimination(y, s, old, boot_codes, settings))
        else:
            notes.append(f"'{name}' is not a probability: no NRI or IDI against {reader_name}.")
        rows.append(row)
    if clinical is None:
        notes.append(
            "No clinical-only model was compared: the report needs a column with a clinical-only "
            "model's probability (fitted on training data only, e.g. a logistic model of age and "
            "BI-RADS), named with --clinical-column; a DLRPredictor results CSV holds the image "
            "signatures (score_*) and the combined model ('probability' where clinical values were "
            "given) but no clinical-only score."
        )
    pt = default_thresholds() if thresholds is None else np.asarray(thresholds, dtype=float)
    policy = {"threshold": pt.tolist(), "net_benefit": policy_net_benefit(y, ordinal[present], pt).tolist()}
    n_missing = int((~present).sum())
    if n_missing:
        notes.append(
            f"{n_missing} case(s) without a {reader_name} value are left out of the reader comparison."
        )
    return {
        "reader_name": reader_name,
        "n": int(y.size),
        "n_positive": int(y.sum()),
        "n_negative": int(y.size - y.sum()),
        "n_missing": n_missing,
        "risk_cutoffs": [float(c) for c in risk_cutoffs],
        "policy_name": POLICY_NAME,
        "reader": reader_row,
        "rows": rows,
        "policy": policy,
        "notes": notes,
    }
