"""Warnings when a set is too small for the intervals reported on it.

Thresholds (stated in docs/STATISTICS.md): an AUC interval (DeLong, clustered or bootstrap) is
flagged below :data:`MIN_PER_CLASS` positives or negatives (or patients with a positive or a
negative case, when clustered), and not given at all below 2 in a class, where DeLong's variance
is zero by construction (one positive and one negative give "1.0-1.0"); a proportion's interval is
flagged below :data:`MIN_DENOMINATOR` cases in its denominator; a bootstrap interval is flagged when
fewer than :data:`MIN_RESAMPLES_USED` of the resamples define the statistic.
"""

from __future__ import annotations

from collections.abc import Mapping

MIN_PER_CLASS = 10
MIN_DENOMINATOR = 10
MIN_RESAMPLES_USED = 0.95
#: Below this many cases in a class no AUC interval is given.
MIN_FOR_INTERVAL = 2


def auc_warnings(n_positive: int, n_negative: int, unit: str = "cases") -> list[str]:
    """Warnings about AUC intervals for a set with these class counts (empty when large enough)."""
    small = min(n_positive, n_negative)
    if small < MIN_FOR_INTERVAL:
        return [
            f"Only {n_positive} positive and {n_negative} negative {unit}: no AUC confidence interval "
            f"is given (at least {MIN_FOR_INTERVAL} of each are needed for any interval)."
        ]
    if small < MIN_PER_CLASS:
        return [
            f"Only {n_positive} positive and {n_negative} negative {unit}: AUC intervals are unreliable "
            f"below {MIN_PER_CLASS} of each (their coverage can be far from 95%)."
        ]
    return []


def proportion_warnings(name: str, metrics: Mapping[str, object]) -> list[str]:
    """Warnings for the cutoff metrics whose denominators are below :data:`MIN_DENOMINATOR`."""
    small = []
    for key in ("sensitivity", "specificity", "ppv", "npv"):
        den = metrics.get(f"{key}_den")
        if isinstance(den, int) and 0 < den < MIN_DENOMINATOR:
            small.append(f"{key} ({den})")
    if not small:
        return []
    return [
        f"'{name}': intervals of {', '.join(small)} rest on fewer than {MIN_DENOMINATOR} cases in "
        "the denominator; read them as rough."
    ]


def bootstrap_warning(what: str, n_used: int, n_resamples: int) -> list[str]:
    """A warning when a bootstrap statistic was undefined in too many resamples."""
    if n_resamples and n_used < MIN_RESAMPLES_USED * n_resamples:
        return [
            f"{what}: defined in only {n_used} of {n_resamples} bootstrap resamples (a class or a "
            "denominator was empty in the others); the interval is unreliable."
        ]
    return []
