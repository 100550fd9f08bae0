"""Feature selection as published radiomics studies do it, fitted on training data only.

Steps, in order (each optional except the zero-variance check):
0. optional quantile-normal transform (``transform="quantile"``): each feature mapped through its
   training quantiles onto a standard normal (as scikit-learn's QuantileTransformer with
   ``output_distribution="normal"``), so that heavy tails and a shifted scale on another scanner
   move a value along the training distribution instead of far outside it;
1. z-scoring with the training mean and standard deviation; zero-variance features are dropped;
2. univariate filter: Welch t-test or Mann-Whitney U, keep p < alpha; when no feature passes,
   the ``fallback_k`` features with the smallest p are kept, so that selection never ends empty;
3. correlation pruning: of every pair with |r| > threshold (Pearson or Spearman) the feature
   with the smaller univariate p is kept (ties: the earlier column), greedily in order of p;
4. LASSO: L1 logistic regression with C chosen by stratified k-fold CV (roc_auc), or LassoCV on
   the 0/1 label; non-zero coefficients are kept, at most ``max_features`` by largest |coef|;
   when LASSO keeps nothing, the feature with the smallest univariate p is kept.

Every step can be fitted on a subset of the rows (``selection_rows``): with contour variants (several
rows per lesion) the statistics see one row per lesion, the exact contour, so that a t-test, a
correlation or a LASSO fold never counts one lesion five times; the variants then train the
classifier only (``signatures.Signature.fit``).

The fitted :class:`FeatureSelector` is plain numbers: ``to_spec()`` gives a JSON-able dict.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import ConfigError, InputError
from ..base.labels import TRAINING_NEEDS_BOTH, validate_labels

if TYPE_CHECKING:
    import pandas as pd

# sklearn, scipy.stats and pandas are imported inside the fitting and reporting functions: a
# fitted selector is applied with numpy alone, so predicting with a bundle never loads them.

UNIVARIATE_TESTS = ("ttest", "mannwhitney", "none")
CORRELATIONS = ("pearson", "spearman", "none")
LASSO_KINDS = ("logistic", "linear", "none")
LASSO_SOLVERS = ("liblinear", "saga")
TRANSFORMS = ("none", "quantile")
# QuantileTransformer's defaults: at most 1000 quantiles, and values within 1e-7 of either end
# of the training range map to the normal's 1e-7 / 1 - 1e-7 quantiles (about +-5.2).
MAX_QUANTILES = 1000
QUANTILE_BOUND = 1e-7
Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class SelectionConfig:
    """Settings of :class:`FeatureSelector`.

    Attributes:
        standardize: output z-scores (the LASSO always works on z-scores).
        univariate: "ttest" (Welch), "mannwhitney" or "none".
        alpha: univariate p threshold.
        fallback_k: features kept (smallest p) when none passes ``alpha``.
        correlation: "pearson", "spearman" or "none".
        correlation_threshold: |r| above which one of a pair is removed.
        lasso: "logistic" (L1 LogisticRegressionCV), "linear" (LassoCV on 0/1) or "none".
        lasso_solver: "liblinear" or "saga" for the logistic LASSO.
        lasso_cs: number of C (or alpha) values searched.
        cv: number of stratified folds for the LASSO.
        max_features: cap on the selected features (largest |coef|); None for no cap.
        seed: random seed of the fold shuffling and solvers.
        transform: "none" or "quantile" (quantile-normal transform before every statistic).
    """

    standardize: bool = True
    univariate: str = "ttest"
    alpha: float = 0.05
    fallback_k: int = 10
    correlation: str = "pearson"
    correlation_threshold: float = 0.9
    lasso: str = "logistic"
    lasso_solver: str = "liblinear"
    lasso_cs: int = 20
    cv: int = 5
    max_features: int | None = 30
    seed: int = 0
    transform: str = "none"

    def __post_init__(self) -> None:
        checks = (
            (self.univariate in UNIVARIATE_TESTS, f"univariate must be one of {UNIVARIATE_TESTS}"),
            (self.correlation in CORRELATIONS, f"correlation must be one of {CORRELATIONS}"),
            (self.lasso in LASSO_KINDS, f"lasso must be one of {LASSO_KINDS}"),
            (self.lasso_solver in LASSO_SOLVERS, f"lasso_solver must be one of {LASSO_SOLVERS}"),
            (self.transform in TRANSFORMS, f"transform must be one of {TRANSFORMS}"),
            (0.0 < self.alpha <= 1.0, "alpha must be in (0, 1]"),
            (self.fallback_k >= 1, "fallback_k must be at least 1"),
            (0.0 < self.correlation_threshold <= 1.0, "correlation_threshold must be in (0, 1]"),
            (self.lasso_cs >= 2, "lasso_cs must be at least 2"),
            (self.cv >= 2, "cv must be at least 2"),
            (self.max_features is None or self.max_features >= 1, "max_features must be >= 1 or None"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"feature selection setting invalid: {message}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectionConfig:
        """Settings from a dict; unknown keys raise ConfigError.

        Raises:
            ConfigError: for an unknown key or an invalid value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown feature selection setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


