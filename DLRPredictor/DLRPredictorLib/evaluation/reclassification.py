"""Net reclassification improvement (categorical and continuous) and integrated discrimination
improvement of a new risk model over an old one (Pencina et al. 2008, 2011).

- Categorical NRI: risks are put into categories by stated cut-offs; an event moving to a higher
  category is an improvement, a non-event moving to a lower one is too.
  ``NRI = [P(up|event) - P(down|event)] + [P(down|non-event) - P(up|non-event)]``.
- Continuous (category-free) NRI: "up" is any increase of the risk, "down" any decrease.
- IDI: ``[mean(new - old) over events] - [mean(new - old) over non-events]``.

Each comes with a Wald interval for independent cases (Pencina 2008: the multinomial variance of
each component, ``(p_up + p_down - (p_up - p_down)^2) / n``; for the IDI the variance of the paired
differences in each class) and a (cluster) bootstrap percentile interval.

References: Pencina MJ, D'Agostino RB Sr, D'Agostino RB Jr, Vasan RS. Evaluating the added
predictive ability of a new marker. Stat Med 2008;27:157-172. Pencina MJ, D'Agostino RB Sr,
Steyerberg EW. Extensions of net reclassification improvement calculations. Stat Med
2011;30:11-21.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ..base.errors import InputError
from .auc import Z95
from .bootstrap import BootstrapSettings, percentile_interval, resampled_totals

#: Default risk categories: the BI-RADS likelihood-of-malignancy bands (ACR BI-RADS Atlas, 5th
#: edition): < 2% (BI-RADS 3 and below), 2-10% (4A), 10-50% (4B), >= 50% (4C and 5).
DEFAULT_RISK_CUTOFFS = (0.02, 0.10, 0.50)


@dataclass(frozen=True)
class Improvement:
    """NRI or IDI of a new model over an old one, with its components and intervals."""

    kind: str  # "nri_categorical", "nri_continuous" or "idi"
    value: float
    events: float  # the events' component
    nonevents: float  # the non-events' component
    se: float
    z: float
    p: float
    ci_low: float  # Wald, independent cases
    ci_high: float
    boot_ci_low: float  # percentile bootstrap (by cluster when cluster ids are given)
    boot_ci_high: float
    boot_used: int


def _check(lab: np.ndarray, new: np.ndarray, old: np.ndarray) -> None:
    if not (new.shape == old.shape == lab.shape):
        raise InputError("The new and old risks need one value per case.")
    if not (lab == 1).any() or not (lab == 0).any():
        raise InputError("Reclassification needs both events and non-events.")


def _moves(
    new: np.ndarray, old: np.ndarray, cutoffs: Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-case 0/1 'moved up' and 'moved down' (by category when cut-offs are given)."""
    if cutoffs is None:
        return (new > old).astype(float), (new < old).astype(float)
    cuts = np.asarray(sorted(float(c) for c in cutoffs))
    # category k holds risks with cuts[k-1] <= risk < cuts[k]
    cat_new = np.searchsorted(cuts, new, side="right")
    cat_old = np.searchsorted(cuts, old, side="right")
    return (cat_new > cat_old).astype(float), (cat_new < cat_old).astype(float)


def _wald(value: float, se: float) -> tuple[float, float, float, float]:
    if not np.isfinite(se) or se <= 0:
        return float("nan"), float("nan"), float("nan"), float("nan")
    z = value / se
    return float(z), float(2.0 * sps.norm.sf(abs(z))), value - Z95 * se, value + Z95 * se


def net_reclassification(
    lab: np.ndarray,
    new: np.ndarray,
    old: np.ndarray,
    codes: np.ndarray,
    settings: BootstrapSettings,
    *,
    cutoffs: Sequence[float] | None = DEFAULT_RISK_CUTOFFS,
) -> Improvement:
    """Categorical NRI (``cutoffs`` given) or continuous NRI (``cutoffs=None``) of new over old.

    Args:
        lab: 0/1 labels (validated), 1 = event.
        new: the new model's risks.
        old: the old model's risks (same cases).
        codes: cluster code per case (each case its own code for independent cases).
        settings: bootstrap resamples, seed and level.
        cutoffs: risk category boundaries (a risk equal to a cut-off belongs to the higher category).

    Returns:
        Improvement with kind "nri_categorical" or "nri_continuous".
    """
    _check(lab, new, old)
    up, down = _moves(new, old, cutoffs)
    ev = (lab == 1).astype(float)
    ne = 1.0 - ev
    n_e, n_ne = ev.sum(), ne.sum()
    pu_e, pd_e = (up * ev).sum() / n_e, (down * ev).sum() / n_e
    pu_n, pd_n = (up * ne).sum() / n_ne, (down * ne).sum() / n_ne
    events, nonevents = pu_e - pd_e, pd_n - pu_n
    value = events + nonevents
    var = (pu_e + pd_e - (pu_e - pd_e) ** 2) / n_e + (pu_n + pd_n - (pu_n - pd_n) ** 2) / n_ne
    z, p, lo, hi = _wald(value, float(np.sqrt(var)))
    tot = resampled_totals(
        np.stack([up * ev, down * ev, up * ne, down * ne, ev, ne], axis=1), codes, settings
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (tot[:, 0] - tot[:, 1]) / tot[:, 4] + (tot[:, 3] - tot[:, 2]) / tot[:, 5]
    iv = percentile_interval(boot, settings)
    kind = "nri_continuous" if cutoffs is None else "nri_categorical"
    return Improvement(
        kind,
        float(value),
        float(events),
        float(nonevents),
        float(np.sqrt(var)),
        z,
        p,
        lo,
        hi,
        iv.low,
        iv.high,
        iv.n_used,
    )


def integrated_discrimination(
    lab: np.ndarray, new: np.ndarray, old: np.ndarray, codes: np.ndarray, settings: BootstrapSettings
) -> Improvement:
    """IDI of new over old: the gain in mean risk of events minus that of non-events.

    Args:
        lab: 0/1 labels (validated), 1 = event.
        new: the new model's risks.
        old: the old model's risks.
        codes: cluster code per case.
        settings: bootstrap resamples, seed and level.

    Returns:
        Improvement with kind "idi" (events: the gain in the events' mean risk; nonevents: the
        fall in the non-events' mean risk).
    """
    _check(lab, new, old)
    d = new - old
    ev = lab == 1
    events, nonevents = float(d[ev].mean()), float(-d[~ev].mean())
    value = events + nonevents
    var_e = d[ev].var(ddof=1) / ev.sum() if ev.sum() > 1 else np.nan
    var_n = d[~ev].var(ddof=1) / (~ev).sum() if (~ev).sum() > 1 else np.nan
    se = float(np.sqrt(var_e + var_n))
    z, p, lo, hi = _wald(value, se)
    evf = ev.astype(float)
    tot = resampled_totals(np.stack([d * evf, d * (1 - evf), evf, 1 - evf], axis=1), codes, settings)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = tot[:, 0] / tot[:, 2] - tot[:, 1] / tot[:, 3]
    iv = percentile_interval(boot, settings)
    return Improvement("idi", value, events, nonevents, se, z, p, lo, hi, iv.low, iv.high, iv.n_used)
