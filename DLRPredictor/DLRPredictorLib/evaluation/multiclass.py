"""Metrics of a K-class endpoint: one-vs-rest AUCs, macro and micro AUC, the confusion matrix and
its per-class proportions, per-class calibration and the multinomial Brier score.

Every one-vs-rest metric is the binary metric of :mod:`.auc`, :mod:`.clustered_auc`,
:mod:`.cutoff_metrics` and :mod:`.calibration` applied to "class k" against "every other class";
the confusion matrix, accuracy, balanced accuracy and the multinomial Brier score use all K
probabilities at once. docs/STATISTICS.md says which is which and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..base.errors import InputError
from ..base.labels import label_key
from .auc import auc_delong, roc_curve_points
from .calibration import calibration
from .clustered_auc import auc_obuchowski
from .cutoff_metrics import binary_metrics, wilson_ci
from .sample_size import MIN_FOR_INTERVAL, auc_warnings, proportion_warnings

#: Largest accepted |sum of a row's probabilities - 1| (probabilities written with 4 decimals
#: may be off by a few 1e-4 after rounding; anything larger is not a probability vector).
ROW_SUM_TOL = 1e-3


def check_classes(classes: Sequence[str]) -> list[str]:
    """The declared class names, in order; at least two, distinct (case and blanks ignored)."""
    names = [str(c).strip() for c in classes]
    if len(names) < 2 or any(not n for n in names):
        raise InputError(f"Declare at least two non-empty class names, in order; got {list(classes)}.")
    keys = [label_key(n) for n in names]
    if len(set(keys)) != len(keys):
        raise InputError(f"Class names are repeated (case and blanks ignored): {names}.")
    return names


def class_indices(labels: Sequence[object] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Each label's index into ``classes`` (compared without case or surrounding blanks).

    Integer indices 0..K-1 are accepted as they are. Any other label is refused, naming it.
    """
    names = check_classes(classes)
    arr = np.asarray(labels, dtype=object).ravel()
    if arr.size and all(isinstance(v, (int, np.integer)) for v in arr):
        idx = arr.astype(int)
        if idx.min() < 0 or idx.max() >= len(names):
            raise InputError(f"Class indices must lie in 0..{len(names) - 1}; got {idx.min()}..{idx.max()}.")
        return idx
    lookup = {label_key(n): i for i, n in enumerate(names)}
    out = np.empty(arr.size, dtype=int)
    for i, v in enumerate(arr):
        code = lookup.get(label_key(str(v)))
        if code is None:
            raise InputError(
                f"Label '{v}' (case {i + 1}) is not one of the declared classes {names}; "
                "correct it or declare its class."
            )
        out[i] = code
    return out


def check_probability_matrix(prob: object, n: int, classes: Sequence[str]) -> np.ndarray:
    """The n x K probability matrix as floats: finite, in [0, 1], each row summing to 1.

    Raises:
        InputError: wrong shape, non-numeric, NaN, values outside [0, 1], or a row whose sum is
            further than :data:`ROW_SUM_TOL` from 1 (the case is named).
    """
    try:
        p = np.asarray(prob, dtype=float)
    except (TypeError, ValueError):
        raise InputError("Class probabilities must be numbers.") from None
    k = len(classes)
    if p.shape != (n, k):
        raise InputError(
            f"Expected {n} rows x {k} class probabilities ({list(classes)}); got shape {p.shape}."
        )
    if not np.isfinite(p).all():
        raise InputError(f"{int((~np.isfinite(p)).sum())} class probabilities are missing or infinite.")
    if (p < 0).any() or (p > 1).any():
        raise InputError(f"Class probabilities must lie in [0, 1]; found {p.min():.4g} to {p.max():.4g}.")
    off = np.abs(p.sum(axis=1) - 1.0)
    if (off > ROW_SUM_TOL).any():
        i = int(np.argmax(off))
        raise InputError(
            f"The class probabilities of {int((off > ROW_SUM_TOL).sum())} case(s) do not sum to 1 (case "
            f"{i + 1} sums to {p[i].sum():.6g}); give one probability per declared class, summing to 1."
        )
    return p


