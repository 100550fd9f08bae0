"""Calibration: binned curve, logistic recalibration slope and intercept, Brier score, Hosmer-Lemeshow.

Conventions: see :mod:`.validation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ..base.errors import InputError
from ..base.labels import validate_labels
from .validation import validate_probabilities

# Probabilities of exactly 0 or 1 have infinite logits; they are clipped to [EPS, 1 - EPS] before
# the logistic recalibration fit only (nowhere else).
LOGIT_EPS = 1e-8


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
