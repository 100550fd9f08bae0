"""Classifiers, signatures and fusion strategies of published deep-learning-radiomics studies.

- :func:`make_classifier` / :func:`fit_classifier`: the usual classifiers with small default grids,
  tuned by grid search (roc_auc) on stratified, patient-grouped folds.
- :class:`Signature`: a named model = :class:`FeatureSelector` + classifier on a subset of columns
  (Rad on radiomics columns, DL on deep-feature PCs, DLR on both = early fusion).
- :class:`DeepFeatureReducer`: z-score + PCA of the deep feature vector ("dl_pc01", ...).
- :class:`EnsembleFusion` (accuracy-weighted softmax average) and :class:`StackingFusion`
  (logistic meta-learner on out-of-fold probabilities).

Probabilities returned by these objects are 1-D: the probability of the positive class (label 1).
Everything is deterministic for a seed. ``to_spec()`` gives JSON-able dicts; the fitted sklearn /
xgboost / lightgbm estimator of a signature is exposed as ``Signature.estimator`` for the bundle
layer to serialise with ``safe_models`` (no pickle).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..base.errors import ConfigError, InputError
from ..base.numeric import expit, logit, softmax
from .selection import (
    FeatureSelector,
    SelectionConfig,
    as_matrix,
    check_binary_labels,
    is_dataframe,
    stratified_folds,
)

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.base import BaseEstimator

# sklearn and pandas are imported inside the training functions: applying a fitted signature or
# fusion (Signature.from_spec + safe_models estimators) needs numpy alone.

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
    groups: Sequence[Any] | None = None,
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

    yb = check_binary_labels(y)
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
        # 1.9 still fits Platt scaling, which safe_models stores as plain numbers.
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
    groups: Sequence[Any] | None = None,
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


class Signature:
    """A named model: feature selection + a tuned classifier on a subset of the columns.

    Attributes:
        name: display name ("Rad", "DL", "DLR", ...).
        columns: candidate columns (None: all columns given to ``fit``).
        classifier: classifier name (``CLASSIFIERS``).
        selector: the fitted :class:`FeatureSelector`.
        estimator: the fitted inner estimator (serialise with ``safe_models``).
        best_params, cv_auc: grid search outcome on the training cases.
    """

    def __init__(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        classifier: str = "lr",
        *,
        selection: SelectionConfig | None = None,
        grid: Mapping[str, Sequence[Any]] | None = None,
        cv: int = 5,
        seed: int = 0,
    ) -> None:
        """Args:
        name: display name.
        columns: candidate feature columns; None for every column given to fit.
        classifier: one of ``CLASSIFIERS``.
        selection: feature selection settings (defaults when None).
        grid: classifier grid (``DEFAULT_GRIDS`` when None).
        cv: folds of the grid search.
        seed: seed of selection, folds and classifier.
        """
        if classifier not in CLASSIFIERS:
            raise ConfigError(f"unknown classifier '{classifier}'; choose one of {', '.join(CLASSIFIERS)}")
        self.name = name
        self.columns = None if columns is None else [str(c) for c in columns]
        self.classifier = classifier
        self.selection = selection or SelectionConfig(seed=seed)
        self.grid = None if grid is None else {k: list(v) for k, v in grid.items()}
        self.cv = cv
        self.seed = seed
        self.selector: FeatureSelector | None = None
        self.estimator: Any = None
        self.best_params: dict[str, Any] = {}
        self.cv_auc: float | None = None

    def clone(self) -> Signature:
        """An unfitted copy with the same settings."""
        return Signature(
            self.name,
            self.columns,
            self.classifier,
            selection=self.selection,
            grid=self.grid,
            cv=self.cv,
            seed=self.seed,
        )

    def fit(
        self,
        X: Any,
        y: Any,
        groups: Sequence[Any] | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> Signature:
        """Select features and tune the classifier on the training cases.

        Args:
            X: DataFrame (or array + ``feature_names``) of training features.
            y: 0/1 labels.
            groups: patient ids (kept whole in every inner fold).
            feature_names: column names of an array ``X``.

        Returns:
            self.
        """
        frame = as_frame(X, feature_names)
        columns = self.columns if self.columns is not None else [str(c) for c in frame.columns]
        sub = as_matrix(frame, None, columns)
        self.selector = FeatureSelector(self.selection).fit(sub, y, feature_names=columns, groups=groups)
        Z = self.selector.transform(sub, feature_names=columns)
        result = grid_search(self.classifier, Z, y, grid=self.grid, cv=self.cv, seed=self.seed, groups=groups)
        self.columns = columns
        self.estimator = result.estimator
        self.best_params = result.best_params
        self.cv_auc = result.best_score
        return self

    def _require_fitted(self) -> FeatureSelector:
        if self.selector is None or self.estimator is None:
            raise InputError(f"signature '{self.name}' is not fitted yet")
        return self.selector

    @property
    def selected_features(self) -> list[str]:
        """Names of the features the classifier uses."""
        return list(self._require_fitted().selected_names)

    def predict_proba(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """Positive-class probability for each case (1-D)."""
        selector = self._require_fitted()
        check_named(X, feature_names)
        return positive_proba(self.estimator, selector.transform(X, feature_names))

    def decision_logit(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """The signature score on the logit scale (clipped probabilities, see ``PROBA_EPS``)."""
        return proba_to_logit(self.predict_proba(X, feature_names))

    def to_spec(self) -> dict[str, Any]:
        """JSON-able settings and fitted selector; the estimator itself stays in ``.estimator``."""
        selector = self._require_fitted()
        return {
            "kind": "Signature",
            "name": self.name,
            "columns": list(self.columns or []),
            "classifier": self.classifier,
            "selection": self.selection.to_dict(),
            "grid": self.grid,
            "cv": self.cv,
            "seed": self.seed,
            "selector": selector.to_spec(),
            "best_params": _jsonable(self.best_params),
            "cv_auc": self.cv_auc,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], estimator: Any) -> Signature:
        """Rebuild a fitted signature from its spec and its (safe_models-loaded) estimator.

        Raises:
            ConfigError: when the spec is not a signature spec.
        """
        if spec.get("kind") != "Signature":
            raise ConfigError(f"not a signature spec (kind={spec.get('kind')!r})")
        sig = cls(
            spec["name"],
            spec["columns"],
            spec["classifier"],
            selection=SelectionConfig.from_dict(spec["selection"]),
            grid=spec.get("grid"),
            cv=int(spec["cv"]),
            seed=int(spec["seed"]),
        )
        sig.selector = FeatureSelector.from_spec(spec["selector"])
        sig.estimator = estimator
        sig.best_params = dict(spec.get("best_params") or {})
        sig.cv_auc = spec.get("cv_auc")
        return sig


def early_fusion(
    rad_columns: Sequence[str],
    dl_columns: Sequence[str],
    *,
    name: str = "DLR",
    classifier: str = "lr",
    selection: SelectionConfig | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    cv: int = 5,
    seed: int = 0,
) -> Signature:
    """Early (feature-level) fusion: one signature on the concatenated Rad + DL columns."""
    return Signature(
        name, [*rad_columns, *dl_columns], classifier, selection=selection, grid=grid, cv=cv, seed=seed
    )


class DeepFeatureReducer:
    """z-score + PCA of the deep feature vector, fitted on training cases.

    Attributes (after fit): mean, std (per input feature), pca_mean, components (k x d),
    explained_variance_ratio, names ("dl_pc01", ...).
    """

    def __init__(self, n_components: int | float = 0.95, prefix: str = "dl_pc") -> None:
        """Args:
        n_components: number of components (int) or explained-variance fraction in (0, 1).
        prefix: name prefix of the components.

        Raises:
            ConfigError: for a non-positive count or a fraction outside (0, 1).
        """
        # float.is_integer(x), not x.is_integer(): the Python 3.9 check (vermin) would read the
        # latter as int.is_integer (3.12+) because of the int() assignment below.
        if isinstance(n_components, float) and n_components >= 1.0 and float.is_integer(n_components):
            n_components = int(n_components)  # a YAML "20.0" means 20 components
        if isinstance(n_components, bool) or not (
            (isinstance(n_components, int) and n_components >= 1)
            or (isinstance(n_components, float) and 0.0 < n_components < 1.0)
        ):
            raise ConfigError("n_components must be an int >= 1 or a variance fraction in (0, 1)")
        self.n_components = n_components
        self.prefix = prefix
        self.mean = np.zeros(0)
        self.std = np.ones(0)
        self.pca_mean = np.zeros(0)
        self.components = np.zeros((0, 0))
        self.explained_variance_ratio = np.zeros(0)

    @property
    def names(self) -> list[str]:
        """Component names, 1-based and zero-padded (dl_pc01, dl_pc02, ...)."""
        width = max(2, len(str(len(self.components))))
        return [f"{self.prefix}{i + 1:0{width}d}" for i in range(len(self.components))]

    def fit(self, X: Any) -> DeepFeatureReducer:
        """Fit the scaler and the PCA on (training) deep features.

        Args:
            X: (n, d) deep feature matrix.

        Returns:
            self.

        Raises:
            InputError: for non-finite values or fewer than 2 cases.
        """
        from sklearn.decomposition import PCA

        M = as_matrix(X, None)
        if M.shape[0] < 2:
            raise InputError("PCA of deep features needs at least 2 training cases")
        self.mean = M.mean(axis=0)
        std = M.std(axis=0)
        # Constant deep features (dead ReLU units) have no variance: leave them unscaled at zero.
        self.std = np.where(std > 1e-12, std, 1.0)
        Z = (M - self.mean) / self.std
        n = self.n_components
        if isinstance(n, int):
            n = min(n, M.shape[0], M.shape[1])
        pca = PCA(n_components=n, svd_solver="full").fit(Z)
        self.pca_mean = pca.mean_.copy()
        self.components = pca.components_.copy()
        self.explained_variance_ratio = pca.explained_variance_ratio_.copy()
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Principal-component scores of new cases (n, k).

        Raises:
            InputError: when not fitted or the width differs from training.
        """
        if self.components.size == 0:
            raise InputError("the deep feature reducer is not fitted yet")
        M = as_matrix(X, None)
        if M.shape[1] != len(self.mean):
            raise InputError(
                f"deep feature vector has {M.shape[1]} values but the model expects {len(self.mean)}; "
                "use the CNN weights of the same bundle"
            )
        return ((M - self.mean) / self.std - self.pca_mean) @ self.components.T

    def transform_frame(self, X: Any, index: Any = None) -> pd.DataFrame:
        """:meth:`transform` as a DataFrame with the component names as columns."""
        import pandas as pd

        return pd.DataFrame(self.transform(X), columns=self.names, index=index)

    def to_spec(self) -> dict[str, Any]:
        """JSON-able dict of the fitted reducer."""
        if self.components.size == 0:
            raise InputError("the deep feature reducer is not fitted yet")
        return {
            "kind": "DeepFeatureReducer",
            "n_components": self.n_components,
            "prefix": self.prefix,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "pca_mean": self.pca_mean.tolist(),
            "components": self.components.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> DeepFeatureReducer:
        """Rebuild a fitted reducer from :meth:`to_spec` output (lists or arrays).

        Raises:
            ConfigError: when the spec is not a reducer spec or is inconsistent.
        """
        if spec.get("kind") != "DeepFeatureReducer":
            raise ConfigError(f"not a deep feature reducer spec (kind={spec.get('kind')!r})")
        red = cls(spec["n_components"], spec.get("prefix", "dl_pc"))
        red.mean = np.asarray(spec["mean"], dtype=float)
        red.std = np.asarray(spec["std"], dtype=float)
        red.pca_mean = np.asarray(spec["pca_mean"], dtype=float)
        red.components = np.atleast_2d(np.asarray(spec["components"], dtype=float))
        red.explained_variance_ratio = np.asarray(spec["explained_variance_ratio"], dtype=float)
        if red.components.shape[1] != len(red.mean) or len(red.std) != len(red.mean):
            raise ConfigError("deep feature reducer spec is inconsistent (component width != mean length)")
        return red


@dataclass
class OutOfFold:
    """Out-of-fold predictions.

    Attributes:
        proba: positive-class probability of each case, predicted by a model not trained on it
            (nor on any other case of its patient).
        fold: index of the fold in which each case was in validation.
    """

    proba: np.ndarray
    fold: np.ndarray


def out_of_fold_proba(
    factory: Callable[[], ProbabilityModel],
    X: Any,
    y: Any,
    groups: Sequence[Any] | None = None,
    *,
    cv: int = 5,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
) -> OutOfFold:
    """Out-of-fold probabilities with StratifiedGroupKFold, so that no patient leaks.

    Args:
        factory: returns a fresh unfitted model with ``fit(X, y, groups)`` and ``predict_proba``.
        X: DataFrame (or array + ``feature_names``).
        y: 0/1 labels.
        groups: patient ids; all cases of a patient are in the same fold.
        cv: number of folds.
        seed: fold shuffling seed.
        feature_names: column names of an array ``X``.

    Returns:
        OutOfFold with the probabilities and fold assignment.
    """
    frame = as_frame(X, feature_names).reset_index(drop=True)
    yb = check_binary_labels(y)
    garr = None if groups is None else np.asarray(groups)
    proba = np.full(len(yb), np.nan)
    fold = np.full(len(yb), -1, dtype=int)
    for k, (tr, va) in enumerate(stratified_folds(yb, garr, cv, seed)):
        model = factory()
        model.fit(frame.iloc[tr], yb[tr], None if garr is None else garr[tr])  # type: ignore[attr-defined]
        proba[va] = model.predict_proba(frame.iloc[va])
        fold[va] = k
    return OutOfFold(proba=proba, fold=fold)


def _member_oof(
    members: Sequence[Signature], X: pd.DataFrame, y: np.ndarray, groups: Any, *, cv: int, seed: int
) -> np.ndarray:
    return np.column_stack(
        [out_of_fold_proba(m.clone, X, y, groups, cv=cv, seed=seed).proba for m in members]
    )


class EnsembleFusion:
    """Decision-level fusion: accuracy-weighted softmax average of member probabilities.

    weights = softmax(accuracy_i / temperature), accuracy_i of member i at a 0.5 threshold on its
    out-of-fold probabilities over the training cases; members are then refitted on all of them.
    """

    def __init__(
        self,
        members: Sequence[Signature],
        *,
        temperature: float = 0.1,
        cv: int = 5,
        seed: int = 0,
        name: str = "Ensemble",
    ) -> None:
        """Args:
        members: unfitted signatures (their settings are used).
        temperature: softmax temperature (smaller: more weight to the best member).
        cv: folds for the out-of-fold accuracies.
        seed: fold seed.
        name: display name.
        """
        if not members:
            raise ConfigError("ensemble fusion needs at least one member signature")
        if temperature <= 0:
            raise ConfigError("ensemble temperature must be positive")
        self.members = list(members)
        self.temperature = float(temperature)
        self.cv = cv
        self.seed = seed
        self.name = name
        self.accuracies = np.zeros(0)
        self.weights = np.zeros(0)

    def fit(
        self,
        X: Any,
        y: Any,
        groups: Sequence[Any] | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> EnsembleFusion:
        """Out-of-fold accuracies -> weights, then refit every member on all cases."""
        frame = as_frame(X, feature_names).reset_index(drop=True)
        yb = check_binary_labels(y)
        oof = _member_oof(self.members, frame, yb, groups, cv=self.cv, seed=self.seed)
        self.accuracies = ((oof >= 0.5).astype(int) == yb[:, None]).mean(axis=0)
        self.weights = softmax(self.accuracies / self.temperature)
        self.members = [m.clone().fit(frame, yb, groups) for m in self.members]
        return self

    def predict_proba(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """Weighted average of the members' positive-class probabilities."""
        if self.weights.size == 0:
            raise InputError(f"fusion '{self.name}' is not fitted yet")
        check_named(X, feature_names)
        P = np.column_stack([m.predict_proba(X, feature_names) for m in self.members])
        return P @ self.weights

    def to_spec(self) -> dict[str, Any]:
        """JSON-able weights and member specs (members' estimators stay in ``members[i].estimator``)."""
        return {
            "kind": "EnsembleFusion",
            "name": self.name,
            "temperature": self.temperature,
            "cv": self.cv,
            "seed": self.seed,
            "accuracies": self.accuracies.tolist(),
            "weights": self.weights.tolist(),
            "members": [m.to_spec() for m in self.members],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], members: Sequence[Signature]) -> EnsembleFusion:
        """Rebuild from the spec and the fitted members (rebuilt with ``Signature.from_spec``).

        Raises:
            ConfigError: when the spec is not an ensemble spec or members do not match.
        """
        if spec.get("kind") != "EnsembleFusion":
            raise ConfigError(f"not an ensemble fusion spec (kind={spec.get('kind')!r})")
        _check_members(spec, members)
        ens = cls(
            members,
            temperature=spec["temperature"],
            cv=int(spec["cv"]),
            seed=int(spec["seed"]),
            name=spec["name"],
        )
        ens.accuracies = np.asarray(spec["accuracies"], dtype=float)
        ens.weights = np.asarray(spec["weights"], dtype=float)
        return ens


STACKING_INPUTS = ("probability", "logit")


class StackingFusion:
    """Stacking: a logistic-regression meta-learner on the members' out-of-fold scores.

    The meta-learner reads the members' probabilities or their log-odds (``inputs``). On log-odds
    it is a weighted sum of the members' logits, the scale on which logistic members are linear;
    on probabilities a confident member (p near 0 or 1) counts no more than a hesitant one.
    """

    def __init__(
        self,
        members: Sequence[Signature],
        *,
        cv: int = 5,
        seed: int = 0,
        meta_c: float = 1.0,
        name: str = "Stacking",
        inputs: str = "probability",
    ) -> None:
        """Args:
        members: unfitted signatures.
        cv: folds of the out-of-fold probabilities.
        seed: fold seed.
        meta_c: inverse L2 strength of the meta-learner.
        name: display name.
        inputs: "probability" or "logit": what the meta-learner reads of each member.

        Raises:
            ConfigError: no members, or unknown ``inputs``.
        """
        if not members:
            raise ConfigError("stacking fusion needs at least one member signature")
        if inputs not in STACKING_INPUTS:
            raise ConfigError(f"stacking inputs must be one of {STACKING_INPUTS}, got {inputs!r}")
        self.inputs = inputs
        self.members = list(members)
        self.cv = cv
        self.seed = seed
        self.meta_c = float(meta_c)
        self.name = name
        self.coef = np.zeros(0)
        self.intercept = 0.0
        self.oof: np.ndarray | None = None

    def fit(
        self,
        X: Any,
        y: Any,
        groups: Sequence[Any] | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> StackingFusion:
        """Meta-learner on out-of-fold probabilities, then refit every member on all cases."""
        frame = as_frame(X, feature_names).reset_index(drop=True)
        yb = check_binary_labels(y)
        self.oof = _member_oof(self.members, frame, yb, groups, cv=self.cv, seed=self.seed)
        self.fit_meta(self.oof, yb)
        self.members = [m.clone().fit(frame, yb, groups) for m in self.members]
        return self

    def fit_meta(self, P: np.ndarray, y: np.ndarray) -> StackingFusion:
        """Fit only the meta-learner, on member probabilities ``P`` (cases x members) computed
        out of fold by the caller (the trainer cross-fits its members itself)."""
        from sklearn.linear_model import LogisticRegression

        meta = LogisticRegression(C=self.meta_c, max_iter=5000, random_state=self.seed)
        meta.fit(self.meta_inputs(P), y)
        self.coef = meta.coef_.ravel().copy()
        self.intercept = float(meta.intercept_[0])
        return self

    def combine(self, P: np.ndarray) -> np.ndarray:
        """The fused probability from member probabilities ``P`` (cases x members)."""
        return expit(self.intercept + self.meta_inputs(P) @ self.coef)

    def predict_proba(self, X: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """Meta-learner probability from the members' probabilities."""
        if self.coef.size == 0:
            raise InputError(f"fusion '{self.name}' is not fitted yet")
        check_named(X, feature_names)
        return self.combine(np.column_stack([m.predict_proba(X, feature_names) for m in self.members]))

    def meta_inputs(self, P: np.ndarray) -> np.ndarray:
        """What the meta-learner reads: the members' probabilities or their clipped log-odds."""
        return proba_to_logit(P) if self.inputs == "logit" else np.asarray(P, dtype=float)

    def to_spec(self) -> dict[str, Any]:
        """JSON-able meta-learner coefficients and member specs."""
        return {
            "kind": "StackingFusion",
            "name": self.name,
            "cv": self.cv,
            "seed": self.seed,
            "meta_c": self.meta_c,
            "inputs": self.inputs,
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "members": [m.to_spec() for m in self.members],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], members: Sequence[Signature]) -> StackingFusion:
        """Rebuild from the spec and the fitted members.

        Raises:
            ConfigError: when the spec is not a stacking spec or members do not match.
        """
        if spec.get("kind") != "StackingFusion":
            raise ConfigError(f"not a stacking fusion spec (kind={spec.get('kind')!r})")
        _check_members(spec, members)
        st = cls(
            members,
            cv=int(spec["cv"]),
            seed=int(spec["seed"]),
            meta_c=float(spec["meta_c"]),
            name=spec["name"],
            # bundles written before the option existed stacked probabilities
            inputs=str(spec.get("inputs", "probability")),
        )
        st.coef = np.asarray(spec["coef"], dtype=float)
        st.intercept = float(spec["intercept"])
        return st


def _check_members(spec: Mapping[str, Any], members: Sequence[Signature]) -> None:
    want = [m["name"] for m in spec["members"]]
    got = [m.name for m in members]
    if want != got:
        raise ConfigError(f"fusion '{spec['name']}' expects members {want}, got {got}")


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        out[k] = v.item() if isinstance(v, np.generic) else v
    return out
