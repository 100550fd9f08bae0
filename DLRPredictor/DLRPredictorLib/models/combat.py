"""ComBat harmonisation of radiomics features by scanner or site: the fitted step, applied with numpy.

ComBat (Johnson et al. 2007; Fortin et al. 2017/2018 for imaging) models each feature ``f`` of a
row from site ``s`` as ``x = alpha_f + gamma_sf + sqrt(delta_sf) * e``: a site shift and scale of
a common distribution. Fitting (``training.combat_fit``, with neuroCombat) estimates the grand mean
``alpha_f``, the pooled variance ``sigma_f^2`` and, per site, the empirical-Bayes shrunk shift
``gamma*_sf`` and scale ``delta*_sf``. A row of a known site is harmonised with those numbers::

    z = (x - alpha) / sigma
    x' = (z - gamma*_s) / sqrt(delta*_s) * sigma + alpha

which is neuroCombat's own final adjustment (``adjust_data_final`` without covariates), so a row
of the training split gets what neuroCombat gave it. No biological covariate is modelled: the
label is what the model predicts and is unknown when a new case is harmonised.

A row whose site was not in the training split (or has no site) cannot be harmonised: it is
returned unchanged and reported (:meth:`ComBat.transform`); the caller says so in the result.
Features that were constant or not finite in the training rows are passed through unchanged.

Applying is numpy only (the predict path imports no pandas or neuroCombat). The spec read back
from a bundle is checked field by field (:meth:`ComBat.from_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base.errors import BundleError

METHOD = "combat"


@dataclass
class ComBat:
    """ComBat parameters fitted on the training rows of a set of sites.

    Attributes:
        column: the manifest column that names each case's site (e.g. ``device``).
        features: the harmonised feature names (the others pass through unchanged).
        sites: the site values seen in training, in the order of the rows of ``gamma``/``delta``.
        grand_mean: (F,) the site-size-weighted mean of each feature.
        var_pooled: (F,) the pooled within-site variance of each feature.
        gamma: (S, F) per-site shift on the standardised scale (empirical-Bayes estimate).
        delta: (S, F) per-site variance ratio on the standardised scale (positive).
        rows: training rows per site (recorded only).
        empirical_bayes: whether gamma and delta were shrunk (recorded only).
    """

    column: str
    features: list[str]
    sites: list[str]
    grand_mean: np.ndarray
    var_pooled: np.ndarray
    gamma: np.ndarray
    delta: np.ndarray
    rows: dict[str, int] = field(default_factory=dict)
    empirical_bayes: bool = True

    def knows(self, site: str | None) -> bool:
        """Whether rows of this site can be harmonised (it was in the training split)."""
        return site is not None and str(site).strip() in self.sites

    def transform(
        self, X: np.ndarray, columns: list[str], sites: list[str | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Harmonise the rows of ``X`` (columns named by ``columns``) of the given sites.

        Columns that are not among :attr:`features` pass through, and so do rows whose site is
        unknown or missing.

        Returns:
            (the harmonised copy of X, (n,) bool: which rows were harmonised).
        """
        X = np.array(X, dtype=float, copy=True)
        if X.ndim != 2 or len(sites) != X.shape[0]:
            raise ValueError(f"ComBat.transform: {X.shape} rows and {len(sites)} sites do not match")
        position = {name: j for j, name in enumerate(self.features)}
        cols = [(k, position[c]) for k, c in enumerate(columns) if c in position]
        done = np.zeros(X.shape[0], dtype=bool)
        if not cols:
            return X, done
        xk = np.array([k for k, _ in cols])
        fj = np.array([j for _, j in cols])
        mean, sd = self.grand_mean[fj], np.sqrt(self.var_pooled[fj])
        index = {s: i for i, s in enumerate(self.sites)}
        for r, site in enumerate(sites):
            i = index.get(str(site).strip()) if site is not None else None
            if i is None:
                continue
            z = (X[r, xk] - mean) / sd
            X[r, xk] = (z - self.gamma[i, fj]) / np.sqrt(self.delta[i, fj]) * sd + mean
            done[r] = True
        return X, done

    # -- persistence ---------------------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        """Plain JSON of the step (stored in ``pipeline.json``; no pickle)."""
        return {
            "method": METHOD,
            "column": self.column,
            "features": list(self.features),
            "sites": list(self.sites),
            "grand_mean": self.grand_mean.tolist(),
            "var_pooled": self.var_pooled.tolist(),
            "gamma": self.gamma.tolist(),
            "delta": self.delta.tolist(),
            "rows": {k: int(v) for k, v in self.rows.items()},
            "empirical_bayes": bool(self.empirical_bayes),
        }

    @classmethod
    def from_spec(cls, spec: Any) -> ComBat:
        """The step of a ``pipeline.json`` harmonisation block, checked.

        Raises:
            BundleError: the block is not an object, names another method, or its names and numbers
                are missing, duplicated, of the wrong shape, not finite, or (variances) not positive.
        """
        if not isinstance(spec, dict):
            _bad(f"it is a JSON {type(spec).__name__}, not an object")
        if spec.get("method") != METHOD:
            _bad(f"'method' is {spec.get('method')!r}; this DLRPredictor applies only '{METHOD}'")
        column = spec.get("column")
        if not isinstance(column, str) or not column.strip():
            _bad("'column' must name the manifest column of the site")
        features = _names(spec.get("features"), "features")
        sites = _names(spec.get("sites"), "sites")
        n_f, n_s = len(features), len(sites)
        mean = _numbers(spec.get("grand_mean"), (n_f,), "grand_mean")
        var = _numbers(spec.get("var_pooled"), (n_f,), "var_pooled", positive=True)
        gamma = _numbers(spec.get("gamma"), (n_s, n_f), "gamma")
        delta = _numbers(spec.get("delta"), (n_s, n_f), "delta", positive=True)
        rows = spec.get("rows") or {}
        if not isinstance(rows, dict):
            _bad("'rows' must be an object of site -> training rows")
        return cls(
            column=column,
            features=features,
            sites=sites,
            grand_mean=mean,
            var_pooled=var,
            gamma=gamma,
            delta=delta,
            rows={str(k): int(v) for k, v in rows.items() if isinstance(v, (int, float))},
            empirical_bayes=bool(spec.get("empirical_bayes", True)),
        )