def stratified_folds(
    y: np.ndarray, groups: Sequence[Any] | np.ndarray | None, n_splits: int, seed: int
) -> Folds:
    """Stratified (group-aware when ``groups`` is given) shuffled k-fold splits.

    The number of folds is reduced to what the data allow (smallest class, number of groups).

    Args:
        y: 0/1 labels.
        groups: patient identifiers; all cases of one patient land in the same fold.
        n_splits: wanted number of folds.
        seed: shuffling seed.

    Returns:
        List of (train indices, validation indices).

    Raises:
        InputError: when fewer than 2 folds are possible.
    """
    y = np.asarray(y)
    smallest = int(np.bincount(y, minlength=2).min())
    k = min(n_splits, smallest)
    if groups is not None:
        groups_arr = np.asarray(groups)
        if len(groups_arr) != len(y):
            raise InputError(f"{len(groups_arr)} group ids for {len(y)} cases; give one per case")
        k = min(k, len(np.unique(groups_arr)))
    if k < 2:
        raise InputError(
            "too few cases for cross-validation: need at least 2 cases (and 2 patients) of each class"
        )
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is None:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y)]
    gsplitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # The "least populated class" warning is expected for small cohorts; k is already reduced.
        warnings.simplefilter("ignore", UserWarning)
        return [(tr, va) for tr, va in gsplitter.split(np.zeros(len(y)), y, groups_arr)]


def as_matrix(X: Any, names: Sequence[str] | None, wanted: Sequence[str] | None = None) -> np.ndarray:
    """A float matrix of the ``wanted`` columns from a DataFrame or an array with ``names``.

    Args:
        X: DataFrame, or 2D array whose columns are ``names``.
        names: column names of an array ``X`` (ignored for a DataFrame).
        wanted: columns to return, in this order; None for all.

    Returns:
        float64 array (n, len(wanted)).

    Raises:
        InputError: for missing columns, a wrong width, or non-finite values.
    """
    if is_dataframe(X):
        cols = list(map(str, X.columns))
        frame = X
    else:
        arr = _to_float(X)
        if arr.ndim != 2:
            raise InputError(f"features must be a 2D table (cases x features), got shape {arr.shape}")
        if names is None:
            if wanted is not None and arr.shape[1] != len(wanted):
                raise InputError(
                    f"feature array has {arr.shape[1]} columns but {len(wanted)} are expected; "
                    "pass a DataFrame or the column names"
                )
            out = arr
            cols = list(wanted) if wanted is not None else [f"f{i}" for i in range(arr.shape[1])]
            frame = None
        else:
            cols = [str(n) for n in names]
            if len(cols) != arr.shape[1]:
                raise InputError(f"{len(cols)} feature names for {arr.shape[1]} columns")
            frame = arr
    if frame is not None:
        if wanted is None:
            wanted = cols
        position = {c: i for i, c in enumerate(cols)}
        missing = [w for w in wanted if w not in position]
        if missing:
            raise InputError(
                f"{len(missing)} feature(s) required by the model are missing, e.g. {missing[:3]}; "
                "compute features with the same parameter file as the model"
            )
        if is_dataframe(frame):
            out = _to_float(frame[list(wanted)])
        else:  # a named array: columns picked by position, no DataFrame (and no pandas) needed
            out = frame[:, [position[w] for w in wanted]]
    bad = ~np.isfinite(out)
    if bad.any():
        col = int(np.argwhere(bad)[0][1])
        raise InputError(
            f"feature '{(list(wanted) if wanted is not None else cols)[col]}' has missing or "
            "infinite values; recompute the features or remove the case"
        )
    return out


