"""Intraclass correlation of features across contour variants: the robustness screen.

Each lesion (target) is measured by every contour variant (rater: exact, erode2, dilate2, ...);
for each feature the two-way ANOVA of Shrout & Fleiss (1979) gives

- ICC(2,1): two-way random effects, absolute agreement, single measurement:
  (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n);
- ICC(3,1): two-way mixed effects, consistency, single measurement:
  (MSR - MSE) / (MSR + (k-1) MSE).

The screen uses ICC(2,1). Consistency (3,1) ignores a shift that every lesion undergoes alike, yet
a systematic shift is what a reader who draws wider (or tighter) outlines than the training masks
brings to prediction: absolute agreement counts it against the feature, so ICC(2,1) is the
stricter screen (ICC(2,1) <= ICC(3,1) whenever the variants differ systematically, MSC >= MSE,
and MSR >= MSE).
Plain numpy: no fitted state, nothing stored in a bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..base.errors import InputError


@dataclass(frozen=True)
class IccResult:
    """Per-feature ICCs of an (n targets, k raters, p features) array.

    Attributes:
        icc21: ICC(2,1) per feature (NaN where the feature has no variance at all).
        icc31: ICC(3,1) per feature (NaN likewise).
        n_targets: lesions with every variant.
        n_raters: contour variants.
    """

    icc21: np.ndarray
    icc31: np.ndarray
    n_targets: int
    n_raters: int


def icc_two_way(values: np.ndarray) -> IccResult:
    """ICC(2,1) and ICC(3,1) of each feature from a complete (n, k, p) or (n, k) array.

    Args:
        values: measurement of target i by rater j (of feature f): rows are targets (lesions),
            columns raters (contour variants); no missing values.

    Returns:
        The per-feature ICCs (arrays of length p; length 1 for a 2D input).

    Raises:
        InputError: fewer than 2 targets or raters, or non-finite values.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise InputError(f"ICC needs a (targets, raters[, features]) array, got shape {x.shape}")
    n, k, _ = x.shape
    if n < 2 or k < 2:
        raise InputError(f"ICC needs at least 2 targets and 2 raters, got {n} and {k}")
    if not np.isfinite(x).all():
        raise InputError("ICC input has missing or infinite values; give complete targets only")
    grand = x.mean(axis=(0, 1))
    target_means = x.mean(axis=1)  # (n, p)
    rater_means = x.mean(axis=0)  # (k, p)
    ss_total = ((x - grand) ** 2).sum(axis=(0, 1))
    ss_targets = k * ((target_means - grand) ** 2).sum(axis=0)
    ss_raters = n * ((rater_means - grand) ** 2).sum(axis=0)
    ss_error = ss_total - ss_targets - ss_raters
    msr = ss_targets / (n - 1)
    msc = ss_raters / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        icc21 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        icc31 = (msr - mse) / (msr + (k - 1) * mse)
    # A feature with no variance at all (0/0) has no ICC: NaN, left to the zero-variance check.
    flat = ss_total <= 1e-24 * np.maximum(1.0, grand**2) * n * k
    icc21 = np.where(flat, np.nan, icc21)
    icc31 = np.where(flat, np.nan, icc31)
    return IccResult(icc21, icc31, n, k)


def variant_icc(
    table: dict[tuple[str, str], np.ndarray], case_ids: Sequence[str], variants: Sequence[str]
) -> IccResult:
    """Per-feature ICCs across contour variants of the given lesions.

    Args:
        table: feature vector by (case_id, variant), e.g. a training run's radiomics table.
        case_ids: the lesions (only those with every variant are used).
        variants: the contour variants (raters).

    Raises:
        InputError: fewer than 2 variants or fewer than 2 lesions with every variant.
    """
    if len(variants) < 2:
        raise InputError(f"an ICC across contour variants needs at least 2 variants, got {list(variants)}")
    complete = [c for c in case_ids if all((c, v) in table for v in variants)]
    if len(complete) < 2:
        raise InputError(f"only {len(complete)} lesion(s) have every contour variant {list(variants)}")
    x = np.stack([np.stack([table[(c, v)] for v in variants]) for c in complete])
    return icc_two_way(x)


def icc_keep(result: IccResult, threshold: float) -> np.ndarray:
    """Boolean mask of the features the screen keeps: ICC(2,1) >= threshold, or no ICC (NaN).

    A feature without an ICC has no variance; it is left to the selector's zero-variance step.
    """
    return ~(result.icc21 < threshold)
