"""Signatures: named models of feature selection plus a tuned classifier, and the deep-feature PCA.

- :class:`Signature`: :class:`~.selection.FeatureSelector` + classifier on a subset of columns
  (Rad on radiomics columns, DL on deep-feature PCs, DLR on both = :func:`early_fusion`).
- :class:`DeepFeatureReducer`: z-score + PCA of the deep feature vector ("dl_pc01", ...).

``to_spec()`` gives JSON-able dicts; the fitted sklearn / xgboost / lightgbm estimator of a
signature is exposed as ``Signature.estimator`` for the bundle layer to serialise with
``models.persistence`` (no pickle). Applying a fitted signature (``Signature.from_spec`` + a
persistence-loaded estimator) needs numpy alone; sklearn and pandas are imported to fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import ConfigError, InputError
from ..base.json_values import to_json_value
from .classifiers import CLASSIFIERS, as_frame, check_named, grid_search, positive_proba, proba_to_logit
from .selection import FeatureSelector, SelectionConfig, as_matrix

if TYPE_CHECKING:
    import pandas as pd


class Signature:
    """A named model: feature selection + a tuned classifier on a subset of the columns.

    Attributes:
        name: display name ("Rad", "DL", "DLR", ...).
        columns: candidate columns (None: all columns given to ``fit``).
        classifier: classifier name (``CLASSIFIERS``).
        selector: the fitted :class:`FeatureSelector`.
        estimator: the fitted inner estimator (serialise with ``models.persistence``).
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
        groups: Sequence[Any] | np.ndarray | None = None,
        feature_names: Sequence[str] | None = None,
        selection_rows: Sequence[bool] | np.ndarray | None = None,
    ) -> Signature:
        """Select features and tune the classifier on the training cases.

        Args:
            X: DataFrame (or array + ``feature_names``) of training features.
            y: 0/1 labels.
            groups: patient ids (kept whole in every inner fold).
            feature_names: column names of an array ``X``.
            selection_rows: boolean mask of the rows feature selection is fitted on (e.g. one
                row per lesion); the classifier is fitted on every row. None: every row.

        Returns:
            self.
        """
        frame = as_frame(X, feature_names)
        columns = self.columns if self.columns is not None else [str(c) for c in frame.columns]
        sub = as_matrix(frame, None, columns)
        self.selector = FeatureSelector(self.selection).fit(
            sub, y, feature_names=columns, groups=groups, selection_rows=selection_rows
        )
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
            "best_params": to_json_value(self.best_params, non_finite="keep"),
            "cv_auc": self.cv_auc,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], estimator: Any) -> Signature:
        """Rebuild a fitted signature from its spec and its (persistence-loaded) estimator.

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
