"""The usual classifiers of deep-learning-radiomics studies, tuned by grid search.

- :func:`make_classifier` / :func:`fit_classifier` / :func:`grid_search`: the classifiers of
  ``CLASSIFIERS`` with small default grids, tuned by roc_auc on stratified, patient-grouped folds.
- :func:`positive_proba`, :func:`proba_to_logit`: the positive-class probability and its
  clipped log-odds.
- :func:`as_frame`, :func:`check_named`: features are matched to a model by column name.
- :class:`ProbabilityModel`: what signatures and fusions have in common.

Probabilities are 1-D: the probability of the positive class (label 1). sklearn, pandas,
xgboost and lightgbm are imported inside the training functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..base.errors import ConfigError, InputError
from ..base.labels import TRAINING_NEEDS_BOTH, validate_labels
from ..base.numeric import logit
from .selection import as_matrix, is_dataframe, stratified_folds

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.base import BaseEstimator

CLASSIFIERS = ("lr", "svm", "rf", "extratrees", "xgboost", "lightgbm", "knn")
PROBA_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before taking the logit

# Small grids so that training on a workstation (and CI) stays fast; override per call.
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "lr": {"C": [0.1, 1.0, 10.0]},
    "svm": {"C": [0.5, 2.0]},
    "rf": {"max_depth": [3, None]},
    "extratrees": {"max_depth": [3, None]},
    "xgboost": {"max_depth": [2, 3]},
    "lightgbm": {"num_leaves": [4, 8]},
    "knn": {"n_neighbors": [5, 11, 21]},
}


class ProbabilityModel(Protocol):
    """Anything that maps a feature table to positive-class probabilities."""

    name: str

    def predict_proba(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """1-D probabilities of the positive class."""
        ...


def make_classifier(name: str, seed: int = 0) -> BaseEstimator:
    """An unfitted classifier with deterministic, small-data friendly defaults.

    Args:
        name: one of ``CLASSIFIERS``.
        seed: random state.

    Returns:
        An sklearn-compatible estimator with ``predict_proba``.

    Raises:
        ConfigError: for an unknown name.
    """
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    if name == "lr":
        return LogisticRegression(C=1.0, max_iter=5000, random_state=seed)
    if name == "svm":
        return SVC(kernel="rbf", C=1.0, gamma="scale", probability=True, random_state=seed)
    if name == "rf":
        return RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
    if name == "extratrees":
        return ExtraTreesClassifier(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
    if name == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(
            n_estimators=50,
            max_depth=3,
            learning_rate=0.1,
            tree_method="hist",
            eval_metric="logloss",
            random_state=seed,
            n_jobs=1,
        )
    if name == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(
            n_estimators=50,
            num_leaves=8,
            learning_rate=0.1,
            min_child_samples=5,
            random_state=seed,
            n_jobs=1,
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        )
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=11)
    raise ConfigError(f"unknown classifier '{name}'; choose one of {', '.join(CLASSIFIERS)}")


@dataclass
class GridResult:
    """Outcome of a grid search.

    Attributes:
        estimator: the best estimator refitted on all given cases.
        best_params: the chosen grid point.
        best_score: its mean cross-validated roc_auc.
        results: one row per grid point (params, mean and sd of roc_auc).
    """

    estimator: BaseEstimator
    best_params: dict[str, Any]
    best_score: float
    results: pd.DataFrame


def grid_search(
    name: str,
    X: np.ndarray,
    y: Any,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    cv: int = 5,
    seed: int = 0,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> GridResult:
    """Tune a classifier by grid search on stratified (patient-grouped) folds, scoring roc_auc.

    Args:
        name: classifier name (``CLASSIFIERS``).
        X: (n, p) training features.
        y: 0/1 labels.
        grid: parameter grid; ``DEFAULT_GRIDS[name]`` when None.
        cv: number of folds.
        seed: seed of the folds and the classifier.
        groups: patient ids; with them no patient is split across folds (StratifiedGroupKFold).

    Returns:
        GridResult with the refitted best estimator.

    Raises:
        ConfigError: unknown classifier or empty grid. InputError: bad labels, too few cases.
    """
    import pandas as pd
    from sklearn.model_selection import GridSearchCV

    yb = validate_labels(y, why_both=TRAINING_NEEDS_BOTH)
    X = np.asarray(X, dtype=float)
    estimator = make_classifier(name, seed)
    param_grid = {k: list(v) for k, v in (DEFAULT_GRIDS[name] if grid is None else grid).items()}
    if any(len(v) == 0 for v in param_grid.values()):
        raise ConfigError(f"the grid for '{name}' has a parameter without values")
    folds = stratified_folds(yb, groups, cv, seed)
    if name == "knn" and "n_neighbors" in param_grid:
        # More neighbours than training cases in a fold would fail; clip to what the folds allow.
        smallest_train = min(len(tr) for tr, _ in folds)
        clipped = sorted({min(int(k), smallest_train) for k in param_grid["n_neighbors"]})
        param_grid["n_neighbors"] = clipped
    search = GridSearchCV(estimator, param_grid, scoring="roc_auc", cv=folds, refit=True, n_jobs=1)
    with warnings.catch_warnings():
        # A validation fold with one class (tiny cohorts) gives an undefined AUC; that grid point
        # simply scores NaN.
        warnings.simplefilter("ignore", UserWarning)
        # SVC(probability=True) is deprecated from scikit-learn 1.9 (removed in 1.11); the pinned
        # 1.9 still fits Platt scaling, which models.persistence stores as plain numbers.
        warnings.filterwarnings("ignore", message=".*`probability` parameter", category=FutureWarning)
        search.fit(X, yb)
    res = search.cv_results_
    table = pd.DataFrame(
        {
            "params": [dict(p) for p in res["params"]],
            "mean_auc": res["mean_test_score"],
            "sd_auc": res["std_test_score"],
        }
    )
    return GridResult(
        estimator=search.best_estimator_,
        best_params=dict(search.best_params_),
        best_score=float(search.best_score_),
        results=table,
    )


def fit_classifier(
    name: str,
    X: np.ndarray,
    y: Any,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    cv: int = 5,
    seed: int = 0,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> BaseEstimator:
    """Grid-searched classifier refitted on all given cases (see :func:`grid_search`).

    Returns:
        The fitted best estimator.
    """
    return grid_search(name, X, y, grid=grid, cv=cv, seed=seed, groups=groups).estimator


def positive_proba(estimator: Any, X: np.ndarray) -> np.ndarray:
    """Positive-class (label 1) probability column of a fitted classifier."""
    proba = np.asarray(estimator.predict_proba(X), dtype=float)
    classes = list(np.asarray(estimator.classes_).tolist())
    return proba[:, classes.index(1)]


def proba_to_logit(p: np.ndarray) -> np.ndarray:
    """Logit of probabilities clipped to [PROBA_EPS, 1 - PROBA_EPS] (trees can give exactly 0 or 1)."""
    return logit(np.clip(np.asarray(p, dtype=float), PROBA_EPS, 1.0 - PROBA_EPS))


def as_frame(X: Any, feature_names: Sequence[str] | None = None) -> pd.DataFrame:
    """A DataFrame from a DataFrame or an array with column names.

    Raises:
        InputError: when an array comes without names or with the wrong number of names.
    """
    if is_dataframe(X):
        return X
    check_named(X, feature_names)
    import pandas as pd

    names = [str(n) for n in feature_names or ()]
    return pd.DataFrame(as_matrix(X, names, names), columns=names)


def check_named(X: Any, feature_names: Sequence[str] | None) -> None:
    """Features are matched to a model by name: an array needs its column names.

    Raises:
        InputError: for an array without ``feature_names``.
    """
    if feature_names is None and not is_dataframe(X):
        raise InputError("a feature array needs its column names (feature_names) or use a DataFrame")
