"""Decision curves: net benefit of the model, of treating all and of treating none.

Conventions: see :mod:`.validation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..base.errors import InputError
from ..base.labels import validate_labels
from .validation import validate_probabilities


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
