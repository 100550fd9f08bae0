"""Fitting ComBat harmonisation (``harmonisation.method: combat``) inside a training split.

neuroCombat (MIT licence, pinned in requirements.txt) fits and harmonises the rows it is given in
one call; this module runs it on the training rows of a fold (one row per lesion: the exact
contour) and keeps its estimates (grand mean, pooled variance, per-site gamma* and delta*) as a
:class:`models.combat.ComBat` step, which then harmonises every row of the fold's training and
validation cases, the final model's rows and, stored in the bundle, each predicted case. No
covariate is modelled (the label is unknown at prediction). neuroCombat is imported here only,
when a run asks for harmonisation.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..base.errors import InputError
from ..models.combat import ComBat
from .config import TrainConfig
from .data import TrainingCase

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .run import Row, TrainingCohort

#: Fewest training rows (lesions) of a site for its variance to be estimated.
MIN_SITE_ROWS = 3


def site_of(case: TrainingCase, column: str) -> str:
    """The case's value in the manifest column ``column`` ("" when absent or empty)."""
    return str(case.extra.get(column) or case.clinical.get(column) or "").strip()


def fit_combat(
    X: np.ndarray, sites: list[str], names: list[str], column: str, *, empirical_bayes: bool = True
) -> ComBat:
    """ComBat fitted by neuroCombat on the rows ``X`` (n, F) of the given sites.

    Features that are not finite in some row, or constant within a site, are left out of the fit
    (they pass through unharmonised: ComBat cannot scale a site whose variance is 0).

    Raises:
        InputError: a row without a site, fewer than two sites, or a site with fewer than
            :data:`MIN_SITE_ROWS` rows.
    """
    X = np.asarray(X, dtype=float)
    site_arr = np.array([str(s).strip() for s in sites], dtype=object)
    if (site_arr == "").any():
        raise InputError(
            f"harmonisation: {int((site_arr == '').sum())} training case(s) have no value in the "
            f"manifest column '{column}'"
        )
    levels, counts = np.unique(site_arr.astype(str), return_counts=True)
    if len(levels) < 2:
        raise InputError(
            f"harmonisation: the training cases have {len(levels)} '{column}' value(s); need 2 or more"
        )
    small = [f"'{s}' ({c})" for s, c in zip(levels, counts) if c < MIN_SITE_ROWS]
    if small:
        raise InputError(
            f"harmonisation: {column} value(s) {', '.join(small)} have fewer than {MIN_SITE_ROWS} "
            "training lesions; merge them or leave them out of the manifest"
        )
    usable = np.isfinite(X).all(axis=0)
    for s in levels:
        block = X[site_arr == s]
        usable &= np.nanstd(block, axis=0) > 0
    keep = np.flatnonzero(usable)
    if not len(keep):
        raise InputError("harmonisation: no radiomics feature varies within every site")
    import pandas as pd
    from neuroCombat import neuroCombat

    covars = pd.DataFrame({"site": site_arr.astype(str)})
    with contextlib.redirect_stdout(io.StringIO()):  # neuroCombat prints its progress
        out = neuroCombat(X[:, keep].T, covars, "site", eb=empirical_bayes)
    est = out["estimates"]
    batches = [str(b) for b in est["batches"]]
    if batches != [str(s) for s in levels]:  # neuroCombat numbers the sites in np.unique order
        raise RuntimeError(f"neuroCombat returned sites {batches}, expected {list(levels)}")
    return ComBat(
        column=column,
        features=[names[j] for j in keep],
        sites=[str(s) for s in levels],
        grand_mean=np.asarray(est["stand.mean"], dtype=float)[:, 0].copy(),
        var_pooled=np.asarray(est["var.pooled"], dtype=float).reshape(-1).copy(),
        gamma=np.asarray(est["gamma.star"], dtype=float).copy(),
        delta=np.asarray(est["delta.star"], dtype=float).copy(),
        rows={str(s): int(c) for s, c in zip(levels, counts)},
        empirical_bayes=empirical_bayes,
    )


def fit_harmoniser(
    config: TrainConfig, cohort: TrainingCohort, idx: np.ndarray, log: Callable[[str], None]
) -> ComBat | None:
    """The run's harmonisation step fitted on the exact-contour rows of the cases ``idx``, or None
    when the configuration asks for none."""
    h = config.harmonisation
    if h.method == "none":
        return None
    column = str(h.batch_column)
    pairs, R = cohort.rows(idx, ["exact"])
    sites = [site_of(cohort.cases[i], column) for i, _ in pairs]
    step = fit_combat(R, sites, list(cohort.rad_names), column, empirical_bayes=h.empirical_bayes)
    log(
        f"ComBat by {column}: {len(step.features)} of {len(cohort.rad_names)} radiomics features, "
        + ", ".join(f"{s} {n}" for s, n in step.rows.items())
    )
    return step


def harmonise_rows(
    step: ComBat | None, cohort: TrainingCohort, pairs: list[Row], R: np.ndarray
) -> np.ndarray:
    """The radiomics rows ``R`` of ``pairs`` harmonised by ``step`` (R itself without a step).

    Rows of a site the step does not know (a held-out scanner) stay as they are.
    """
    if step is None or not len(pairs):
        return R
    sites: list[str | None] = [site_of(cohort.cases[i], step.column) or None for i, _ in pairs]
    return step.transform(R, list(cohort.rad_names), sites)[0]
