"""The interfaces of the loaded models, the format constants, input checks and numeric helpers.

:class:`SafeModel` (a binary classifier) and :class:`SafeTransformer` (scaling / PCA) are what
:func:`~.load.load_model` returns; :class:`ClassifierBase` and :class:`TransformerBase` are the
numpy implementations' common bases: their public methods validate the input, then delegate.

Contributions (``SafeModel.contributions``): per-feature columns plus a last bias column.
``contribution_scale`` says what they add up to:

- ``"logit"``: exactly ``decision_logit`` (up to float rounding). Linear models (logistic
  regression, linear SVC through its Platt map, a single sigmoid-calibrated linear model):
  ``w_j * (x_j - ref_j)`` with bias ``logit(ref)``, where ``ref`` is 0 for a bare model and the
  training mean of the first scaling / PCA step in a pipeline (a feature at its mean adds 0).
  XGBoost (``pred_contribs``) and LightGBM (``pred_contrib``): SHAP values of the raw margin.
- ``"probability"``: random forest / extra trees / decision tree, Saabas path decomposition of the
  class-1 probability: the sum equals ``predict_proba[:, 1]``, not the logit.
- ``None``: RBF SVC, k-nearest neighbours, isotonic or multi-member calibration, and non-linear
  models behind a PCA step have no exact additive decomposition; ``contributions`` returns None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from ...base.errors import InputError
from ...base.numeric import expit

FORMAT = "dlrpredictor-safe-model"
FORMAT_VERSION = 1
#: Probabilities are clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] before a log-odds is taken from them
#: (tree, KNN and averaged models); libsvm clips its Platt probabilities to the same bound.
LOGIT_CLIP = 1e-7
_CHUNK_ELEMENTS = 4_000_000  # bounds the (rows x train x features) blocks of kernel / distance code


@runtime_checkable
class SafeModel(Protocol):
    """A loaded binary classifier. Columns of ``predict_proba`` follow ``classes``."""

    kind: str
    n_features_in: int
    feature_names: tuple[str, ...] | None
    classes: tuple[Any, ...]
    contribution_scale: str | None

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, shape (n, 2)."""
        ...

    def decision_logit(self, X: ArrayLike) -> np.ndarray:
        """Log-odds of ``classes[1]``, shape (n,)."""
        ...

    def contributions(self, X: ArrayLike) -> np.ndarray | None:
        """Per-feature contributions plus a bias column, shape (n, n_features_in + 1), or None."""
        ...


@runtime_checkable
class SafeTransformer(Protocol):
    """A loaded feature transformer (scaling, PCA or a chain of them)."""

    kind: str
    n_features_in: int
    n_features_out: int
    feature_names: tuple[str, ...] | None

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Transformed features, shape (n, n_features_out)."""
        ...


def _as_features(
    X: ArrayLike, n_features_in: int, feature_names: tuple[str, ...] | None, kind: str
) -> np.ndarray:
    """Validate a feature matrix (numbers, 2-D, right columns, finite) and return it as float64."""
    columns = getattr(X, "columns", None)
    if columns is not None and feature_names is not None:
        got = [str(c) for c in columns]
        if got != list(feature_names):
            missing = [n for n in feature_names if n not in got]
            extra = [n for n in got if n not in feature_names]
            detail = f"missing {missing[:5]}, unexpected {extra[:5]}" if missing or extra else "wrong order"
            raise InputError(
                f"The {kind} model expects the feature columns {list(feature_names)[:5]}... in the "
                f"bundle's order, but the table differs ({detail}); compute the features with the "
                "bundle's settings and select its columns."
            )
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"The {kind} model needs numeric feature values: {exc}") from exc
    if arr.ndim != 2:
        raise InputError(
            f"The {kind} model needs a 2-D table of features (one row per case), got an array "
            f"of shape {arr.shape}; pass one case as a single row."
        )
    if arr.shape[1] != n_features_in:
        names = f" ({', '.join(feature_names[:5])}, ...)" if feature_names else ""
        raise InputError(
            f"The {kind} model expects {n_features_in} feature columns{names} but got "
            f"{arr.shape[1]}; compute the features with the bundle's parameter file and settings."
        )
    if arr.shape[0] == 0:
        raise InputError(f"The {kind} model got no rows to predict.")
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = (int(v[0]) for v in np.nonzero(~finite))
        name = f" ({feature_names[col]})" if feature_names else ""
        raise InputError(
            f"The {kind} model got a missing (NaN) or infinite feature value at row {row}, column "
            f"{col}{name}; check the image, mask and clinical values of that case."
        )
    return arr


def expit_array(z: np.ndarray) -> np.ndarray:
    """The logistic function of an array, as an array."""
    return np.asarray(expit(z))


def _logit_of(p1: np.ndarray) -> np.ndarray:
    p = np.clip(p1, LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def two_columns(p1: np.ndarray) -> np.ndarray:
    """``predict_proba``'s (n, 2) layout from the probabilities of ``classes[1]``."""
    return np.column_stack([1.0 - p1, p1])


