"""Evaluation statistics for binary predictions: discrimination, cutoffs, calibration, net benefit.

Conventions used throughout:
- ``y`` holds 0/1 labels, 1 being the positive class (for the default bundle: malignant).
- A higher score means "more likely positive".
- A case is called positive at a cutoff when ``score >= cutoff``.
- Expected input problems (lengths, NaN, labels other than 0/1, a single class where two are
  needed) raise :class:`~DLRPredictorLib.base.errors.InputError` with a message saying what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..base.errors import InputError

Z95 = float(sps.norm.ppf(0.975))  # 1.959963984540054
# Probabilities of exactly 0 or 1 have infinite logits; they are clipped to [EPS, 1 - EPS] before
# the logistic recalibration fit only (nowhere else).
LOGIT_EPS = 1e-8


@dataclass(frozen=True)
class AucResult:
    """Area under the ROC curve with its DeLong standard error and 95% Wald CI (clipped to [0, 1])."""

    auc: float
    se: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class DeLongTest:
    """Paired DeLong test of two AUCs computed on the same cases (two-sided)."""

    auc_a: float
    auc_b: float
    diff: float  # auc_a - auc_b
    z: float
    p: float
    name_a: str = "a"
    name_b: str = "b"
    se_diff: float = float("nan")


@dataclass(frozen=True)
class CalibrationResult:
    """Binned calibration curve, logistic recalibration parameters and Brier score.

    Attributes:
        bin_edges: the ``n_bins + 1`` edges of the predicted-probability bins.
        mean_predicted: mean predicted probability per non-empty bin.
        observed: observed event rate per non-empty bin.
        counts: number of cases per non-empty bin.
        bin_index: index (into the bins) of each non-empty bin.
        slope: ``b`` of ``logit P(y=1) = a + b * logit(p)`` (ideal 1; < 1 means over-fitted,
            too extreme predictions).
        intercept: calibration-in-the-large, ``a`` of ``logit P(y=1) = a + 1 * logit(p)`` with the
            slope fixed at 1 (logit(p) as an offset); ideal 0, > 0 means risks are under-estimated.
        intercept_joint: ``a`` of the joint fit that gives ``slope``.
        brier: mean squared error of the probabilities, ``mean((p - y) ** 2)``.
        converged: False when a logistic fit did not converge (e.g. perfect separation); then the
            affected parameters are NaN.
    """

    bin_edges: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray
    counts: np.ndarray
    bin_index: np.ndarray
    slope: float
    intercept: float
    intercept_joint: float
    brier: float
    converged: bool


# ----------------------------------------------------------------------------------- validation


def validate_labels(y: object, *, need_both: bool = True) -> np.ndarray:
    """Check labels and return them as a 0/1 int array.

    Args:
        y: labels; bool or numbers equal to 0 or 1.
        need_both: require at least one case of each class.

    Returns:
        int array of 0/1.

    Raises:
        InputError: empty, not 1-D, missing, non-0/1 labels, or a single class when need_both.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputError(f"Labels must be a 1-D list of 0/1 values; got an array of shape {arr.shape}.")
    if arr.size == 0:
        raise InputError("No cases to evaluate: the label list is empty.")
    if arr.dtype == bool:
        arr = arr.astype(int)
    try:
        num = arr.astype(float)
    except (TypeError, ValueError):
        raise InputError(
            "Labels must be 0 (negative) or 1 (positive); found non-numeric values such as "
            f"{sorted({str(v) for v in arr.tolist()})[:5]}. Convert them to 0/1 first."
        ) from None
    if np.isnan(num).any():
        raise InputError(
            f"{int(np.isnan(num).sum())} label(s) are missing (NaN); remove those cases or give their label."
        )
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        raise InputError(
            "Labels must be 0 (negative) or 1 (positive); found "
            f"{sorted(set(num[bad].tolist()))[:5]}. Recode the labels as 0/1."
        )
    lab = num.astype(int)
    if need_both and (lab.min() == lab.max()):
        only = "positive (1)" if lab[0] == 1 else "negative (0)"
        raise InputError(
            f"All {lab.size} cases are {only}; ROC/AUC, cutoffs and calibration need both positive "
            "and negative cases. Evaluate on a set that contains both classes."
        )
    return lab