def decide(prob: np.ndarray, cutoffs: Sequence[float] | None = None) -> np.ndarray:
    """The predicted class of each case: argmax of ``p_k`` or, with per-class cutoffs, of ``p_k - c_k``.

    With cutoffs, a case goes to the class whose probability exceeds its cutoff by most (or falls
    short of it by least); equal cutoffs give the argmax. Ties go to the class declared first.
    """
    if cutoffs is None:
        return np.argmax(prob, axis=1)
    c = np.asarray(cutoffs, dtype=float)
    if c.shape != (prob.shape[1],) or not np.isfinite(c).all():
        raise InputError(f"Give one finite cutoff per class ({prob.shape[1]}); got {list(cutoffs)}.")
    return np.argmax(prob - c[None, :], axis=1)


def multinomial_brier(y: np.ndarray, prob: np.ndarray) -> float:
    """Brier's (1950) multi-category score: mean over cases of sum_k (p_ik - [y_i = k])^2, in [0, 2]."""
    onehot = np.eye(prob.shape[1])[y]
    return float(np.mean(np.sum((prob - onehot) ** 2, axis=1)))


def _auc_row(yk: np.ndarray, pk: np.ndarray, clusters: np.ndarray | None) -> dict[str, Any]:
    n_pos, n_neg = int(yk.sum()), int(yk.size - yk.sum())
    row: dict[str, Any] = {"n_positive": n_pos, "n_negative": n_neg}
    nan = float("nan")
    if min(n_pos, n_neg) == 0:
        return {**row, "auc": nan, "auc_se": nan, "auc_ci_low": nan, "auc_ci_high": nan}
    a = auc_delong(yk, pk)
    lo, hi = (a.ci_low, a.ci_high) if min(n_pos, n_neg) >= MIN_FOR_INTERVAL else (nan, nan)
    row.update(auc=a.auc, auc_se=a.se, auc_ci_low=lo, auc_ci_high=hi)
    if clusters is not None:
        c = auc_obuchowski(yk, pk, clusters)
        row.update(auc_clustered_se=c.se, auc_clustered_ci_low=c.ci_low, auc_clustered_ci_high=c.ci_high)
    return row


def _calibration_row(yk: np.ndarray, pk: np.ndarray) -> dict[str, Any] | None:
    if yk.min() == yk.max():
        return None
    cal = calibration(yk, pk)
    bins = [
        {"mean_predicted": float(m), "observed": float(o), "count": int(n)}
        for m, o, n in zip(cal.mean_predicted, cal.observed, cal.counts)
    ]
    return {
        "slope": cal.slope,
        "intercept": cal.intercept,
        "brier": cal.brier,
        "converged": cal.converged,
        "bins": bins,
    }


