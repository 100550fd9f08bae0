"""Logistic regressions of clinical predictors: odds-ratio tables and predictor selection.

- :func:`univariable_logistic` / :func:`multivariable_logistic`: statsmodels Logit odds ratios
  with 95% CIs and Wald p values (:data:`TABLE_COLUMNS`).
- :func:`select_predictors` picks the predictors of the multivariable / combined model.
- :func:`fit_logit` (the statsmodels fit with a note on separation or non-convergence),
  :func:`design_matrix` and :func:`table_rows` are shared with :mod:`.combined`.

pandas and statsmodels are imported inside the fitting functions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.compat import zip_strict
from ..base.errors import InputError
from ..base.labels import TRAINING_NEEDS_BOTH, validate_labels

if TYPE_CHECKING:
    import pandas as pd

TABLE_COLUMNS = ["predictor", "coef", "se", "odds_ratio", "ci_lower", "ci_upper", "p_value", "n", "note"]


@dataclass
class LogitFit:
    """Estimates of one Logit fit, constant first: coefficients, standard errors, 95% CIs, Wald p."""

    params: np.ndarray
    bse: np.ndarray
    ci: np.ndarray
    pvalues: np.ndarray
    note: str


def fit_logit(design: np.ndarray, y: np.ndarray) -> LogitFit:
    """statsmodels Logit with a note on separation / non-convergence (design includes the constant)."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import (
        ConvergenceWarning,
        PerfectSeparationError,
        PerfectSeparationWarning,
    )

    note = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.Logit(y, design).fit(disp=0, maxiter=200)
        except PerfectSeparationError:
            raise InputError(
                "a clinical predictor separates the classes perfectly; its odds ratio is infinite"
            ) from None
        except np.linalg.LinAlgError:
            raise InputError(
                "clinical predictors are constant or collinear (singular design); remove redundant ones"
            ) from None
    kinds = {type(w.message) for w in caught}
    if PerfectSeparationWarning in kinds:
        note = "perfect separation: estimate unreliable"
    elif ConvergenceWarning in kinds or not res.mle_retvals.get("converged", True):
        note = "did not converge: estimate unreliable"
    return LogitFit(
        params=np.asarray(res.params, dtype=float),
        bse=np.asarray(res.bse, dtype=float),
        ci=np.asarray(res.conf_int(alpha=0.05), dtype=float),
        pvalues=np.asarray(res.pvalues, dtype=float),
        note=note,
    )


def design_matrix(X: Any, names: Sequence[str], n: int) -> np.ndarray:
    """The (n, len(names)) float matrix of encoded predictors; InputError for a wrong shape or NaN."""
    M = np.asarray(X, dtype=float)
    if M.ndim == 1:
        M = M[:, None]
    if M.shape != (n, len(names)):
        raise InputError(
            f"clinical matrix has shape {M.shape}; expected ({n}, {len(names)}) for {list(names)}"
        )
    if not np.isfinite(M).all():
        raise InputError("clinical matrix has missing or infinite values; encode values with encode_clinical")
    return M


def _safe_exp(x: float) -> float:
    """exp() that gives inf instead of raising for the huge CIs of (quasi-)separated fits."""
    return math.exp(x) if x < 700 else math.inf


def table_rows(fit: LogitFit, names: Sequence[str], n: int, skip_const: bool = True) -> list[dict[str, Any]]:
    """One :data:`TABLE_COLUMNS` row per named predictor (odds ratios and CIs exponentiated)."""
    start = 1 if skip_const else 0
    rows = []
    for j, name in enumerate(names, start=start):
        rows.append(
            {
                "predictor": name,
                "coef": fit.params[j],
                "se": fit.bse[j],
                "odds_ratio": _safe_exp(fit.params[j]),
                "ci_lower": _safe_exp(fit.ci[j, 0]),
                "ci_upper": _safe_exp(fit.ci[j, 1]),
                "p_value": fit.pvalues[j],
                "n": n,
                "note": fit.note,
            }
        )
    return rows


def univariable_logistic(X: Any, y: Any, names: Sequence[str]) -> pd.DataFrame:
    """One logistic regression per predictor (with intercept): odds ratio, 95% CI, Wald p.

    Args:
        X: (n, k) encoded clinical matrix.
        y: 0/1 labels.
        names: the k predictor names.

    Returns:
        DataFrame with columns predictor, coef, se, odds_ratio, ci_lower, ci_upper, p_value, n, note.
        A constant predictor gets NaN estimates and a note instead of failing.
    """
    import pandas as pd

    yb = validate_labels(y, why_both=TRAINING_NEEDS_BOTH)
    M = design_matrix(X, names, len(yb))
    rows = []
    for j, name in enumerate(names):
        x = M[:, j]
        if np.ptp(x) == 0:
            rows.append(
                {c: np.nan for c in TABLE_COLUMNS} | {"predictor": name, "n": len(yb), "note": "constant"}
            )
            continue
        fit = fit_logit(np.column_stack([np.ones(len(yb)), x]), yb)
        rows.extend(table_rows(fit, [name], len(yb)))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def multivariable_logistic(X: Any, y: Any, names: Sequence[str]) -> pd.DataFrame:
    """One joint logistic regression of all predictors: adjusted odds ratios, 95% CI, Wald p.

    Returns:
        DataFrame with the columns of :func:`univariable_logistic`, one row per predictor.

    Raises:
        InputError: constant or collinear predictors.
    """
    import pandas as pd

    yb = validate_labels(y, why_both=TRAINING_NEEDS_BOTH)
    M = design_matrix(X, names, len(yb))
    fit = fit_logit(np.column_stack([np.ones(len(yb)), M]), yb)
    return pd.DataFrame(table_rows(fit, names, len(yb)), columns=TABLE_COLUMNS)


def select_predictors(table: pd.DataFrame, alpha: float = 0.05, min_keep: int = 1) -> list[str]:
    """Predictors with univariable p < alpha (table order); at least the ``min_keep`` smallest p.

    One-hot columns are treated as separate predictors: a level that is kept is compared with
    the reference merged with the levels that are not.
    """
    p = table["p_value"].astype(float).fillna(1.0).to_numpy()
    names = list(table["predictor"])
    keep = [n for n, pv in zip_strict(names, p) if pv < alpha]
    if len(keep) >= min_keep:
        return keep
    order = np.lexsort((np.arange(len(p)), p))[:min_keep]
    return [names[i] for i in sorted(order.tolist())]