def validate_scores(score: object, n: int, name: str = "score") -> np.ndarray:
    """Check scores and return them as a float array.

    Args:
        score: one number per case.
        n: expected number of cases.
        name: the score's name, used in messages.

    Returns:
        float array of length n.

    Raises:
        InputError: not 1-D, non-numeric, wrong length, NaN or infinite values.
    """
    arr = np.asarray(score)
    if arr.ndim != 1:
        raise InputError(f"Scores '{name}' must be a 1-D list of numbers; got shape {arr.shape}.")
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError):
        raise InputError(
            f"Scores '{name}' contain non-numeric values; every score must be a number."
        ) from None
    if arr.size != n:
        raise InputError(
            f"Scores '{name}' have {arr.size} values but there are {n} labels; give one score per case."
        )
    nonfinite = ~np.isfinite(arr)
    if nonfinite.any():
        where = np.flatnonzero(nonfinite)[:5].tolist()
        raise InputError(
            f"Scores '{name}' have {int(nonfinite.sum())} missing or infinite value(s) (positions "
            f"{where}...); remove those cases or fill in their scores."
        )
    return arr


def validate_probabilities(prob: object, n: int, name: str = "probability") -> np.ndarray:
    """Like :func:`validate_scores`, and also require values in [0, 1].

    Args:
        prob: one probability per case.
        n: expected number of cases.
        name: the score's name, used in messages.

    Returns:
        float array of length n.

    Raises:
        InputError: as validate_scores, or a value outside [0, 1].
    """
    p = validate_scores(prob, n, name)
    if (p < 0).any() or (p > 1).any():
        raise InputError(
            f"'{name}' must be probabilities in [0, 1]; found values from {p.min():.4g} to "
            f"{p.max():.4g}. Calibration and net benefit need probabilities, not raw scores."
        )
    return p


# ------------------------------------------------------------------------------------ DeLong AUC


