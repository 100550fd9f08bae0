"""Metrics at a cutoff (sensitivity, specificity, PPV, NPV, accuracy with Wilson CIs) and Youden's cutoff.

Conventions: see :mod:`.validation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..base.errors import InputError
from ..base.labels import validate_labels
from .auc import Z95
from .validation import validate_scores


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
    y: Sequence[int] | np.ndarray,
    prob: Sequence[float] | np.ndarray,
    cutoff: float | Sequence[float] | np.ndarray,
) -> dict[str, float | int]:
    """Confusion counts and accuracy, sensitivity, specificity, PPV, NPV at a cutoff.

    A case is predicted positive when ``prob >= cutoff``. Each proportion comes with its 95% Wilson
    score interval (see :func:`wilson_ci`) as ``<name>_ci_low`` / ``<name>_ci_high`` and its
    numerator / denominator counts. A proportion with a zero denominator (e.g. sensitivity when
    there are no positives, PPV when nobody is called positive) is NaN. A single class is allowed.

    Args:
        y: 0/1 labels.
        prob: one finite score per case (probabilities or any score on the cutoff's scale).
        cutoff: decision threshold, or one threshold per case (when the cases were labelled by
            different models, e.g. the combined model where clinical values were given and the
            image-only model elsewhere: each case is called as its own model called it).

    Returns:
        dict with cutoff (NaN when per case), n, tp, fp, tn, fn and, for accuracy, sensitivity,
        specificity, ppv, npv: the value, ``_ci_low``, ``_ci_high``, ``_num`` and ``_den``.

    Raises:
        InputError: invalid labels or scores, a non-finite cutoff, or per-case cutoffs of
            another length.
    """
    lab = validate_labels(y, need_both=False)
    s = validate_scores(prob, lab.size)
    cut = np.asarray(cutoff, dtype=float)
    if cut.ndim == 1:
        cut = validate_scores(cut, lab.size, "cutoff")
    elif not np.isfinite(cut):
        raise InputError(f"The cutoff must be a finite number; got {cutoff!r}.")
    pred = s >= cut
    tp = int(np.sum(pred & (lab == 1)))
    fp = int(np.sum(pred & (lab == 0)))
    tn = int(np.sum(~pred & (lab == 0)))
    fn = int(np.sum(~pred & (lab == 1)))
    out: dict[str, float | int] = {
        "cutoff": float(cut) if cut.ndim == 0 else float("nan"),
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
