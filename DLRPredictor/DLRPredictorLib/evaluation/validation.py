"""Checks of the scores and probabilities that every evaluation function is given.

Conventions of every evaluation function:
- ``y`` holds 0/1 labels, 1 being the positive class (for the default bundle: malignant); they
  are checked by :func:`~DLRPredictorLib.base.labels.validate_labels`.
- A higher score means "more likely positive".
- A case is called positive at a cutoff when ``score >= cutoff``.
- Expected input problems (lengths, NaN, labels other than 0/1, a single class where two are
  needed) raise :class:`~DLRPredictorLib.base.errors.InputError` with a message saying what to fix.
"""

from __future__ import annotations

import numpy as np

from ..base.errors import InputError


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