def _fast_delong(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance for k scores (Sun & Xu 2014, fast DeLong).

    Args:
        pos: (k, m) scores of the m positive cases.
        neg: (k, n) scores of the n negative cases.

    Returns:
        (aucs of shape (k,), covariance of shape (k, k)).
    """
    k, m = pos.shape
    n = neg.shape[1]
    # Midranks (ties get the mean of their ranks): within positives, within negatives, and pooled.
    tx = sps.rankdata(pos, method="average", axis=1)
    ty = sps.rankdata(neg, method="average", axis=1)
    tz = sps.rankdata(np.hstack([pos, neg]), method="average", axis=1)
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n  # structural components of the positives
    v01 = 1.0 - (tz[:, m:] - ty) / m  # structural components of the negatives
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((k, k))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((k, k))
    return aucs, s10 / m + s01 / n


def _split(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return scores[:, y == 1], scores[:, y == 0]


def auc_delong(y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> AucResult:
    """AUC with the DeLong (1988) standard error, computed by the fast algorithm of Sun & Xu (2014).

    The 95% CI is the plain Wald interval ``auc +/- 1.96 * se`` (no logit transform), clipped to
    [0, 1]. Ties between a positive and a negative count one half.

    Args:
        y: 0/1 labels (both classes required).
        score: one finite score per case, higher meaning more likely positive.

    Returns:
        AucResult(auc, se, ci_low, ci_high).

    Raises:
        InputError: mismatched lengths, NaN/inf scores, labels other than 0/1, or a single class.
    """
    lab = validate_labels(y)
    s = validate_scores(score, lab.size)
    pos, neg = _split(lab, s[None, :])
    aucs, cov = _fast_delong(pos, neg)
    auc = float(aucs[0])
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    return AucResult(auc, se, max(0.0, auc - Z95 * se), min(1.0, auc + Z95 * se))


def _paired(aucs: np.ndarray, cov: np.ndarray, pair: tuple[int, int], names: tuple[str, str]) -> DeLongTest:
    i, j = pair
    diff = float(aucs[i] - aucs[j])
    var = float(cov[i, i] + cov[j, j] - 2.0 * cov[i, j])
    se = float(np.sqrt(max(var, 0.0)))
    if se > 1e-12:  # below this the variance is rounding noise of an exact zero
        z = diff / se
        p = float(2.0 * sps.norm.sf(abs(z)))
    elif diff == 0:
        # Identical rankings of the cases: no evidence of a difference.
        z, p = 0.0, 1.0
    else:
        # A difference with zero variance (e.g. a perfect score versus a constant one).
        z, p = float(np.copysign(np.inf, diff)), 0.0
    return DeLongTest(float(aucs[i]), float(aucs[j]), diff, float(z), p, names[0], names[1], se)


def delong_test(
    y: Sequence[int] | np.ndarray,
    score_a: Sequence[float] | np.ndarray,
    score_b: Sequence[float] | np.ndarray,
) -> DeLongTest:
    """Paired two-sided DeLong test of AUC(a) = AUC(b) for two scores of the same cases.

    ``z = (auc_a - auc_b) / sqrt(var_a + var_b - 2 cov_ab)``; ``p = 2 * (1 - Phi(|z|))``. When the
    variance of the difference is 0, z = 0 and p = 1 if the AUCs are equal, else z = +/-inf, p = 0.

    Args:
        y: 0/1 labels (both classes required).
        score_a: first score, one per case.
        score_b: second score, one per case.

    Returns:
        DeLongTest(auc_a, auc_b, diff, z, p, ...).

    Raises:
        InputError: invalid labels or scores (see :func:`auc_delong`).
    """
    lab = validate_labels(y)
    a = validate_scores(score_a, lab.size, "a")
    b = validate_scores(score_b, lab.size, "b")
    pos, neg = _split(lab, np.vstack([a, b]))
    aucs, cov = _fast_delong(pos, neg)
    return _paired(aucs, cov, (0, 1), ("a", "b"))


def pairwise_delong(
    y: Sequence[int] | np.ndarray, scores: Mapping[str, Sequence[float] | np.ndarray]
) -> list[DeLongTest]:
    """Paired DeLong tests for every pair of named scores (in the mapping's order), unadjusted p.

    Args:
        y: 0/1 labels (both classes required).
        scores: name -> one score per case.

    Returns:
        One DeLongTest per unordered pair, with ``name_a`` / ``name_b`` set.

    Raises:
        InputError: invalid labels or scores.
    """
    lab = validate_labels(y)
    names = list(scores)
    if len(names) < 2:
        return []
    mat = np.vstack([validate_scores(scores[nm], lab.size, nm) for nm in names])
    pos, neg = _split(lab, mat)
    aucs, cov = _fast_delong(pos, neg)
    return [_paired(aucs, cov, (i, j), (names[i], names[j])) for i, j in combinations(range(len(names)), 2)]


def roc_curve_points(
    y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve vertices: one per distinct score, from (0, 0) to (1, 1).

    Args:
        y: 0/1 labels (both classes required).
        score: one finite score per case.

    Returns:
        (fpr, tpr, thresholds); thresholds decrease, the first is +inf (nobody called positive);
        point i counts cases with ``score >= thresholds[i]`` as positive.

    Raises:
        InputError: invalid labels or scores.
    """
    lab = validate_labels(y)
    s = validate_scores(score, lab.size)
    thr = np.unique(s)[::-1]
    # Cases with score >= t: count via sorted positions.
    pos_sorted = np.sort(s[lab == 1])
    neg_sorted = np.sort(s[lab == 0])
    tp = pos_sorted.size - np.searchsorted(pos_sorted, thr, side="left")
    fp = neg_sorted.size - np.searchsorted(neg_sorted, thr, side="left")
    tpr = np.concatenate([[0.0], tp / pos_sorted.size])
    fpr = np.concatenate([[0.0], fp / neg_sorted.size])
    return fpr, tpr, np.concatenate([[np.inf], thr])


# ------------------------------------------------------------------------------- cutoff metrics


def wilson_ci(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (NaN, NaN) when ``total`` is 0.

    Chosen over the Wald interval because it keeps close to nominal coverage for the small counts
    and the proportions near 0 or 1 that sensitivity/specificity often have, and never leaves
    [0, 1]; it equals statsmodels' ``proportion_confint(method="wilson")``.

    Args:
        successes: number of successes.
        total: number of trials.
        z: normal quantile (1.96 for 95%).

    Returns:
        (low, high).
    """
    if total <= 0:
        return float("nan"), float("nan")
    p = successes / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * np.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _proportion(num: int, den: int) -> tuple[float, float, float]:
    if den == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = wilson_ci(num, den)
    return num / den, lo, hi


def binary_metrics(
    y: Sequence[int] | np.ndarray, prob: Sequence[float] | np.ndarray, cutoff: float
) -> dict[str, float | int]:
    """Confusion counts and accuracy, sensitivity, specificity, PPV, NPV at a cutoff.

    A case is predicted positive when ``prob >= cutoff``. Each proportion comes with its 95% Wilson
    score interval (see :func:`wilson_ci`) as ``<name>_ci_low`` / ``<name>_ci_high`` and its
    numerator / denominator counts. A proportion with a zero denominator (e.g. sensitivity when
    there are no positives, PPV when nobody is called positive) is NaN. A single class is allowed.

    Args:
        y: 0/1 labels.
        prob: one finite score per case (probabilities or any score on the cutoff's scale).
        cutoff: decision threshold.

    Returns:
        dict with cutoff, n, tp, fp, tn, fn and, for accuracy, sensitivity, specificity, ppv,
        npv: the value, ``_ci_low``, ``_ci_high``, ``_num`` and ``_den``.

    Raises:
        InputError: invalid labels or scores, or a non-finite cutoff.
    """
    lab = validate_labels(y, need_both=False)
    s = validate_scores(prob, lab.size)
    if not np.isfinite(cutoff):
        raise InputError(f"The cutoff must be a finite number; got {cutoff!r}.")
    pred = s >= cutoff
    tp = int(np.sum(pred & (lab == 1)))
    fp = int(np.sum(pred & (lab == 0)))
    tn = int(np.sum(~pred & (lab == 0)))
    fn = int(np.sum(~pred & (lab == 1)))
    out: dict[str, float | int] = {
        "cutoff": float(cutoff),
        "n": int(lab.size),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }
    parts = {
        "accuracy": (tp + tn, lab.size),
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
    }
    for name, (num, den) in parts.items():
        val, lo, hi = _proportion(int(num), int(den))
        out[name] = val
        out[f"{name}_ci_low"] = lo
        out[f"{name}_ci_high"] = hi
        out[f"{name}_num"] = int(num)
        out[f"{name}_den"] = int(den)
    return out


def youden_cutoff(y: Sequence[int] | np.ndarray, prob: Sequence[float] | np.ndarray) -> float:
    """Cutoff maximising Youden's J = sensitivity + specificity - 1 (positive when ``prob >= cutoff``).

    Candidates are the distinct observed values (J only changes there). Ties in J are broken by
    returning the SMALLEST such cutoff, i.e. the most sensitive one: when triaging possible
    malignancy a missed cancer costs more than an extra biopsy. J is compared exactly, in integer
    counts, so rounding cannot break a tie. Choosing a cutoff this way on the data being evaluated
    is optimistic; freeze it on training data.

    Args:
        y: 0/1 labels (both classes required).
        prob: one finite score per case.

    Returns:
        The cutoff.

    Raises:
        InputError: invalid labels or scores.
    """
    lab = validate_labels(y)
    s = validate_scores(prob, lab.size)
    cand = np.unique(s)  # ascending
    pos_sorted = np.sort(s[lab == 1])
    neg_sorted = np.sort(s[lab == 0])
    n_pos, n_neg = pos_sorted.size, neg_sorted.size
    tp = n_pos - np.searchsorted(pos_sorted, cand, side="left")
    tn = np.searchsorted(neg_sorted, cand, side="left")
    # J * n_pos * n_neg, exact in integers.
    j_scaled = tp.astype(np.int64) * n_neg + tn.astype(np.int64) * n_pos
    best = int(np.flatnonzero(j_scaled == j_scaled.max())[0])  # first = smallest cutoff
    return float(cand[best])


# ------------------------------------------------------------------------------------ calibration


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(q / (1 - q))


def _fit_logistic(x: np.ndarray, y: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, bool]:
    """Maximum-likelihood logistic regression by Newton-Raphson with step halving.

    Args:
        x: (n, k) design matrix (include a column of ones for an intercept).
        y: 0/1 outcomes.
        offset: fixed term added to the linear predictor.

    Returns:
        (coefficients, converged); coefficients are NaN when the fit did not converge.
    """

    def loglik(beta: np.ndarray) -> float:
        eta = offset + x @ beta
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    beta = np.zeros(x.shape[1])
    ll = loglik(beta)
    for _ in range(100):
        eta = offset + x @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1 - mu)
        grad = x.T @ (y - mu)
        hess = (x * w[:, None]).T @ x
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-10:
            new = beta + t * step
            new_ll = loglik(new)
            if new_ll >= ll - 1e-12:
                break
            t /= 2
        beta, old_ll, ll = new, ll, new_ll
        if np.max(np.abs(beta)) > 1e4:
            break  # diverging: (quasi-)separation
        if abs(ll - old_ll) < 1e-12 * (1 + abs(ll)) and np.max(np.abs(t * step)) < 1e-9:
            return beta, True
    return np.full(x.shape[1], np.nan), False


def calibration(
    y: Sequence[int] | np.ndarray,
    prob: Sequence[float] | np.ndarray,
    n_bins: int = 10,
    strategy: str = "uniform",
) -> CalibrationResult:
    """Calibration curve, logistic recalibration slope and intercept, and Brier score.

    Slope: ``b`` from the joint fit ``logit P(y=1) = a + b * logit(p)``. Intercept: calibration-in-
    the-large, ``a`` from ``logit P(y=1) = a + logit(p)`` (slope fixed at 1 via an offset); the joint
    fit's ``a`` is kept as ``intercept_joint``. Probabilities are clipped to [1e-8, 1 - 1e-8] for the
    logits only.

    Args:
        y: 0/1 labels (both classes required).
        prob: predicted probabilities in [0, 1].
        n_bins: number of bins for the curve.
        strategy: "uniform" (equal-width bins on [0, 1]) or "quantile" (equal-count bins).

    Returns:
        CalibrationResult; empty bins are left out of the curve arrays.

    Raises:
        InputError: invalid labels or probabilities, n_bins < 1 or an unknown strategy.
    """
    lab = validate_labels(y)
    p = validate_probabilities(prob, lab.size)
    if n_bins < 1:
        raise InputError(f"n_bins must be at least 1; got {n_bins}.")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1))
    else:
        raise InputError(f"Unknown calibration bin strategy '{strategy}'; use 'uniform' or 'quantile'.")
    # Bins are [e0, e1], (e1, e2], ..., like pandas.cut(include_lowest=True).
    idx = np.clip(np.searchsorted(edges[1:-1], p, side="left"), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=lab.astype(float), minlength=n_bins)
    keep = counts > 0
    lp = _logit(p)
    yf = lab.astype(float)
    ones = np.ones((lab.size, 1))
    joint, ok_joint = _fit_logistic(np.column_stack([ones, lp]), yf, np.zeros(lab.size))
    citl, ok_citl = _fit_logistic(ones, yf, lp)
    return CalibrationResult(
        bin_edges=edges,
        mean_predicted=sum_p[keep] / counts[keep],
        observed=sum_y[keep] / counts[keep],
        counts=counts[keep],
        bin_index=np.flatnonzero(keep),
        slope=float(joint[1]),
        intercept=float(citl[0]),
        intercept_joint=float(joint[0]),
        brier=float(np.mean((p - yf) ** 2)),
        converged=bool(ok_joint and ok_citl),
    )


def hosmer_lemeshow(
    y: Sequence[int] | np.ndarray, prob: Sequence[float] | np.ndarray, groups: int = 10
) -> tuple[float, int, float]:
    """Hosmer-Lemeshow goodness-of-fit test over groups of risk (deciles by default).

    Groups are quantile bins of the predicted probability, ``[q0, q1], (q1, q2], ...`` (as
    ``pandas.qcut``); when ties make quantiles coincide, the duplicates are dropped and there are
    fewer groups. ``H = sum_g (O_g - E_g)^2 / (E_g (1 - E_g / n_g))`` and p from chi-squared with
    ``dof = (number of non-empty groups) - 2``.

    Args:
        y: 0/1 labels (both classes required).
        prob: predicted probabilities in [0, 1].
        groups: requested number of risk groups.

    Returns:
        (statistic, dof, p).

    Raises:
        InputError: invalid inputs, or fewer than 3 distinct risk groups could be formed.
    """
    lab = validate_labels(y)
    p = validate_probabilities(prob, lab.size)
    edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, groups + 1)))
    idx = np.searchsorted(edges[1:-1], p, side="left")
    n_bins = max(edges.size - 1, 1)
    n_g = np.bincount(idx, minlength=n_bins).astype(float)
    obs = np.bincount(idx, weights=lab.astype(float), minlength=n_bins)
    exp = np.bincount(idx, weights=p, minlength=n_bins)
    formed = n_g > 0  # with few cases some quantile bins stay empty; they are not groups
    n_g, obs, exp = n_g[formed], obs[formed], exp[formed]
    n_groups = int(formed.sum())
    if n_groups < 3:
        raise InputError(
            f"Hosmer-Lemeshow needs at least 3 risk groups but the probabilities allow only "
            f"{n_groups} (too few distinct values)."
        )
    var = exp * (1.0 - exp / n_g)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(var > 0, (obs - exp) ** 2 / var, np.where(obs == exp, 0.0, np.inf))
    stat = float(terms.sum())
    dof = n_groups - 2
    return stat, dof, float(sps.chi2.sf(stat, dof))


# ---------------------------------------------------------------------------------- decision curve


def default_thresholds() -> np.ndarray:
    """Threshold probabilities 0.01, 0.02, ..., 0.99 for decision curves."""
    return np.round(np.arange(1, 100) / 100.0, 2)


def decision_curve(
    y: Sequence[int] | np.ndarray,
    prob: Sequence[float] | np.ndarray,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Net benefit of the model, of treating all and of treating none (Vickers & Elkin 2006).

    ``net_benefit = TP/n - FP/n * pt / (1 - pt)`` with positives ``prob >= pt``;
    ``treat_all = prevalence - (1 - prevalence) * pt / (1 - pt)``; ``treat_none = 0``.

    Args:
        y: 0/1 labels.
        prob: predicted probabilities in [0, 1].
        thresholds: threshold probabilities pt, each strictly between 0 and 1 (default 0.01-0.99).

    Returns:
        DataFrame with columns threshold, tp, fp, net_benefit, treat_all, treat_none.

    Raises:
        InputError: invalid inputs or thresholds outside (0, 1).
    """
    lab = validate_labels(y, need_both=False)
    p = validate_probabilities(prob, lab.size)
    pt = default_thresholds() if thresholds is None else np.asarray(thresholds, dtype=float).ravel()
    if pt.size == 0 or not np.all((pt > 0) & (pt < 1)):
        raise InputError("Decision-curve thresholds must be probabilities strictly between 0 and 1.")
    n = lab.size
    pos = np.sort(p[lab == 1])
    neg = np.sort(p[lab == 0])
    tp = pos.size - np.searchsorted(pos, pt, side="left")
    fp = neg.size - np.searchsorted(neg, pt, side="left")
    odds = pt / (1 - pt)
    prevalence = pos.size / n
    return pd.DataFrame(
        {
            "threshold": pt,
            "tp": tp.astype(int),
            "fp": fp.astype(int),
            "net_benefit": tp / n - fp / n * odds,
            "treat_all": prevalence - (1 - prevalence) * odds,
            "treat_none": np.zeros(pt.size),
        }
    )