def is_dataframe(X: Any) -> bool:
    """Whether ``X`` is a pandas DataFrame, without importing pandas (unloaded: it cannot be one)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(X, pd.DataFrame)


def _to_float(X: Any) -> np.ndarray:
    try:
        return np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        raise InputError(
            "feature table has non-numeric values; features must be numbers (check the CSV columns)"
        ) from None


def _univariate_p(Z: np.ndarray, y: np.ndarray, test: str) -> np.ndarray:
    if test == "none":
        return np.full(Z.shape[1], np.nan)
    from scipy import stats

    pos, neg = Z[y == 1], Z[y == 0]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "ttest":
            p = stats.ttest_ind(pos, neg, equal_var=False, axis=0).pvalue
        else:
            p = stats.mannwhitneyu(pos, neg, alternative="two-sided", axis=0).pvalue
    p = np.asarray(p, dtype=float)
    # A feature constant within each class gives an undefined t statistic: treat as uninformative.
    return np.where(np.isfinite(p), p, 1.0)


def _order_by_p(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    key = np.where(np.isnan(p[idx]), 1.0, p[idx])
    return idx[np.lexsort((idx, key))]


def _correlation_prune(
    Z: np.ndarray, p: np.ndarray, idx: np.ndarray, method: str, threshold: float
) -> tuple[list[int], dict[int, int]]:
    """Greedy pruning in order of p: returns kept indices and {dropped: kept partner}."""
    order = _order_by_p(p, idx)
    if method == "none" or len(order) < 2:
        return sorted(order.tolist()), {}
    sub = Z[:, order]
    if method == "spearman":
        from scipy import stats

        sub = stats.rankdata(sub, axis=0)
    with np.errstate(all="ignore"):
        r = np.abs(np.corrcoef(sub, rowvar=False))
    r = np.nan_to_num(r, nan=0.0)
    kept_pos: list[int] = []
    dropped: dict[int, int] = {}
    for pos in range(len(order)):
        if kept_pos:
            rk = r[pos, kept_pos]
            best = int(np.argmax(rk))
            if rk[best] > threshold:
                dropped[int(order[pos])] = int(order[kept_pos[best]])
                continue
        kept_pos.append(pos)
    return sorted(int(order[k]) for k in kept_pos), dropped


def _l1_arguments(estimator: type) -> dict[str, Any]:
    """An L1 penalty for LogisticRegressionCV in the spelling of the installed scikit-learn.

    From 1.8 the penalty is ``l1_ratios=(1.0,)`` (``penalty`` is deprecated) and the new result
    attributes are asked for; before (e.g. 1.6, the newest for Python 3.9 in Slicer 5.4-5.8)
    ``l1_ratios`` alone would be ignored and the fit would silently be L2.
    """
    import inspect

    if "use_legacy_attributes" in inspect.signature(estimator).parameters:
        return {"l1_ratios": (1.0,), "use_legacy_attributes": False}
    return {"penalty": "l1"}


class FeatureSelector:
    """Univariate filter, correlation pruning and LASSO, fitted on training data only.

    Attributes (after fit):
        input_names: the candidate feature names, in input order.
        selected_names: the selected features, in input order.
        mean, std: training mean and standard deviation of the selected features.
        lasso_c: the C (logistic) or alpha (linear) chosen by cross-validation, or None.
        quantiles: (selected features, q) training quantiles of the quantile transform, or empty.
    """

    def __init__(self, config: SelectionConfig | None = None) -> None:
        """Args:
        config: selection settings; defaults when None.
        """
        self.config = config or SelectionConfig()
        self.input_names: list[str] = []
        self.selected_names: list[str] = []
        self.mean = np.zeros(0)
        self.std = np.ones(0)
        self.lasso_c: float | None = None
        self.quantiles = np.zeros((0, 0))
        self._report: list[dict[str, Any]] = []

    @property
    def is_fitted(self) -> bool:
        """Whether fit (or from_spec) has been called."""
        return bool(self.selected_names)

    def fit(
        self,
        X: Any,
        y: Any,
        feature_names: Sequence[str] | None = None,
        groups: Sequence[Any] | np.ndarray | None = None,
        selection_rows: Sequence[bool] | np.ndarray | None = None,
    ) -> FeatureSelector:
        """Fit every step on the given (training) cases.

        Args:
            X: DataFrame or (n, p) array of candidate features.
            y: 0/1 labels.
            feature_names: column names when ``X`` is an array.
            groups: optional patient ids, used to keep patients whole in the LASSO folds.
            selection_rows: optional boolean mask of the rows every statistic is computed on
                (z-scoring, univariate test, correlation, LASSO and its folds), e.g. the
                exact-contour row of each lesion; None: every row.

        Returns:
            self.

        Raises:
            InputError: for non-finite values, bad labels, a mask of the wrong length or too
                few cases.
        """
        cfg = self.config
        if selection_rows is not None:
            X, y, groups = _subset_rows(X, y, groups, selection_rows)
        yb = validate_labels(y, why_both=TRAINING_NEEDS_BOTH)
        if is_dataframe(X):
            names = [str(c) for c in X.columns]
        elif feature_names is not None:
            names = [str(n) for n in feature_names]
        else:
            names = [f"f{i}" for i in range(np.asarray(X).shape[1])]
        if len(set(names)) != len(names):
            raise InputError("feature names are not unique; each feature column needs its own name")
        M = as_matrix(X, names if not is_dataframe(X) else None, names)
        if M.shape[0] != len(yb):
            raise InputError(f"{M.shape[0]} feature rows for {len(yb)} labels")
        n_feat = M.shape[1]
        quantiles = np.zeros((n_feat, 0))
        if cfg.transform == "quantile":
            quantiles = fit_quantiles(M)
            M = quantile_normal(M, quantiles)
        mean = M.mean(axis=0)
        std = M.std(axis=0, ddof=0)
        scale = np.maximum(np.abs(mean), 1.0)
        nonconstant = std > 1e-12 * scale
        removed = np.array([""] * n_feat, dtype=object)
        removed[~nonconstant] = "zero_variance"
        Z = np.zeros_like(M)
        Z[:, nonconstant] = (M[:, nonconstant] - mean[nonconstant]) / std[nonconstant]

        idx = np.flatnonzero(nonconstant)
        if len(idx) == 0:
            raise InputError("every feature is constant over the training cases; nothing can be selected")
        p = np.full(n_feat, np.nan)
        p[idx] = _univariate_p(Z[:, idx], yb, cfg.univariate)
        if cfg.univariate != "none":
            passed = idx[p[idx] < cfg.alpha]
            if len(passed) == 0:
                # Documented fallback: never end empty, keep the k most discriminative features.
                passed = _order_by_p(p, idx)[: cfg.fallback_k]
            removed[np.setdiff1d(idx, passed)] = "univariate"
            idx = np.sort(passed)

        kept, partners = _correlation_prune(Z, p, idx, cfg.correlation, cfg.correlation_threshold)
        for d in partners:
            removed[d] = "correlation"
        idx = np.asarray(kept, dtype=int)

        coef = np.full(n_feat, np.nan)
        if cfg.lasso != "none":
            coefs, self.lasso_c = self._lasso(Z[:, idx], yb, groups)
            coef[idx] = coefs
            nonzero = idx[np.abs(coefs) > 0]
            removed[np.setdiff1d(idx, nonzero)] = "lasso"
            if len(nonzero) == 0:
                # Documented fallback: LASSO chose the empty model; keep the best univariate feature.
                nonzero = _order_by_p(p, idx)[:1]
                removed[nonzero] = ""
            idx = np.sort(nonzero)
        if cfg.max_features is not None and len(idx) > cfg.max_features:
            strength = np.abs(coef[idx]) if cfg.lasso != "none" else -np.nan_to_num(p[idx], nan=1.0)
            pkey = np.nan_to_num(p[idx], nan=1.0)
            order = np.lexsort((idx, pkey, -strength))
            keep = np.sort(idx[order[: cfg.max_features]])
            removed[np.setdiff1d(idx, keep)] = "max_features"
            idx = keep

        self.input_names = names
        self.selected_names = [names[i] for i in idx]
        self.mean = mean[idx].copy()
        self.std = std[idx].copy()
        self.quantiles = quantiles[idx].copy()
        self._report = [
            {
                "feature": names[j],
                "mean": float(mean[j]),
                "std": float(std[j]),
                "p_value": _none_if_nan(p[j]),
                "correlated_with": names[partners[j]] if j in partners else None,
                "lasso_coef": _none_if_nan(coef[j]),
                "removed_at": removed[j] or None,
                "selected": j in set(idx.tolist()),
            }
            for j in range(n_feat)
        ]
        return self

    def _lasso(
        self, Z: np.ndarray, y: np.ndarray, groups: Sequence[Any] | np.ndarray | None
    ) -> tuple[np.ndarray, float]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LassoCV, LogisticRegressionCV

        cfg = self.config
        folds = stratified_folds(y, groups, cfg.cv, cfg.seed)
        with warnings.catch_warnings():
            # Weak regularisation on separable training data may not converge fully; the chosen C
            # is what matters and is scored on held-out folds.
            warnings.simplefilter("ignore", ConvergenceWarning)
            if cfg.lasso == "logistic":
                model = LogisticRegressionCV(
                    Cs=cfg.lasso_cs,
                    solver=cfg.lasso_solver,
                    scoring="roc_auc",
                    cv=folds,
                    max_iter=5000,
                    random_state=cfg.seed,
                    **_l1_arguments(LogisticRegressionCV),
                ).fit(Z, y)
                return model.coef_.ravel().copy(), float(model.C_)
            lin = LassoCV(alphas=cfg.lasso_cs, cv=folds, random_state=cfg.seed, max_iter=10000).fit(
                Z, y.astype(float)
            )
            return lin.coef_.ravel().copy(), float(lin.alpha_)

    def transform(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """The selected features of new cases, z-scored with the training statistics when configured.

        Args:
            X: DataFrame with at least the selected columns, or an array whose columns are
                ``feature_names`` (or, without names, exactly the fitted input columns).
            feature_names: column names of an array ``X``.

        Returns:
            float64 array (n, len(selected_names)).

        Raises:
            InputError: for missing columns or non-finite values.
        """
        if not self.is_fitted:
            raise InputError("the feature selector is not fitted yet")
        if not is_dataframe(X) and feature_names is None:
            M = as_matrix(X, self.input_names, self.selected_names)
        else:
            M = as_matrix(X, feature_names, self.selected_names)
        if self.config.transform == "quantile":
            M = quantile_normal(M, self.quantiles)
        if self.config.standardize:
            return (M - self.mean) / self.std
        return M

    def fit_transform(
        self,
        X: Any,
        y: Any,
        feature_names: Sequence[str] | None = None,
        groups: Sequence[Any] | np.ndarray | None = None,
    ) -> np.ndarray:
        """``fit`` then ``transform`` on the same cases."""
        return self.fit(X, y, feature_names, groups).transform(X, feature_names)

    def report(self) -> pd.DataFrame:
        """One row per candidate feature: statistics, p value, partner, coefficient and fate.

        ``removed_at`` names the step that removed the feature (zero_variance, univariate,
        correlation, lasso, max_features) and is empty for selected features.
        """
        import pandas as pd

        return pd.DataFrame(self._report)

    def step_summary(self) -> pd.DataFrame:
        """Features entering and leaving each step (for the model card)."""
        import pandas as pd

        rep = self.report()
        rows = []
        n_in = len(rep)
        for step in ("zero_variance", "univariate", "correlation", "lasso", "max_features"):
            n_out = int((rep["removed_at"] == step).sum())
            rows.append({"step": step, "features_in": n_in, "removed": n_out, "features_out": n_in - n_out})
            n_in -= n_out
        return pd.DataFrame(rows)

    def to_spec(self) -> dict[str, Any]:
        """JSON-able dict of the fitted selector (floats as Python floats, exact round trip)."""
        if not self.is_fitted:
            raise InputError("the feature selector is not fitted yet")
        return {
            "kind": "FeatureSelector",
            "config": self.config.to_dict(),
            "input_names": list(self.input_names),
            "selected_names": list(self.selected_names),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "lasso_c": self.lasso_c,
            "report": [dict(r) for r in self._report],
            **({"quantiles": self.quantiles.tolist()} if self.config.transform == "quantile" else {}),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureSelector:
        """Rebuild a fitted selector from :meth:`to_spec` output.

        Raises:
            ConfigError: when the spec is not a FeatureSelector spec or is inconsistent.
        """
        if spec.get("kind") != "FeatureSelector":
            raise ConfigError(f"not a feature selector spec (kind={spec.get('kind')!r})")
        sel = cls(SelectionConfig.from_dict(spec["config"]))
        sel.input_names = [str(n) for n in spec["input_names"]]
        sel.selected_names = [str(n) for n in spec["selected_names"]]
        sel.mean = np.asarray(spec["mean"], dtype=float)
        sel.std = np.asarray(spec["std"], dtype=float)
        if not (len(sel.selected_names) == len(sel.mean) == len(sel.std)) or not sel.selected_names:
            raise ConfigError("feature selector spec is inconsistent (names, mean and std lengths differ)")
        sel.lasso_c = None if spec.get("lasso_c") is None else float(spec["lasso_c"])
        if sel.config.transform == "quantile":
            sel.quantiles = np.asarray(spec.get("quantiles", []), dtype=float)
            q = sel.quantiles
            if q.ndim != 2 or len(q) != len(sel.mean) or q.shape[1] < 2:
                raise ConfigError(
                    "feature selector spec is inconsistent (quantile tables and features differ)"
                )
        sel._report = [dict(r) for r in spec.get("report", [])]
        return sel


def fit_quantiles(M: np.ndarray) -> np.ndarray:
    """(features, q) training quantiles at q = min(1000, rows) equally spaced levels, each row
    made non-decreasing (as QuantileTransformer does against rounding in the percentiles)."""
    levels = np.linspace(0.0, 100.0, min(MAX_QUANTILES, M.shape[0]))
    return np.maximum.accumulate(np.percentile(M, levels, axis=0), axis=0).T.copy()


def quantile_normal(M: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Map each column of ``M`` through its training ``quantiles`` onto a standard normal.

    The rank is interpolated forwards and backwards and averaged (ties get their mid-rank), values
    at or beyond the training range map to the clipped ends, as in scikit-learn's
    QuantileTransformer; the normal quantile function is the standard library's (no scipy).
    """
    levels = np.linspace(0.0, 1.0, quantiles.shape[1])
    low = QUANTILE_BOUND - np.spacing(1)
    out = np.empty_like(M, dtype=float)
    for j in range(M.shape[1]):
        q, x = quantiles[j], M[:, j]
        u = 0.5 * (np.interp(x, q, levels) - np.interp(-x, -q[::-1], -levels[::-1]))
        u[x + QUANTILE_BOUND > q[-1]] = 1.0
        u[x - QUANTILE_BOUND < q[0]] = 0.0
        out[:, j] = _normal_ppf(np.clip(u, low, 1.0 - low))
    return out


def _normal_ppf(u: np.ndarray) -> np.ndarray:
    from statistics import NormalDist

    inv = NormalDist().inv_cdf
    return np.array([inv(float(v)) for v in u.ravel()], dtype=float).reshape(u.shape)


def _subset_rows(
    X: Any, y: Any, groups: Sequence[Any] | np.ndarray | None, rows: Sequence[bool] | np.ndarray
) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """The rows of ``X``, ``y`` and ``groups`` that a boolean mask keeps (DataFrame or array)."""
    mask = np.asarray(rows)
    y_arr = np.asarray(y)
    if mask.dtype != bool or mask.shape != (len(y_arr),):
        raise InputError(
            f"selection_rows must be a boolean mask with one value per row ({len(y_arr)}), "
            f"got {mask.dtype} of shape {mask.shape}"
        )
    sub = X.iloc[mask] if is_dataframe(X) else np.asarray(X)[mask]
    return sub, y_arr[mask], None if groups is None else np.asarray(groups)[mask]


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(float(value)) else float(value)
