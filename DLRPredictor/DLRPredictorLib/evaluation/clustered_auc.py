"""AUC of clustered data (several cases per patient): Obuchowski's (1997) nonparametric estimator.

Two views of one lesion, or two lesions of one patient, are not independent cases; DeLong's
variance treats them as such and is too small when their scores are correlated. Obuchowski's
estimator keeps the AUC (every positive against every negative, across and within patients) and
estimates its variance from per-patient sums of DeLong's structural components. With one case
per patient it equals DeLong's variance exactly.

Reference: Obuchowski NA. Nonparametric analysis of clustered ROC curve data. Biometrics
1997;53:567-578 (equations for the AUC, its variance and the covariance of two AUCs).

Conventions: see :mod:`.validation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ..base.errors import InputError
from ..base.labels import validate_labels
from .auc import Z95, DeLongTest, paired_from_covariance, structural_components
from .validation import validate_scores


@dataclass(frozen=True)
class ClusteredAuc:
    """AUC with Obuchowski's clustered standard error and 95% Wald CI (clipped to [0, 1])."""

    auc: float
    se: float
    ci_low: float
    ci_high: float
    n_clusters: int
    n_clusters_positive: int
    n_clusters_negative: int


def cluster_codes(clusters: Sequence[object] | np.ndarray, n: int) -> np.ndarray:
    """Cluster labels (e.g. patient ids) as integer codes 0..I-1; the labels themselves are dropped.

    Args:
        clusters: one label per case; cases with equal labels belong to one cluster.
        n: expected number of cases.

    Returns:
        int array of length n.

    Raises:
        InputError: wrong length or a missing label.
    """
    arr = np.asarray(clusters, dtype=object)
    if arr.ndim != 1 or arr.size != n:
        raise InputError(f"Give one cluster id per case: got {arr.size} ids for {n} cases.")
    text = np.array(["" if v is None else str(v).strip() for v in arr], dtype=object)
    missing = np.flatnonzero((text == "") | (text == "nan"))
    if missing.size:
        raise InputError(
            f"{missing.size} case(s) have no cluster id (positions {missing[:5].tolist()}...); "
            "give every case its patient id."
        )
    _, codes = np.unique(text.astype(str), return_inverse=True)
    return codes.astype(int).ravel()


def _obuchowski(
    lab: np.ndarray, mat: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """AUCs (k,) and their clustered covariance (k, k) for k scores ``mat`` (k, N)."""
    pos_mask = lab == 1
    aucs, v10, v01 = structural_components(mat[:, pos_mask], mat[:, ~pos_mask])
    n1, n0 = int(pos_mask.sum()), int((~pos_mask).sum())
    n_clusters = int(codes.max()) + 1
    # Per-cluster sums of the structural components (V10_i, V01_i) and case counts (m_i, n_i).
    k = mat.shape[0]
    v10_sum = np.zeros((k, n_clusters))
    v01_sum = np.zeros((k, n_clusters))
    for r in range(k):
        v10_sum[r] = np.bincount(codes[pos_mask], weights=v10[r], minlength=n_clusters)
        v01_sum[r] = np.bincount(codes[~pos_mask], weights=v01[r], minlength=n_clusters)
    m_i = np.bincount(codes[pos_mask], minlength=n_clusters)
    n_i = np.bincount(codes[~pos_mask], minlength=n_clusters)
    i1, i0 = int((m_i > 0).sum()), int((n_i > 0).sum())
    a = v10_sum - aucs[:, None] * m_i[None, :]  # zero for clusters without positives
    b = v01_sum - aucs[:, None] * n_i[None, :]
    s10 = i1 / ((i1 - 1) * n1) * (a @ a.T) if i1 > 1 else np.zeros((k, k))
    s01 = i0 / ((i0 - 1) * n0) * (b @ b.T) if i0 > 1 else np.zeros((k, k))
    s11 = n_clusters / (n_clusters - 1) * (a @ b.T) if n_clusters > 1 else np.zeros((k, k))
    cov = s10 / n1 + s01 / n0 + (s11 + s11.T) / (n1 * n0)
    return aucs, cov, (n_clusters, i1, i0)


def _inputs(
    y: Sequence[int] | np.ndarray, clusters: Sequence[object] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    lab = validate_labels(y)
    return lab, cluster_codes(clusters, lab.size)


def auc_obuchowski(
    y: Sequence[int] | np.ndarray,
    score: Sequence[float] | np.ndarray,
    clusters: Sequence[object] | np.ndarray,
) -> ClusteredAuc:
    """AUC with Obuchowski's (1997) clustered variance and a 95% Wald CI clipped to [0, 1].

    Args:
        y: 0/1 labels (both classes required).
        score: one finite score per case.
        clusters: one cluster id (patient) per case.

    Returns:
        ClusteredAuc.

    Raises:
        InputError: invalid labels, scores or cluster ids.
    """
    lab, codes = _inputs(y, clusters)
    s = validate_scores(score, lab.size)
    aucs, cov, (n_cl, i1, i0) = _obuchowski(lab, s[None, :], codes)
    auc = float(aucs[0])
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    return ClusteredAuc(auc, se, max(0.0, auc - Z95 * se), min(1.0, auc + Z95 * se), n_cl, i1, i0)


def pairwise_obuchowski(
    y: Sequence[int] | np.ndarray,
    scores: Mapping[str, Sequence[float] | np.ndarray],
    clusters: Sequence[object] | np.ndarray,
) -> list[DeLongTest]:
    """Paired clustered tests (Obuchowski 1997) for every pair of named scores, unadjusted p.

    ``z = (auc_a - auc_b) / sqrt(var_a + var_b - 2 cov_ab)`` with the clustered (co)variances.

    Args:
        y: 0/1 labels (both classes required).
        scores: name -> one score per case.
        clusters: one cluster id (patient) per case.

    Returns:
        One DeLongTest per unordered pair (its fields hold the clustered statistics).

    Raises:
        InputError: invalid labels, scores or cluster ids.
    """
    lab, codes = _inputs(y, clusters)
    names = list(scores)
    if len(names) < 2:
        return []
    mat = np.vstack([validate_scores(scores[nm], lab.size, nm) for nm in names])
    aucs, cov, _ = _obuchowski(lab, mat, codes)
    pairs = combinations(range(len(names)), 2)
    return [paired_from_covariance(aucs, cov, (i, j), (names[i], names[j])) for i, j in pairs]
