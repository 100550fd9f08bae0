"""Adjustment of p-values for multiple comparisons (Holm's step-down procedure)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..base.errors import InputError


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, controlling the family-wise error rate.

    The i-th smallest of m p-values is multiplied by ``m - i + 1`` (i from 1), the results are made
    non-decreasing in that order and capped at 1. Rejecting where the adjusted p < alpha is Holm's
    procedure at level alpha. NaN p-values are left out of the family and stay NaN.

    Args:
        p_values: raw p-values in [0, 1].

    Returns:
        Adjusted p-values in the input order.

    Raises:
        InputError: a p-value outside [0, 1].
    """
    p = np.asarray(p_values, dtype=float).ravel()
    out = np.full(p.size, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    if (p[ok] < 0).any() or (p[ok] > 1).any():
        raise InputError("p-values must lie in [0, 1].")
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(stepped, 1.0)
    return out