def _bad(why: str) -> None:
    raise BundleError(f"pipeline.json harmonisation block is unusable: {why}; rebuild the bundle")


def _names(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        _bad(f"'{what}' must be a non-empty list of names")
    if len(set(value)) != len(value):
        _bad(f"'{what}' names an entry twice")
    return list(value)


def _numbers(value: Any, shape: tuple[int, ...], what: str, positive: bool = False) -> np.ndarray:
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        _bad(f"'{what}' must hold numbers")
    if arr.shape != shape:
        _bad(f"'{what}' has shape {arr.shape}, expected {shape}")
    if not np.isfinite(arr).all():
        _bad(f"'{what}' holds a value that is not finite")
    if positive and not (arr > 0).all():
        _bad(f"'{what}' holds a value that is not positive")
    return arr


def describe(step: ComBat, site: str | None) -> tuple[str, str | None]:
    """The ``model_used`` suffix for a case of this site, and a warning when it was not harmonised."""
    if step.knows(site):
        return f", radiomics harmonised (ComBat, {step.column} '{str(site).strip()}')", None
    if site is None or not str(site).strip():
        why = f"the case has no '{step.column}' value"
    else:
        why = f"{step.column} '{str(site).strip()}' was not in the training data"
    return (
        ", radiomics not harmonised",
        f"{why}: its radiomics were not harmonised (ComBat knows {len(step.sites)} "
        f"{step.column} value(s)), so a scanner shift is not corrected for this case",
    )
