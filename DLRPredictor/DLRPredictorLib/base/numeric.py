"""expit, logit and softmax in plain numpy, for the code that applies a frozen bundle.

They follow scipy.special's formulas (expit = 1 / (1 + exp(-x)); logit = log(p / (1 - p)), with
log1p(2(p - 0.5)) - log1p(-2(p - 0.5)) for p in [0.3, 0.65] where the quotient loses precision)
and, like scipy's ufuncs, give 0 / 1 / +-inf / NaN at the extremes without warnings. Keeping them
here lets the prediction path run on numpy alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def expit(x: Any) -> Any:
    """The logistic function 1 / (1 + exp(-x)), elementwise (a float for a scalar input)."""
    with np.errstate(over="ignore"):
        out = 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))
    return out if out.ndim else float(out)


def logit(p: Any) -> Any:
    """log(p / (1 - p)), elementwise (a float for a scalar input); -inf at 0, inf at 1, NaN outside."""
    arr = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = np.log(arr / (1.0 - arr))
        s = 2.0 * (arr - 0.5)
        central = np.log1p(s) - np.log1p(-s)
    out = np.where((arr < 0.3) | (arr > 0.65), direct, central)
    return out if out.ndim else float(out)


def softmax(x: Any, axis: int | None = None) -> np.ndarray:
    """exp(x) / sum(exp(x)) over ``axis`` (all elements when None), shifted by the max for range."""
    arr = np.asarray(x, dtype=float)
    shifted = np.exp(arr - np.max(arr, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)