def evaluate_multiclass(
    labels: Sequence[object] | np.ndarray,
    prob: object,
    classes: Sequence[str],
    cutoffs: Mapping[str, float] | None = None,
    clusters: Sequence[object] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Every metric of a K-class endpoint, as JSON-ready values.

    Args:
        labels: class names (or indices 0..K-1), one per case.
        prob: n x K probabilities, columns in the order of ``classes``, rows summing to 1.
        classes: the declared class names, in order.
        cutoffs: class -> cutoff for the decision rule argmax_k(p_k - c_k) (every class needs
            one); None: argmax_k p_k.
        clusters: one cluster id (patient) per case: clustered (Obuchowski) AUC intervals per class
            and for the micro AUC.

    Returns:
        dict with classes, n, decision_rule, per_class (one row per class: counts, AUC with
        DeLong CI, sensitivity/specificity/PPV/NPV with Wilson CIs, calibration), confusion
        (rows: true class, columns: predicted class), accuracy (+ Wilson CI), balanced_accuracy,
        macro_auc, micro_auc (+ CI clustered by case, or by ``clusters``), multinomial_brier,
        roc (per-class curve points) and warnings.

    Raises:
        InputError: undeclared labels, a malformed probability matrix, or bad cutoffs.
    """
    names = check_classes(classes)
    y = class_indices(labels, names)
    p = check_probability_matrix(prob, y.size, names)
    k = len(names)
    cut = None
    if cutoffs is not None:
        by_key = {label_key(c): float(v) for c, v in cutoffs.items()}
        unknown = sorted(set(by_key) - {label_key(n) for n in names})
        missing = [n for n in names if label_key(n) not in by_key]
        if unknown or missing:
            raise InputError(
                f"Per-class cutoffs need exactly the declared classes {names}; unknown {unknown}, "
                f"missing {missing}."
            )
        cut = [by_key[label_key(n)] for n in names]
    pred = decide(p, cut)
    cl = None if clusters is None else np.asarray(clusters, dtype=object)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y, pred), 1)
    warnings: list[str] = []
    per_class = []
    roc = {}
    for j, name in enumerate(names):
        yk = (y == j).astype(int)
        row: dict[str, Any] = {"class": name, **_auc_row(yk, p[:, j], cl)}
        # sensitivity etc. of the decision "predicted class == k" (cutoff 0.5 on a 0/1 indicator)
        m = binary_metrics(yk, (pred == j).astype(float), 0.5)
        for key in ("tp", "fp", "tn", "fn"):
            row[key] = m[key]
        for key in ("sensitivity", "specificity", "ppv", "npv"):
            for suffix in ("", "_ci_low", "_ci_high"):
                row[key + suffix] = m[key + suffix]
        row["calibration"] = _calibration_row(yk, p[:, j])
        per_class.append(row)
        if np.isnan(row["auc"]):
            warnings.append(
                f"Class '{name}': no case {'in' if not yk.any() else 'outside'} it; its AUC is undefined."
            )
        else:
            fpr, tpr, _ = roc_curve_points(yk, p[:, j])
            roc[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
            warnings += [
                f"Class '{name}' vs rest: {w}" for w in auc_warnings(row["n_positive"], row["n_negative"])
            ]
        warnings += proportion_warnings(name, m)
    aucs = np.array([r["auc"] for r in per_class])
    correct = int(np.trace(confusion))
    acc_lo, acc_hi = wilson_ci(correct, y.size)
    sens = np.array([r["sensitivity"] for r in per_class])
    onehot = np.eye(k, dtype=int)[y]
    # Micro AUC: all n*K (case, class) cells pooled; its interval treats each case (or each
    # cluster) as a cluster of K cells, since a case's K cells are not independent.
    pooled_clusters = np.repeat(np.arange(y.size) if cl is None else cl, k)
    micro = auc_obuchowski(onehot.ravel(), p.ravel(), pooled_clusters)
    return {
        "classes": names,
        "n": int(y.size),
        "decision_rule": (
            "argmax of the class probabilities"
            if cut is None
            else "argmax of p_k - cutoff_k; cutoffs " + ", ".join(f"{n}={c:.4g}" for n, c in zip(names, cut))
        ),
        "cutoffs": cut,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "accuracy": correct / y.size,
        "accuracy_ci_low": acc_lo,
        "accuracy_ci_high": acc_hi,
        "balanced_accuracy": float(np.mean(sens)),  # NaN when a class has no case
        "macro_auc": float(np.mean(aucs)),  # NaN when a class's AUC is undefined
        "micro_auc": micro.auc,
        "micro_auc_ci_low": micro.ci_low,
        "micro_auc_ci_high": micro.ci_high,
        "multinomial_brier": multinomial_brier(y, p),
        "roc": roc,
        "warnings": warnings,
    }
