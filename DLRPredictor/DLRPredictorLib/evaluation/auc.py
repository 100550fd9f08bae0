"""Discrimination: AUC with its DeLong standard error, paired DeLong tests, ROC curve points.

Conventions: see :mod:`.validation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats as sps

from ..base.labels import validate_labels
from .validation import validate_scores

Z95 = float(sps.norm.ppf(0.975))  # 1.959963984540054


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

    def record(self) -> dict[str, Any]:
        """The test as a report row: score_a, score_b, auc_a, auc_b, diff, se_diff, z, p."""
        return {
            "score_a": self.name_a,
            "score_b": self.name_b,
            "auc_a": self.auc_a,
            "auc_b": self.auc_b,
            "diff": self.diff,
            "se_diff": self.se_diff,
            "z": self.z,
            "p": self.p,
        }


def structural_components(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong's structural components (placement values) of k scores, by midranks.

    ``v10[r, i]`` is the fraction of negatives that positive i outranks on score r (ties one
    half), ``v01[r, j]`` the fraction of positives that outrank negative j; both average to the AUC.

    Args:
        pos: (k, m) scores of the m positive cases.
        neg: (k, n) scores of the n negative cases.

    Returns:
        (aucs of shape (k,), v10 of shape (k, m), v01 of shape (k, n)).
    """
    m = pos.shape[1]
    n = neg.shape[1]
    # Midranks (ties get the mean of their ranks): within positives, within negatives, and pooled.
    tx = sps.rankdata(pos, method="average", axis=1)
    ty = sps.rankdata(neg, method="average", axis=1)
    tz = sps.rankdata(np.hstack([pos, neg]), method="average", axis=1)
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


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
    aucs, v10, v01 = structural_components(pos, neg)
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


def paired_from_covariance(
    aucs: np.ndarray, cov: np.ndarray, pair: tuple[int, int], names: tuple[str, str]
) -> DeLongTest:
    """Two-sided z test of ``aucs[i] = aucs[j]`` from the AUCs' covariance matrix (DeLong or clustered)."""
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
    return paired_from_covariance(aucs, cov, (0, 1), ("a", "b"))


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
    pairs = combinations(range(len(names)), 2)
    return [paired_from_covariance(aucs, cov, (i, j), (names[i], names[j])) for i, j in pairs]


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


def delong_unpaired(
    y_a: Sequence[int] | np.ndarray,
    score_a: Sequence[float] | np.ndarray,
    y_b: Sequence[int] | np.ndarray,
    score_b: Sequence[float] | np.ndarray,
) -> DeLongTest:
    """Two-sided DeLong test of AUC(a) = AUC(b) for two independent sets of cases (unpaired).

    ``z = (auc_a - auc_b) / sqrt(var_a + var_b)``: the sets share no case, so the covariance term
    of the paired test is zero (e.g. an internal and an external test set).

    Args:
        y_a: 0/1 labels of set a (both classes required).
        score_a: one score per case of set a.
        y_b: 0/1 labels of set b.
        score_b: one score per case of set b.

    Returns:
        DeLongTest with name_a "a", name_b "b".

    Raises:
        InputError: invalid labels or scores in either set.
    """
    ra, rb = auc_delong(y_a, score_a), auc_delong(y_b, score_b)
    cov = np.diag([ra.se**2, rb.se**2])
    return paired_from_covariance(np.array([ra.auc, rb.auc]), cov, (0, 1), ("a", "b"))