def _row_chunks(n_rows: int, per_row: int) -> list[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(per_row, 1))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def pairwise_distances(X: np.ndarray, Y: np.ndarray, metric: str) -> np.ndarray:
    """Exact pairwise distances ("euclidean", "manhattan", "sqeuclidean") from differences."""
    out = np.empty((X.shape[0], Y.shape[0]))
    for rows in _row_chunks(X.shape[0], Y.shape[0] * X.shape[1]):
        diff = X[rows, None, :] - Y[None, :, :]
        if metric == "manhattan":
            out[rows] = np.abs(diff).sum(axis=2)
        else:
            out[rows] = np.einsum("ijk,ijk->ij", diff, diff)
    return np.sqrt(out) if metric == "euclidean" else out


def _affine_contributions(
    X: np.ndarray, weights: np.ndarray, offset: float, reference: np.ndarray
) -> np.ndarray:
    """``w * (x - ref)`` per feature and ``ref @ w + offset`` as bias: sums to ``x @ w + offset``."""
    out = np.empty((X.shape[0], X.shape[1] + 1))
    out[:, :-1] = (X - reference) * weights
    out[:, -1] = float(reference @ weights) + offset
    return out


def model_file_paths(path_prefix: str | Path) -> tuple[Path, Path]:
    """The ``<prefix>.json`` and ``<prefix>.npz`` files of a saved model."""
    prefix = str(path_prefix)
    return Path(prefix + ".json"), Path(prefix + ".npz")


class TransformerBase:
    """Base of the numpy transformers; ``_affine`` gives T(x) = x @ M + c."""

    kind = "transformer"
    feature_wise = False  # True when output column j depends only on input column j

    def __init__(self, n_features_in: int, n_features_out: int) -> None:
        self.n_features_in = n_features_in
        self.n_features_out = n_features_out
        self.feature_names: tuple[str, ...] | None = None

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Transform validated features.

        Args:
            X: feature table, shape (n, n_features_in).

        Returns:
            The transformed table, shape (n, n_features_out).

        Raises:
            InputError: wrong columns, non-numeric or non-finite values.
        """
        return self._transform(_as_features(X, self.n_features_in, self.feature_names, self.kind))

    def _transform(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _center(self) -> np.ndarray:
        return np.zeros(self.n_features_in)


class ClassifierBase:
    """Base of the loaded binary classifiers: public methods validate input, then delegate.

    Subclasses implement ``_proba`` / ``_logit``; linear ones implement ``_affine_logit`` (the logit
    as ``x @ w + c``) and get exact contributions from it. ``response`` names what
    CalibratedClassifierCV feeds its calibrator: ``decision_function`` or ``predict_proba``.
    """

    kind = "classifier"
    response = "predict_proba"
    contribution_scale: str | None = None

    def __init__(self, n_features_in: int, classes: tuple[Any, ...]) -> None:
        self.n_features_in = n_features_in
        self.classes = classes
        self.feature_names: tuple[str, ...] | None = None

    @property
    def classes_(self) -> np.ndarray:
        """The class labels in column order, named as scikit-learn names them."""
        return np.asarray(self.classes)

    def _check(self, X: ArrayLike) -> np.ndarray:
        return _as_features(X, self.n_features_in, self.feature_names, self.kind)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities.

        Args:
            X: feature table, shape (n, n_features_in).

        Returns:
            Array (n, 2); column 1 is the probability of ``classes[1]``.

        Raises:
            InputError: wrong columns, non-numeric or non-finite values.
        """
        return self._proba(self._check(X))

    def decision_logit(self, X: ArrayLike) -> np.ndarray:
        """Log-odds of ``classes[1]``.

        Args:
            X: feature table, shape (n, n_features_in).

        Returns:
            Array (n,): the linear predictor for linear models and the raw margin for XGBoost /
            LightGBM; otherwise ``log(p / (1 - p))`` with p clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP].

        Raises:
            InputError: wrong columns, non-numeric or non-finite values.
        """
        return self._logit(self._check(X))

    def contributions(self, X: ArrayLike) -> np.ndarray | None:
        """Per-feature contributions and a bias column (see the module doc and ``contribution_scale``).

        Args:
            X: feature table, shape (n, n_features_in).

        Returns:
            Array (n, n_features_in + 1) summing to ``decision_logit`` (scale "logit") or to
            ``predict_proba[:, 1]`` (scale "probability"); None when no exact decomposition exists.

        Raises:
            InputError: wrong columns, non-numeric or non-finite values.
        """
        return self._contrib(self._check(X))

    def affine_logit(self) -> tuple[np.ndarray, float] | None:
        """The logit as ``x @ w + c``: ``(w, c)`` for linear models, None for the others."""
        return self._affine_logit()

    def _proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _logit(self, X: np.ndarray) -> np.ndarray:
        return _logit_of(self._proba(X)[:, 1])

    def _response(self, X: np.ndarray) -> np.ndarray:
        return self._proba(X)[:, 1]

    def _affine_logit(self) -> tuple[np.ndarray, float] | None:
        return None

    def _affine_response(self) -> tuple[np.ndarray, float] | None:
        return None

    def _reference(self) -> np.ndarray:
        return np.zeros(self.n_features_in)

    def _contrib(self, X: np.ndarray) -> np.ndarray | None:
        affine = self._affine_logit()
        if affine is None:
            return None
        return _affine_contributions(X, affine[0], affine[1], self._reference())
