"""Fitted estimators <-> a JSON spec plus plain numeric arrays, loadable without executing code.

A model bundle must be safe to open, so fitted steps are never pickled. :func:`dump_model` turns a
fitted estimator into ``(spec, arrays)``: ``spec`` is JSON (the ``kind``, hyper-parameters and
structure) and ``arrays`` are named plain numeric numpy arrays (stored by the bundle layer in a
``.npz`` read with ``allow_pickle=False``, or in safetensors). :func:`load_model` rebuilds a
:class:`SafeModel` (a binary classifier) or :class:`SafeTransformer` re-implemented in numpy.
XGBoost and LightGBM models travel as their native JSON / text model (parsed by their own
libraries, which execute no Python code) inside a ``uint8`` array.

Supported: StandardScaler, PCA, Pipeline (scaler / PCA steps, optional final classifier),
LogisticRegression(CV), SVC (linear / RBF), RandomForest / ExtraTrees / DecisionTree classifiers,
KNeighborsClassifier, CalibratedClassifierCV (sigmoid / isotonic), XGBClassifier, LGBMClassifier;
all binary. Anything else is refused with :class:`~DLRPredictorLib.base.errors.ConfigError` on dump and
:class:`~DLRPredictorLib.base.errors.BundleError` on load.

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

import json
import math
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from ..base.compat import zip_strict
from ..base.errors import BundleError, ConfigError, InputError
from ..base.numeric import expit

FORMAT = "dlrpredictor-safe-model"
FORMAT_VERSION = 1
#: Probabilities are clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] before a log-odds is taken from them
#: (tree, KNN and averaged models); libsvm clips its Platt probabilities to the same bound.
LOGIT_CLIP = 1e-7
_CHUNK_ELEMENTS = 4_000_000  # bounds the (rows x train x features) blocks of kernel / distance code


# --------------------------------------------------------------------------------------------------
# Public interfaces
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Input checking
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Numeric helpers
# --------------------------------------------------------------------------------------------------


def _expit(z: np.ndarray) -> np.ndarray:
    return np.asarray(expit(z))


def _logit_of(p1: np.ndarray) -> np.ndarray:
    p = np.clip(p1, LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def _two_columns(p1: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - p1, p1])


def _row_chunks(n_rows: int, per_row: int) -> list[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(per_row, 1))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def _pairwise(X: np.ndarray, Y: np.ndarray, metric: str) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------
# Loaded components
# --------------------------------------------------------------------------------------------------


class _Transformer:
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


class SafeStandardScaler(_Transformer):
    """sklearn StandardScaler: ``(x - mean) / scale``."""

    kind = "standard_scaler"
    feature_wise = True

    def __init__(self, mean: np.ndarray | None, scale: np.ndarray | None, n_features_in: int) -> None:
        super().__init__(n_features_in, n_features_in)
        self.mean, self.scale = mean, scale

    def _transform(self, X: np.ndarray) -> np.ndarray:
        out = X.copy()
        if self.mean is not None:
            out -= self.mean
        if self.scale is not None:
            out /= self.scale
        return out

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        inv = 1.0 / self.scale if self.scale is not None else np.ones(self.n_features_in)
        shift = -self.mean * inv if self.mean is not None else np.zeros(self.n_features_in)
        return np.diag(inv), shift

    def _center(self) -> np.ndarray:
        return self.mean.copy() if self.mean is not None else np.zeros(self.n_features_in)


class SafePCA(_Transformer):
    """sklearn PCA projection (optionally whitened), computed as sklearn does."""

    kind = "pca"

    def __init__(
        self, mean: np.ndarray, components: np.ndarray, explained_variance: np.ndarray, whiten: bool
    ) -> None:
        super().__init__(components.shape[1], components.shape[0])
        self.mean, self.components = mean, components
        self.explained_variance, self.whiten = explained_variance, whiten

    def _scale(self) -> np.ndarray:
        scale = np.sqrt(self.explained_variance)
        return np.maximum(scale, np.finfo(scale.dtype).eps)  # sklearn clips tiny variances alike

    def _transform(self, X: np.ndarray) -> np.ndarray:
        out = X @ self.components.T
        out -= self.mean.reshape(1, -1) @ self.components.T
        if self.whiten:
            out /= self._scale()
        return out

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        matrix = self.components.T.copy()
        shift = -(self.mean @ self.components.T)
        if self.whiten:
            matrix /= self._scale()
            shift /= self._scale()
        return matrix, shift

    def _center(self) -> np.ndarray:
        return self.mean.copy()


class SafeTransformChain(_Transformer):
    """A chain of transformers applied in order (a transform-only Pipeline)."""

    kind = "pipeline"

    def __init__(self, steps: list[_Transformer], n_features_in: int) -> None:
        n_out = steps[-1].n_features_out if steps else n_features_in
        super().__init__(n_features_in, n_out)
        self.steps = steps
        self.feature_wise = all(s.feature_wise for s in steps)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        for step in self.steps:
            X = step._transform(X)
        return X

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        matrix, shift = np.eye(self.n_features_in), np.zeros(self.n_features_in)
        for step in self.steps:
            m, c = step._affine()
            matrix, shift = matrix @ m, shift @ m + c
        return matrix, shift

    def _center(self) -> np.ndarray:
        return self.steps[0]._center() if self.steps else np.zeros(self.n_features_in)


class _Classifier:
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


class SafeLogisticRegression(_Classifier):
    """Binary logistic regression (any penalty): ``logit = x @ coef + intercept``."""

    kind = "logistic_regression"
    response = "decision_function"
    contribution_scale = "logit"

    def __init__(self, coef: np.ndarray, intercept: float, classes: tuple[Any, ...]) -> None:
        super().__init__(coef.shape[0], classes)
        self.coef, self.intercept = coef, intercept

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """sklearn's ``decision_function``: the linear predictor, equal to :meth:`decision_logit`.

        Args:
            X: feature table, shape (n, n_features_in).

        Returns:
            Array (n,).

        Raises:
            InputError: wrong columns, non-numeric or non-finite values.
        """
        return self._logit(self._check(X))

    def _logit(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef + self.intercept

    def _response(self, X: np.ndarray) -> np.ndarray:
        return self._logit(X)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return _two_columns(_expit(self._logit(X)))

    def _affine_logit(self) -> tuple[np.ndarray, float]:
        return self.coef, self.intercept

    def _affine_response(self) -> tuple[np.ndarray, float]:
        return self.coef, self.intercept


def _libsvm_pairwise_coupling(r01: np.ndarray) -> np.ndarray:
    """libsvm's ``multiclass_probability`` for two classes, vectorised over rows.

    sklearn's libsvm fork runs this iterative solver (Wu, Lin and Weng, method 2) even for two
    classes; it stops once its error is below 0.005 / 2, so the result is close to, but not equal
    to, the Platt probability ``[r01, 1 - r01]``. The operation order follows svm.cpp.
    """
    r10 = 1 - r01
    q = np.array([[r10 * r10, -r10 * r01], [-r10 * r01, r01 * r01]])  # Q[t][j] per row
    p = np.full((2, r01.size), 0.5)
    active = np.ones(r01.size, dtype=bool)
    for _ in range(100):
        qp = np.stack([0.0 + q[t, 0] * p[0] + q[t, 1] * p[1] for t in range(2)])
        pqp = 0.0 + p[0] * qp[0] + p[1] * qp[1]
        max_error = np.maximum(np.abs(qp[0] - pqp), np.abs(qp[1] - pqp))
        active &= ~(max_error < 0.005 / 2)
        if not active.any():
            break
        for t in range(2):
            diff = (-qp[t] + pqp) / q[t, t]
            new_p = p.copy()
            new_p[t] += diff
            pqp = np.where(active, (pqp + diff * (diff * q[t, t] + 2 * qp[t])) / (1 + diff) / (1 + diff), pqp)
            new_qp = (qp + diff * q[t]) / (1 + diff)
            new_p = new_p / (1 + diff)
            qp = np.where(active, new_qp, qp)
            p = np.where(active, new_p, p)
    return p.T.copy()


class SafeSVC(_Classifier):
    """Binary SVC (linear / RBF kernel) with libsvm's probability output, reproduced exactly.

    ``decision_function`` is sklearn's (``K(x, SV) @ dual_coef + intercept``, positive towards
    ``classes[1]``). libsvm's own decision value is its negation; its Platt probability of
    ``classes[0]`` is ``1 / (1 + exp(A * dec + B))`` clipped to [1e-7, 1 - 1e-7] (A, B: sklearn's
    ``probA_``, ``probB_``), so the Platt log-odds of ``classes[1]`` is ``-A * decision_function + B``:
    that is ``decision_logit`` (linear in x for the linear kernel, hence exact contributions).
    ``predict_proba`` then goes through libsvm's pairwise-coupling solver, which stops within about
    0.005 of the Platt probability; ``expit(decision_logit)`` differs from it by that much.
    """

    kind = "svc"
    response = "decision_function"

    def __init__(
        self,
        *,
        kernel: str,
        gamma: float,
        support_vectors: np.ndarray,
        dual_coef: np.ndarray,
        intercept: float,
        platt: tuple[float, float] | None,
        classes: tuple[Any, ...],
    ) -> None:
        super().__init__(support_vectors.shape[1], classes)
        self.kernel, self.gamma, self.platt = kernel, gamma, platt
        self.support_vectors, self.dual_coef, self.intercept = support_vectors, dual_coef, intercept
        self.contribution_scale = "logit" if kernel == "linear" else None

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """sklearn's SVC ``decision_function``.

        Args:
            X: feature table, shape (n, n_features_in).

        Returns:
            Array (n,): the signed distance to the margin, positive towards ``classes[1]``.

        Raises:
            InputError: wrong columns, non-numeric or non-finite values.
        """
        return self._response(self._check(X))

    def _response(self, X: np.ndarray) -> np.ndarray:
        if self.kernel == "linear":
            gram = X @ self.support_vectors.T
        else:
            gram = np.exp(-self.gamma * _pairwise(X, self.support_vectors, "sqeuclidean"))
        return gram @ self.dual_coef + self.intercept

    def _platt(self) -> tuple[float, float]:
        if self.platt is None:
            raise BundleError("This SVC was stored without Platt parameters and cannot give probabilities.")
        return self.platt

    def _proba(self, X: np.ndarray) -> np.ndarray:
        a, b = self._platt()
        f = a * -self._response(X) + b  # libsvm: fApB = dec_value * A + B
        e = np.exp(-np.abs(f))
        r01 = np.where(f >= 0, e / (1.0 + e), 1.0 / (1.0 + e))  # libsvm's sigmoid_predict
        r01 = np.minimum(np.maximum(r01, 1e-7), 1 - 1e-7)
        return _libsvm_pairwise_coupling(r01)

    def _logit(self, X: np.ndarray) -> np.ndarray:
        a, b = self._platt()
        return -a * self._response(X) + b

    def _affine_response(self) -> tuple[np.ndarray, float] | None:
        if self.kernel != "linear":
            return None
        return self.dual_coef @ self.support_vectors, self.intercept

    def _affine_logit(self) -> tuple[np.ndarray, float] | None:
        affine = self._affine_response()
        if affine is None or self.platt is None:
            return None
        a, b = self.platt
        return -a * affine[0], -a * affine[1] + b


class SafeForest(_Classifier):
    """Random forest / extra trees / one decision tree: mean of the trees' leaf distributions.

    Trees are stored concatenated; traversal is vectorised over (tree, case) pairs. As sklearn,
    features are cast to float32 before comparison with the float64 thresholds.
    """

    contribution_scale = "probability"

    def __init__(
        self,
        *,
        kind: str,
        node_counts: np.ndarray,
        children_left: np.ndarray,
        children_right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
        n_features_in: int,
        classes: tuple[Any, ...],
    ) -> None:
        super().__init__(n_features_in, classes)
        self.kind = kind
        self.roots = np.concatenate([[0], np.cumsum(node_counts)[:-1]]).astype(np.intp)
        offsets = np.repeat(self.roots, node_counts)
        self.left = np.where(children_left < 0, -1, children_left + offsets)
        self.right = np.where(children_right < 0, -1, children_right + offsets)
        self.feature = np.where(children_left < 0, 0, feature)
        self.threshold = threshold
        self.value = value / value.sum(axis=1, keepdims=True)  # sklearn normalises each leaf alike
        self.n_trees = node_counts.shape[0]

    def _walk(self, X: np.ndarray, contrib: np.ndarray | None = None) -> np.ndarray:
        """Leaf index per (tree, case); adds Saabas steps of the class-1 value to ``contrib``."""
        X32 = X.astype(np.float32)
        if not np.isfinite(X32).all():  # sklearn refuses values beyond float32 as well
            raise InputError(f"The {self.kind} model got feature values too large for float32 (> 3.4e38).")
        n = X.shape[0]
        node = np.repeat(self.roots, n)
        case = np.tile(np.arange(n), self.n_trees)
        active = np.flatnonzero(self.left[node] >= 0)
        while active.size:
            here = node[active]
            go_left = X32[case[active], self.feature[here]] <= self.threshold[here]
            child = np.where(go_left, self.left[here], self.right[here])
            if contrib is not None:
                flat = case[active] * X.shape[1] + self.feature[here]
                delta = self.value[child, 1] - self.value[here, 1]
                contrib += np.bincount(flat, weights=delta, minlength=contrib.size).reshape(contrib.shape)
            node[active] = child
            active = active[self.left[child] >= 0]
        return node.reshape(self.n_trees, n)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return self.value[self._walk(X)].sum(axis=0) / self.n_trees

    def _contrib(self, X: np.ndarray) -> np.ndarray:
        steps = np.zeros((X.shape[0], X.shape[1]))
        self._walk(X, steps)
        out = np.empty((X.shape[0], X.shape[1] + 1))
        out[:, :-1] = steps / self.n_trees
        out[:, -1] = self.value[self.roots, 1].mean()
        return out


def _heap_neighbours(dist: np.ndarray, k: int) -> np.ndarray:
    """The k neighbours sklearn's fixed-size max-heap keeps when fed training rows in order.

    This is sklearn's ``heap_push`` (sklearn/utils/_heap.pyx), vectorised over query rows: a value
    equal to the current maximum is rejected, so among equal distances the choice depends on the
    heap layout, not simply on the lowest index. Only rows with a tie at the k-th distance need it.
    """
    m = dist.shape[0]
    values = np.full((m, k), np.inf)
    indices = np.full((m, k), -1, dtype=np.intp)
    for j in range(dist.shape[1]):
        val = dist[:, j]
        rows = np.flatnonzero(val < values[:, 0])
        v, cur = val[rows], np.zeros(rows.size, dtype=np.intp)
        while rows.size:
            left = 2 * cur + 1
            right = left + 1
            has_left, has_right = left < k, right < k
            lv = np.where(has_left, values[rows, np.minimum(left, k - 1)], -np.inf)
            rv = np.where(has_right, values[rows, np.minimum(right, k - 1)], -np.inf)
            use_left = ~has_right | (lv >= rv)
            target = np.where(use_left, left, right)
            swap = has_left & (v < np.where(use_left, lv, rv))
            stop = ~swap
            values[rows[stop], cur[stop]] = v[stop]
            indices[rows[stop], cur[stop]] = j
            r, t, c = rows[swap], target[swap], cur[swap]
            values[r, c] = values[r, t]
            indices[r, c] = indices[r, t]
            rows, cur, v = r, t, v[swap]
    return indices


class SafeKNN(_Classifier):
    """k-nearest neighbours (uniform or distance weights; Euclidean or Manhattan).

    Distances are exact (from differences). The neighbour set is unique unless the k-th and
    (k+1)-th distances tie; for those rows sklearn's brute-force heap is replayed so that ties break
    as sklearn's ``algorithm="brute"`` does. sklearn's kd-tree / ball-tree searches break such ties by
    their tree layout, which is not stored, so tied rows may differ from a tree-based original.
    """

    kind = "k_neighbors"

    def __init__(
        self,
        *,
        fit_X: np.ndarray,
        fit_y: np.ndarray,
        n_neighbors: int,
        weights: str,
        metric: str,
        classes: tuple[Any, ...],
    ) -> None:
        super().__init__(fit_X.shape[1], classes)
        self.fit_X, self.fit_y = fit_X, fit_y
        self.n_neighbors, self.weights, self.metric = n_neighbors, weights, metric

    def _neighbours(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.n_neighbors
        dist = _pairwise(X, self.fit_X, self.metric)
        order = np.argsort(dist, axis=1, kind="stable")
        ind = order[:, :k].copy()
        if dist.shape[1] > k:
            ranked = np.take_along_axis(dist, order[:, k - 1 : k + 1], axis=1)
            tied = np.flatnonzero(ranked[:, 0] == ranked[:, 1])
            if tied.size:
                ind[tied] = _heap_neighbours(dist[tied], k)
        return np.take_along_axis(dist, ind, axis=1), ind

    def _proba(self, X: np.ndarray) -> np.ndarray:
        dist, ind = self._neighbours(X)
        if self.weights == "uniform":
            weight = np.ones_like(dist)
        else:  # sklearn's _get_weights: 1/d, and rows with an exact match use only the matches
            with np.errstate(divide="ignore"):
                weight = 1.0 / dist
            exact = np.isinf(weight)
            rows = exact.any(axis=1)
            weight[rows] = exact[rows]
        labels = self.fit_y[ind]
        proba = np.zeros((X.shape[0], 2))
        rows = np.arange(X.shape[0])
        for i in range(ind.shape[1]):
            proba[rows, labels[:, i]] += weight[:, i]
        return proba / proba.sum(axis=1, keepdims=True)


class SafeXGBoost(_Classifier):
    """XGBoost binary:logistic booster reloaded from its native JSON model."""

    kind = "xgboost"
    contribution_scale = "logit"

    def __init__(
        self, booster: Any, iteration_range: tuple[int, int], missing: float, classes: tuple[Any, ...]
    ) -> None:
        super().__init__(int(booster.num_features()), classes)
        self.booster, self.iteration_range, self.missing = booster, iteration_range, missing

    def _predict(self, X: np.ndarray, **kwargs: bool) -> np.ndarray:
        import xgboost

        matrix = xgboost.DMatrix(
            X,
            missing=self.missing,
            feature_names=self.booster.feature_names,
            feature_types=self.booster.feature_types,
        )
        return np.asarray(
            self.booster.predict(matrix, iteration_range=self.iteration_range, **kwargs), dtype=np.float64
        )

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return _two_columns(self._predict(X))

    def _logit(self, X: np.ndarray) -> np.ndarray:
        return self._predict(X, output_margin=True)

    def _contrib(self, X: np.ndarray) -> np.ndarray:
        return self._predict(X, pred_contribs=True)


class SafeLightGBM(_Classifier):
    """LightGBM binary booster reloaded from its native model string."""

    kind = "lightgbm"
    contribution_scale = "logit"

    def __init__(self, booster: Any, classes: tuple[Any, ...]) -> None:
        super().__init__(int(booster.num_feature()), classes)
        self.booster = booster

    def _predict(self, X: np.ndarray, **kwargs: bool) -> np.ndarray:
        return np.asarray(self.booster.predict(X, **kwargs), dtype=np.float64)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return _two_columns(self._predict(X))

    def _logit(self, X: np.ndarray) -> np.ndarray:
        return self._predict(X, raw_score=True)

    def _contrib(self, X: np.ndarray) -> np.ndarray:
        return self._predict(X, pred_contrib=True)


class _Sigmoid:
    """CalibratedClassifierCV's sigmoid calibrator: ``p = expit(-(a * r + b))``."""

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b = a, b

    def __call__(self, response: np.ndarray) -> np.ndarray:
        return _expit(-(self.a * response + self.b))


class _Isotonic:
    """CalibratedClassifierCV's isotonic calibrator: clip, then linear interpolation."""

    def __init__(self, x: np.ndarray, y: np.ndarray, x_range: tuple[float, float]) -> None:
        self.x, self.y, self.x_range = x, y, x_range

    def __call__(self, response: np.ndarray) -> np.ndarray:
        clipped = np.clip(response, *self.x_range)
        if self.x.size == 1:
            return np.full(response.shape, self.y[0])
        return np.interp(clipped, self.x, self.y)


class SafeCalibrated(_Classifier):
    """CalibratedClassifierCV (sigmoid or isotonic): mean over its calibrated members."""

    kind = "calibrated"

    def __init__(
        self, members: list[tuple[_Classifier, _Sigmoid | _Isotonic]], classes: tuple[Any, ...]
    ) -> None:
        super().__init__(members[0][0].n_features_in, classes)
        self.members = members
        self.contribution_scale = "logit" if self._affine_logit() is not None else None

    def _proba(self, X: np.ndarray) -> np.ndarray:
        total = np.zeros((X.shape[0], 2))
        for base, calibrator in self.members:
            p1 = calibrator(base._response(X))
            total += np.column_stack([1.0 - p1, p1])  # sklearn: proba[:, 0] = 1 - proba[:, 1]
        return total / len(self.members)

    def _single_sigmoid(self) -> tuple[_Classifier, _Sigmoid] | None:
        if len(self.members) == 1 and isinstance(self.members[0][1], _Sigmoid):
            return self.members[0]  # type: ignore[return-value]
        return None

    def _logit(self, X: np.ndarray) -> np.ndarray:
        single = self._single_sigmoid()
        if single is None:
            return super()._logit(X)
        base, sig = single
        return -(sig.a * base._response(X) + sig.b)

    def _affine_logit(self) -> tuple[np.ndarray, float] | None:
        single = self._single_sigmoid()
        affine = single[0]._affine_response() if single is not None else None
        if single is None or affine is None:
            return None
        sig = single[1]
        return -sig.a * affine[0], -(sig.a * affine[1] + sig.b)

    def _reference(self) -> np.ndarray:
        return self.members[0][0]._reference()


class SafePipeline(_Classifier):
    """A Pipeline of scaling / PCA steps ending in a classifier."""

    kind = "pipeline"

    def __init__(self, chain: SafeTransformChain, final: _Classifier) -> None:
        super().__init__(chain.n_features_in, final.classes)
        self.chain, self.final = chain, final
        self.response = final.response
        if self._affine_logit() is not None:
            self.contribution_scale = "logit"
        elif chain.feature_wise:
            self.contribution_scale = final.contribution_scale
        else:
            self.contribution_scale = None

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return self.final._proba(self.chain._transform(X))

    def _logit(self, X: np.ndarray) -> np.ndarray:
        return self.final._logit(self.chain._transform(X))

    def _response(self, X: np.ndarray) -> np.ndarray:
        return self.final._response(self.chain._transform(X))

    def _compose(self, affine: tuple[np.ndarray, float] | None) -> tuple[np.ndarray, float] | None:
        if affine is None:
            return None
        matrix, shift = self.chain._affine()
        return matrix @ affine[0], float(shift @ affine[0]) + affine[1]

    def _affine_logit(self) -> tuple[np.ndarray, float] | None:
        return self._compose(self.final._affine_logit())

    def _affine_response(self) -> tuple[np.ndarray, float] | None:
        return self._compose(self.final._affine_response())

    def _reference(self) -> np.ndarray:
        return self.chain._center()

    def _contrib(self, X: np.ndarray) -> np.ndarray | None:
        if self._affine_logit() is not None:
            return super()._contrib(X)
        if self.chain.feature_wise:  # output column j is input column j rescaled: same attribution
            return self.final._contrib(self.chain._transform(X))
        return None


# --------------------------------------------------------------------------------------------------
# Dumping
# --------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> tuple[bool, Any]:
    """JSON form of a hyper-parameter value, or (False, None) when it has none (objects, callables)."""
    if value is None or isinstance(value, (bool, str)):
        return True, value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return True, int(value)
    if isinstance(value, np.bool_):
        return True, bool(value)
    if isinstance(value, (float, np.floating)):
        return True, float(value) if math.isfinite(value) else str(float(value))
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return (True, [v for _, v in items]) if all(ok for ok, _ in items) else (False, None)
    if isinstance(value, dict):
        items = {str(k): _jsonable(v) for k, v in value.items()}
        ok = all(ok for ok, _ in items.values())
        return (True, {k: v for k, (_, v) in items.items()}) if ok else (False, None)
    return False, None


def _hyperparameters(est: Any) -> dict[str, Any]:
    try:
        params = est.get_params(deep=False)
    except (AttributeError, TypeError):
        return {}
    out = {}
    for key, value in sorted(params.items()):
        ok, converted = _jsonable(value)
        if ok:
            out[key] = converted
    return out


def _class_path(est: Any) -> str:
    return f"{type(est).__module__}.{type(est).__qualname__}"


def _binary_classes(est: Any) -> list[Any]:
    classes = getattr(est, "classes_", None)
    if classes is None:
        raise ConfigError(f"{type(est).__name__} is not fitted; fit it before saving it in a bundle.")
    classes = np.asarray(classes).tolist()
    if len(classes) != 2:
        raise ConfigError(
            f"{type(est).__name__} was fitted on {len(classes)} classes; bundles hold binary models only."
        )
    for c in classes:
        if not isinstance(c, (bool, int, float, str)):
            raise ConfigError(f"{type(est).__name__} has class labels of type {type(c).__name__}; use 0/1.")
    return classes


def _f64(a: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


class _Dump:
    """Collects arrays (with component prefixes) and library versions while dumping."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.libraries: set[str] = {"numpy"}

    def component(self, est: Any, prefix: str, *, need_proba: bool = True) -> dict[str, Any]:
        module = type(est).__module__.split(".")[0]
        self.libraries.add(module)
        dumper = _dumpers(module).get(type(est))
        if dumper is None:
            raise ConfigError(
                f"Cannot save a {_class_path(est)} in a model bundle: only StandardScaler, PCA, "
                "Pipeline, LogisticRegression, SVC, RandomForest/ExtraTrees/DecisionTree classifiers, "
                "KNeighborsClassifier, CalibratedClassifierCV, XGBClassifier and LGBMClassifier can be "
                "stored without pickle."
            )
        if not hasattr(est, "n_features_in_"):
            raise ConfigError(f"{type(est).__name__} is not fitted; fit it before saving it in a bundle.")
        spec: dict[str, Any] = {
            "kind": "",
            "estimator": _class_path(est),
            "n_features_in": int(est.n_features_in_),
            "hyperparameters": _hyperparameters(est),
            "params": {},
        }
        dumper(self, est, prefix, spec, need_proba)
        return spec

    def put(self, prefix: str, name: str, array: np.ndarray) -> None:
        self.arrays[prefix + name] = array


def _dump_scaler(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "standard_scaler"
    spec["params"] = {"with_mean": est.mean_ is not None, "with_std": est.scale_ is not None}
    if est.mean_ is not None:
        d.put(prefix, "mean", _f64(est.mean_))
    if est.scale_ is not None:
        d.put(prefix, "scale", _f64(est.scale_))


def _dump_pca(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "pca"
    spec["params"] = {"n_components": int(est.components_.shape[0]), "whiten": bool(est.whiten)}
    d.put(prefix, "mean", _f64(est.mean_))
    d.put(prefix, "components", _f64(est.components_))
    d.put(prefix, "explained_variance", _f64(est.explained_variance_))


def _dump_pipeline(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], need_proba: bool) -> None:
    steps = [(name, step) for name, step in est.steps if step is not None and step != "passthrough"]
    spec["kind"] = "pipeline"
    spec["step_names"] = [name for name, _ in steps]
    spec["steps"] = []
    for i, (name, step) in enumerate(steps):
        is_last = i == len(steps) - 1
        if not is_last and not hasattr(step, "transform"):
            raise ConfigError(f"Pipeline step '{name}' ({type(step).__name__}) must be a transformer.")
        sub = d.component(step, f"{prefix}steps{i}.", need_proba=need_proba)
        if not is_last and sub["kind"] not in _TRANSFORMER_KINDS:
            raise ConfigError(
                f"Pipeline step '{name}' ({type(step).__name__}) must be StandardScaler or PCA."
            )
        spec["steps"].append(sub)
    if spec["steps"] and spec["steps"][-1]["kind"] not in _TRANSFORMER_KINDS:
        spec["classes"] = spec["steps"][-1]["classes"]


def _dump_logistic(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "logistic_regression"
    spec["classes"] = _binary_classes(est)
    d.put(prefix, "coef", _f64(est.coef_).reshape(-1))
    d.put(prefix, "intercept", _f64(est.intercept_).reshape(1))


def _dump_svc(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], need_proba: bool) -> None:
    spec["kind"] = "svc"
    spec["classes"] = _binary_classes(est)
    if est.kernel not in ("linear", "rbf"):
        raise ConfigError(f"SVC with kernel '{est.kernel}' cannot be stored; use kernel 'linear' or 'rbf'.")
    if getattr(est, "_sparse", False):
        raise ConfigError("SVC fitted on a sparse matrix cannot be stored; fit it on a dense array.")
    # the private names avoid sklearn 1.9's deprecation warning on probA_ / probB_
    prob_a = np.asarray(getattr(est, "_probA", np.empty(0)), dtype=np.float64).reshape(-1)
    prob_b = np.asarray(getattr(est, "_probB", np.empty(0)), dtype=np.float64).reshape(-1)
    has_proba = prob_a.size == 1 and prob_b.size == 1
    if need_proba and not has_proba:
        raise ConfigError(
            "SVC was fitted without probability=True and cannot give probabilities; fit it with "
            "probability=True or wrap it in CalibratedClassifierCV."
        )
    sv = _f64(est.support_vectors_)
    spec["params"] = {
        "kernel": est.kernel,
        "gamma": float(est._gamma),
        "n_support_vectors": int(sv.shape[0]),
        "probability": has_proba,
    }
    d.put(prefix, "support_vectors", sv)
    d.put(prefix, "dual_coef", _f64(est.dual_coef_).reshape(-1))
    d.put(prefix, "intercept", _f64(est.intercept_).reshape(1))
    if has_proba:
        d.put(prefix, "prob_a", prob_a)
        d.put(prefix, "prob_b", prob_b)


_FOREST_KINDS = {
    "RandomForestClassifier": "random_forest",
    "ExtraTreesClassifier": "extra_trees",
    "DecisionTreeClassifier": "decision_tree",
}


def _dump_forest(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = _FOREST_KINDS[type(est).__name__]
    spec["classes"] = _binary_classes(est)
    trees = [est] if spec["kind"] == "decision_tree" else list(est.estimators_)
    if getattr(est, "n_outputs_", 1) != 1:
        raise ConfigError(f"{type(est).__name__} with several outputs cannot be stored; fit one label.")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("left", "right", "feature", "threshold", "value")}
    for tree in trees:
        t = tree.tree_
        parts["left"].append(np.asarray(t.children_left, dtype=np.int64))
        parts["right"].append(np.asarray(t.children_right, dtype=np.int64))
        parts["feature"].append(np.asarray(t.feature, dtype=np.int64))
        parts["threshold"].append(np.asarray(t.threshold, dtype=np.float64))
        value = np.asarray(t.value[:, 0, :], dtype=np.float64)
        parts["value"].append(value / value.sum(axis=1, keepdims=True))
    spec["params"] = {"n_trees": len(trees)}
    d.put(prefix, "tree_node_counts", np.array([len(p) for p in parts["left"]], dtype=np.int64))
    d.put(prefix, "children_left", np.concatenate(parts["left"]))
    d.put(prefix, "children_right", np.concatenate(parts["right"]))
    d.put(prefix, "feature", np.concatenate(parts["feature"]))
    d.put(prefix, "threshold", np.concatenate(parts["threshold"]))
    d.put(prefix, "value", np.concatenate(parts["value"]))


def _dump_knn(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "k_neighbors"
    spec["classes"] = _binary_classes(est)
    if est.weights not in ("uniform", "distance"):
        raise ConfigError("KNeighborsClassifier with a custom weights function cannot be stored.")
    metric = est.effective_metric_
    if metric not in ("euclidean", "manhattan") or est.effective_metric_params_.get("w") is not None:
        raise ConfigError(
            f"KNeighborsClassifier with metric '{est.metric}' (p={est.p}) cannot be stored; use "
            "metric='minkowski' with p=1 or p=2."
        )
    if getattr(est, "outputs_2d_", False) or not isinstance(est._fit_X, np.ndarray):
        raise ConfigError("KNeighborsClassifier must be fitted on a dense array with one label column.")
    spec["params"] = {
        "n_neighbors": int(est.n_neighbors),
        "weights": est.weights,
        "metric": metric,
        "n_samples_fit": int(est.n_samples_fit_),
        "fit_method": est._fit_method,
    }
    d.put(prefix, "fit_X", _f64(est._fit_X))
    d.put(prefix, "fit_y", np.asarray(est._y, dtype=np.int64).reshape(-1))


def _dump_calibrated(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "calibrated"
    spec["classes"] = _binary_classes(est)
    if est.method not in ("sigmoid", "isotonic"):
        raise ConfigError(
            f"CalibratedClassifierCV with method '{est.method}' cannot be stored; "
            "use 'sigmoid' or 'isotonic'."
        )
    spec["params"] = {"method": est.method, "n_members": len(est.calibrated_classifiers_)}
    spec["members"] = []
    for i, member in enumerate(est.calibrated_classifiers_):
        base = member.estimator
        response = "decision_function" if hasattr(base, "decision_function") else "predict_proba"
        base_spec = d.component(base, f"{prefix}member{i}.base.", need_proba=response == "predict_proba")
        spec["members"].append({"response": response, "base": base_spec})
        calibrator = member.calibrators[0]
        if est.method == "sigmoid":
            d.put(prefix, f"member{i}.sigmoid_ab", np.array([calibrator.a_, calibrator.b_], dtype=np.float64))
        else:
            d.put(prefix, f"member{i}.isotonic_x", _f64(calibrator.X_thresholds_))
            d.put(prefix, f"member{i}.isotonic_y", _f64(calibrator.y_thresholds_))
            d.put(prefix, f"member{i}.isotonic_range", np.array([calibrator.X_min_, calibrator.X_max_]))


def _dump_xgboost(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "xgboost"
    spec["classes"] = _binary_classes(est)
    booster = est.get_booster()
    if "c" in (booster.feature_types or []):
        raise ConfigError("XGBClassifier with categorical features cannot be stored; encode them as numbers.")
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective != "binary:logistic":
        raise ConfigError(
            f"XGBClassifier with objective '{objective}' cannot be stored; use 'binary:logistic'."
        )
    try:  # the sklearn wrapper predicts with the best iteration when early stopping was used
        iteration_range = [0, int(est.best_iteration) + 1]
    except AttributeError:
        iteration_range = [0, 0]
    missing = float(est.missing) if est.missing is not None else math.nan
    spec["params"] = {"iteration_range": iteration_range, "missing": None if math.isnan(missing) else missing}
    d.put(prefix, "model", np.frombuffer(bytes(booster.save_raw("json")), dtype=np.uint8).copy())


def _dump_lightgbm(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "lightgbm"
    spec["classes"] = _binary_classes(est)
    if est.objective_ != "binary":
        raise ConfigError(f"LGBMClassifier with objective '{est.objective_}' cannot be stored; use 'binary'.")
    if est.booster_.pandas_categorical is not None:
        raise ConfigError("LGBMClassifier fitted with pandas categorical columns cannot be stored.")
    # num_iteration=None keeps the best iteration, as the sklearn wrapper predicts with it
    text = est.booster_.model_to_string(num_iteration=None)
    d.put(prefix, "model", np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy())


def _dumpers(module: str) -> dict[type, Any]:
    """Dump functions by exact class (subclasses may change behaviour, so they are refused)."""
    if module == "sklearn":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.decomposition import PCA
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC
        from sklearn.tree import DecisionTreeClassifier

        return {
            StandardScaler: _dump_scaler,
            PCA: _dump_pca,
            Pipeline: _dump_pipeline,
            LogisticRegression: _dump_logistic,
            LogisticRegressionCV: _dump_logistic,
            SVC: _dump_svc,
            RandomForestClassifier: _dump_forest,
            ExtraTreesClassifier: _dump_forest,
            DecisionTreeClassifier: _dump_forest,
            KNeighborsClassifier: _dump_knn,
            CalibratedClassifierCV: _dump_calibrated,
        }
    if module == "xgboost":
        from xgboost import XGBClassifier

        return {XGBClassifier: _dump_xgboost}
    if module == "lightgbm":
        from lightgbm import LGBMClassifier

        return {LGBMClassifier: _dump_lightgbm}
    return {}


def _feature_names(est: Any) -> list[str] | None:
    try:
        names = est.feature_names_in_
    except AttributeError:  # LightGBM raises when fitted without names
        return None
    return None if names is None else [str(n) for n in names]


def dump_model(estimator: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Describe a fitted estimator as JSON plus plain numeric arrays (no pickle).

    Args:
        estimator: a fitted, supported estimator (see the module doc); binary classifiers only.

    Returns:
        ``(spec, arrays)``: a JSON-serialisable dict with ``format``, ``kind``, ``n_features_in``,
        ``feature_names``, ``classes`` (classifiers), ``hyperparameters`` and structure, and a dict
        of named float64 / int64 / uint8 arrays.

    Raises:
        ConfigError: the estimator (or a step inside it) is unsupported, unfitted or not binary.
    """
    dump = _Dump()
    spec = dump.component(estimator, "")
    versions = {}
    for lib in sorted(dump.libraries):
        module = sys.modules.get(lib)
        name = {"sklearn": "scikit-learn"}.get(lib, lib)
        versions[name] = str(getattr(module, "__version__", "unknown"))
    root = {"format": FORMAT, "format_version": FORMAT_VERSION, **spec}
    root["feature_names"] = _feature_names(estimator)
    root["library_versions"] = versions
    return root, dump.arrays


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

_TRANSFORMER_KINDS = ("standard_scaler", "pca")


class _Reader:
    """Typed access to spec values and arrays; every problem becomes a BundleError."""

    def __init__(self, arrays: Mapping[str, Any]) -> None:
        if not isinstance(arrays, Mapping):
            raise BundleError("The model arrays must be a mapping of names to numpy arrays.")
        self.arrays = arrays
        self.used: set[str] = set()

    def array(self, name: str, kind: str, shape: tuple[int | None, ...]) -> np.ndarray:
        if name not in self.arrays:
            raise BundleError(
                f"The model file lacks the array '{name}'; the bundle is incomplete or damaged."
            )
        value = self.arrays[name]
        if not isinstance(value, np.ndarray):
            raise BundleError(f"Model array '{name}' is a {type(value).__name__}, not a numpy array.")
        if value.dtype.kind not in "fiu":
            raise BundleError(
                f"Model array '{name}' has dtype {value.dtype}; model arrays must hold plain numbers "
                "(object arrays are refused because loading them could run code)."
            )
        expected_kinds = {"float": "f", "int": "iu", "uint8": "u"}[kind]
        if value.dtype.kind not in expected_kinds or (kind == "uint8" and value.dtype != np.uint8):
            raise BundleError(f"Model array '{name}' has dtype {value.dtype}, expected {kind}.")
        if value.ndim != len(shape) or any(
            e is not None and e != s for e, s in zip_strict(shape, value.shape)
        ):
            want = tuple("any" if e is None else e for e in shape)
            raise BundleError(f"Model array '{name}' has shape {value.shape}, expected {want}.")
        self.used.add(name)
        if kind == "float":
            out = np.array(value, dtype=np.float64)
            if not np.isfinite(out).all():
                raise BundleError(f"Model array '{name}' contains NaN or infinite values.")
            return out
        if kind == "int":
            return np.array(value, dtype=np.int64)
        return np.array(value)


def _get(spec: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    value = spec.get(key) if isinstance(spec, Mapping) else None
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise BundleError(f"The model spec of {where} has a missing or invalid '{key}' ({value!r}).")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _positive_int(spec: Mapping[str, Any], key: str, where: str) -> int:
    value = _get(spec, key, int, where)
    if value < 1:
        raise BundleError(f"The model spec of {where} has '{key}' = {value}; it must be at least 1.")
    return value


def _classes(spec: Mapping[str, Any], where: str) -> tuple[Any, ...]:
    classes = spec.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) != 2
        or not all(isinstance(c, (bool, int, float, str)) for c in classes)
        or classes[0] == classes[1]
    ):
        raise BundleError(f"The model spec of {where} must list two distinct class labels, got {classes!r}.")
    return tuple(classes)


class _Site(NamedTuple):
    """Where a component is loaded: its spec, params, the array reader, array prefix, width, name."""

    spec: Mapping[str, Any]
    params: Mapping[str, Any]
    reader: _Reader
    prefix: str
    n_features_in: int
    where: str


def _load_component(spec: Any, reader: _Reader, prefix: str, n_features: int | None) -> Any:
    if not isinstance(spec, Mapping):
        raise BundleError(f"A model spec must be a JSON object, got {type(spec).__name__}.")
    kind = spec.get("kind")
    loader = _LOADERS.get(kind) if isinstance(kind, str) else None
    if loader is None:
        raise BundleError(
            f"Unknown model kind {kind!r} in the bundle; this DLRPredictor reads {sorted(_LOADERS)}. "
            "The bundle may come from a newer version: update DLRPredictor."
        )
    where = f"'{prefix or 'model'}' ({kind})"
    n_in = _positive_int(spec, "n_features_in", where)
    if n_features is not None and n_in != n_features:
        raise BundleError(
            f"The model spec of {where} expects {n_in} inputs but its input step gives {n_features}."
        )
    params = spec.get("params", {})
    if not isinstance(params, Mapping):
        raise BundleError(f"The model spec of {where} has invalid 'params'.")
    obj = loader(_Site(spec, params, reader, prefix, n_in, where))
    if obj.n_features_in != n_in:
        raise BundleError(f"The model of {where} has {obj.n_features_in} inputs, its spec says {n_in}.")
    return obj


def _load_scaler(site: _Site) -> Any:
    _spec, params, r, prefix, n, where = site
    mean = r.array(prefix + "mean", "float", (n,)) if _get(params, "with_mean", bool, where) else None
    scale = r.array(prefix + "scale", "float", (n,)) if _get(params, "with_std", bool, where) else None
    if scale is not None and (scale <= 0).any():
        raise BundleError(f"The scaler of {where} has non-positive scales.")
    return SafeStandardScaler(mean, scale, n)


def _load_pca(site: _Site) -> Any:
    _spec, params, r, prefix, n, where = site
    c = _positive_int(params, "n_components", where)
    variance = r.array(prefix + "explained_variance", "float", (c,))
    if (variance < 0).any():
        raise BundleError(f"The PCA of {where} has negative variances.")
    return SafePCA(
        r.array(prefix + "mean", "float", (n,)),
        r.array(prefix + "components", "float", (c, n)),
        variance,
        _get(params, "whiten", bool, where),
    )


def _load_pipeline(site: _Site) -> Any:
    spec, _params, r, prefix, n, where = site
    steps = _get(spec, "steps", list, where)
    if not steps:
        raise BundleError(f"The pipeline {where} has no steps.")
    loaded, width = [], n
    for i, step in enumerate(steps):
        obj = _load_component(step, r, f"{prefix}steps{i}.", width)
        is_last = i == len(steps) - 1
        if not isinstance(obj, _Transformer) and not is_last:
            raise BundleError(f"Step {i} of the pipeline {where} must be a scaler or PCA.")
        loaded.append(obj)
        width = obj.n_features_out if isinstance(obj, _Transformer) else width
    if isinstance(loaded[-1], _Transformer):
        return SafeTransformChain(loaded, n)
    return SafePipeline(SafeTransformChain(loaded[:-1], n), loaded[-1])


def _load_logistic(site: _Site) -> Any:
    spec, _params, r, prefix, n, where = site
    coef = r.array(prefix + "coef", "float", (n,))
    intercept = r.array(prefix + "intercept", "float", (1,))
    return SafeLogisticRegression(coef, float(intercept[0]), _classes(spec, where))


def _load_svc(site: _Site) -> Any:
    spec, params, r, prefix, n, where = site
    kernel = _get(params, "kernel", str, where)
    if kernel not in ("linear", "rbf"):
        raise BundleError(f"The SVC of {where} has unsupported kernel {kernel!r}.")
    gamma = float(_get(params, "gamma", (int, float), where))
    if not math.isfinite(gamma) or gamma <= 0:
        raise BundleError(f"The SVC of {where} has invalid gamma {gamma!r}.")
    n_sv = _positive_int(params, "n_support_vectors", where)
    platt = None
    if _get(params, "probability", bool, where):
        platt = (
            float(r.array(prefix + "prob_a", "float", (1,))[0]),
            float(r.array(prefix + "prob_b", "float", (1,))[0]),
        )
    return SafeSVC(
        kernel=kernel,
        gamma=gamma,
        support_vectors=r.array(prefix + "support_vectors", "float", (n_sv, n)),
        dual_coef=r.array(prefix + "dual_coef", "float", (n_sv,)),
        intercept=float(r.array(prefix + "intercept", "float", (1,))[0]),
        platt=platt,
        classes=_classes(spec, where),
    )


def _load_forest(site: _Site) -> Any:
    spec, params, r, prefix, n, where = site
    n_trees = _positive_int(params, "n_trees", where)
    counts = r.array(prefix + "tree_node_counts", "int", (n_trees,))
    if (counts < 1).any():
        raise BundleError(f"The trees of {where} have empty node lists.")
    total = int(counts.sum())
    left = r.array(prefix + "children_left", "int", (total,))
    right = r.array(prefix + "children_right", "int", (total,))
    feature = r.array(prefix + "feature", "int", (total,))
    threshold = r.array(prefix + "threshold", "float", (total,))
    value = r.array(prefix + "value", "float", (total, 2))
    local = np.arange(total) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    size = np.repeat(counts, counts)
    leaf = left == -1
    internal = ~leaf
    # children must come after their parent: this rules out cycles, so traversal always ends
    ok = (
        (right[leaf] == -1).all()
        and ((left[internal] > local[internal]) & (left[internal] < size[internal])).all()
        and ((right[internal] > local[internal]) & (right[internal] < size[internal])).all()
        and ((feature[internal] >= 0) & (feature[internal] < n)).all()
    )
    if not ok:
        raise BundleError(
            f"The tree structure of {where} is invalid (children or feature indices out of range)."
        )
    if (value < 0).any() or (value.sum(axis=1) <= 0).any():
        raise BundleError(f"The tree node values of {where} must be non-negative class weights.")
    return SafeForest(
        kind=spec["kind"],
        node_counts=counts,
        children_left=left,
        children_right=right,
        feature=feature,
        threshold=threshold,
        value=value,
        n_features_in=n,
        classes=_classes(spec, where),
    )


def _load_knn(site: _Site) -> Any:
    spec, params, r, prefix, n, where = site
    k = _positive_int(params, "n_neighbors", where)
    n_fit = _positive_int(params, "n_samples_fit", where)
    weights = _get(params, "weights", str, where)
    metric = _get(params, "metric", str, where)
    if weights not in ("uniform", "distance") or metric not in ("euclidean", "manhattan"):
        raise BundleError(f"The KNN of {where} has unsupported weights {weights!r} or metric {metric!r}.")
    if k > n_fit:
        raise BundleError(f"The KNN of {where} asks for {k} neighbours but stores {n_fit} training rows.")
    fit_y = r.array(prefix + "fit_y", "int", (n_fit,))
    if not np.isin(fit_y, (0, 1)).all():
        raise BundleError(f"The KNN of {where} has training labels other than 0 and 1.")
    fit_X = r.array(prefix + "fit_X", "float", (n_fit, n))
    return SafeKNN(
        fit_X=fit_X,
        fit_y=fit_y.astype(np.intp),
        n_neighbors=k,
        weights=weights,
        metric=metric,
        classes=_classes(spec, where),
    )


def _load_calibrated(site: _Site) -> Any:
    spec, params, r, prefix, n, where = site
    method = _get(params, "method", str, where)
    if method not in ("sigmoid", "isotonic"):
        raise BundleError(f"The calibration of {where} has unsupported method {method!r}.")
    members_spec = _get(spec, "members", list, where)
    if not members_spec:
        raise BundleError(f"The calibrated model {where} has no members.")
    members: list[tuple[_Classifier, _Sigmoid | _Isotonic]] = []
    for i, member in enumerate(members_spec):
        response = _get(member, "response", str, where)
        base = _load_component(member.get("base"), r, f"{prefix}member{i}.base.", n)
        if not isinstance(base, _Classifier) or response != base.response:
            raise BundleError(f"Member {i} of {where} does not provide the response '{response}'.")
        calibrator: _Sigmoid | _Isotonic
        if method == "sigmoid":
            a, b = r.array(f"{prefix}member{i}.sigmoid_ab", "float", (2,))
            calibrator = _Sigmoid(float(a), float(b))
        else:
            x = r.array(f"{prefix}member{i}.isotonic_x", "float", (None,))
            y = r.array(f"{prefix}member{i}.isotonic_y", "float", (x.size,))
            lo, hi = r.array(f"{prefix}member{i}.isotonic_range", "float", (2,))
            if x.size == 0 or (np.diff(x) < 0).any():
                raise BundleError(f"The isotonic calibrator {i} of {where} has unsorted or no thresholds.")
            calibrator = _Isotonic(x, y, (float(lo), float(hi)))
        members.append((base, calibrator))
    return SafeCalibrated(members, _classes(spec, where))


def _blob(r: _Reader, prefix: str) -> bytes:
    return r.array(prefix + "model", "uint8", (None,)).tobytes()


def _load_xgboost(site: _Site) -> Any:
    spec, params, r, prefix, _n, where = site
    import xgboost

    rng = _get(params, "iteration_range", list, where)
    missing = params.get("missing")
    if len(rng) != 2 or not all(isinstance(v, int) and v >= 0 for v in rng):
        raise BundleError(f"The XGBoost model {where} has an invalid iteration_range {rng!r}.")
    if missing is not None and not isinstance(missing, (int, float)):
        raise BundleError(f"The XGBoost model {where} has an invalid 'missing' value {missing!r}.")
    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(_blob(r, prefix)))
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    except (xgboost.core.XGBoostError, ValueError, KeyError) as exc:
        raise BundleError(f"The XGBoost model {where} cannot be read: {exc}") from exc
    if objective != "binary:logistic":
        raise BundleError(f"The XGBoost model {where} has objective {objective!r}, not binary:logistic.")
    missing_value = math.nan if missing is None else float(missing)
    return SafeXGBoost(booster, (rng[0], rng[1]), missing_value, _classes(spec, where))


def lightgbm_objective(model_text: str) -> str:
    """The objective name of a LightGBM model string (``objective=binary sigmoid:1`` -> ``binary``)."""
    for line in model_text.splitlines():
        if line.startswith("objective="):
            return line[len("objective=") :].split(" ", 1)[0].strip()
        if line.startswith("Tree="):
            break  # the header is over
    return ""


def _load_lightgbm(site: _Site) -> Any:
    spec, _params, r, prefix, _n, where = site
    import lightgbm

    try:
        text = _blob(r, prefix).decode("utf-8")
        booster = lightgbm.Booster(model_str=text)
    except (lightgbm.basic.LightGBMError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"The LightGBM model {where} cannot be read: {exc}") from exc
    # Read from the model text itself: Booster.params has no "objective" before LightGBM 4.7
    # (the newest release for Python 3.9, i.e. Slicer 5.4-5.8, is 4.6).
    objective = lightgbm_objective(text)
    if objective != "binary":
        raise BundleError(f"The LightGBM model {where} has objective {objective!r}, not binary.")
    return SafeLightGBM(booster, _classes(spec, where))


_LOADERS = {
    "standard_scaler": _load_scaler,
    "pca": _load_pca,
    "pipeline": _load_pipeline,
    "logistic_regression": _load_logistic,
    "svc": _load_svc,
    "random_forest": _load_forest,
    "extra_trees": _load_forest,
    "decision_tree": _load_forest,
    "k_neighbors": _load_knn,
    "calibrated": _load_calibrated,
    "xgboost": _load_xgboost,
    "lightgbm": _load_lightgbm,
}


def load_model(spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> SafeModel | SafeTransformer:
    """Rebuild a model written by :func:`dump_model`, executing no stored code.

    Args:
        spec: the JSON spec.
        arrays: the named numeric arrays (numpy; object arrays are refused).

    Returns:
        A :class:`SafeModel` for classifiers, a :class:`SafeTransformer` for scaling / PCA chains.

    Raises:
        BundleError: unknown format or kind, missing, extra, mis-shaped or non-numeric arrays,
            or an inconsistent structure.
    """
    if not isinstance(spec, Mapping) or spec.get("format") != FORMAT:
        raise BundleError(f"This is not a DLRPredictor model spec (its 'format' is not '{FORMAT}').")
    version = spec.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise BundleError(
            f"The model spec has format_version {version!r}; this DLRPredictor reads up to "
            f"{FORMAT_VERSION}. Update DLRPredictor to open this bundle."
        )
    reader = _Reader(arrays)
    model = _load_component(spec, reader, "", None)
    final = model.final if isinstance(model, SafePipeline) else model
    if isinstance(final, SafeSVC) and final.platt is None:
        raise BundleError("The SVC in the bundle has no Platt parameters, so it cannot give probabilities.")
    extra = sorted(set(arrays) - reader.used)
    if extra:
        raise BundleError(f"The model file holds unexpected arrays {extra[:5]}; it does not match its spec.")
    names = spec.get("feature_names")
    if names is not None:
        if (
            not isinstance(names, list)
            or len(names) != model.n_features_in
            or not all(isinstance(x, str) for x in names)
            or len(set(names)) != len(names)
        ):
            raise BundleError(
                f"The model spec's feature_names must be {model.n_features_in} distinct strings."
            )
        model.feature_names = tuple(names)
    return model


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def _paths(path_prefix: str | Path) -> tuple[Path, Path]:
    prefix = str(path_prefix)
    return Path(prefix + ".json"), Path(prefix + ".npz")


def save_model(path_prefix: str | Path, estimator: Any) -> tuple[Path, Path]:
    """Write ``<prefix>.json`` and ``<prefix>.npz`` (plain numeric arrays, no pickle).

    Args:
        path_prefix: path without extension; its folder must exist.
        estimator: a fitted, supported estimator.

    Returns:
        The JSON and npz paths written.

    Raises:
        ConfigError: the estimator cannot be stored (see :func:`dump_model`).
    """
    spec, arrays = dump_model(estimator)
    json_path, npz_path = _paths(path_prefix)
    json_path.write_text(json.dumps(spec, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    with open(npz_path, "wb") as f:
        np.savez(f, **arrays)
    return json_path, npz_path


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read every array of an .npz with ``allow_pickle=False``.

    Args:
        path: the .npz file.

    Returns:
        The arrays by name.

    Raises:
        BundleError: missing or damaged file, or an array of Python objects (refused unread).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise BundleError(f"{path} is not an .npz archive of model arrays.")
            return {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise BundleError(
                f"{path} contains pickled Python objects; DLRPredictor refuses to load them because "
                "that could run code. Use a bundle written by DLRPredictor."
            ) from exc
        raise BundleError(f"{path} is damaged: {exc}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(f"Cannot read the model arrays {path}: {exc}") from exc
    except TypeError as exc:  # a plain .npy file returns an ndarray, which has no context manager
        raise BundleError(f"{path} is not an .npz archive of model arrays.") from exc


def load_model_files(path_prefix: str | Path) -> SafeModel | SafeTransformer:
    """Load a model written by :func:`save_model`.

    Args:
        path_prefix: the same prefix given to :func:`save_model`.

    Returns:
        The loaded :class:`SafeModel` or :class:`SafeTransformer`.

    Raises:
        BundleError: missing, damaged, pickled or inconsistent files.
    """
    json_path, npz_path = _paths(path_prefix)
    try:
        spec = json.loads(json_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BundleError(f"Cannot read the model spec {json_path}: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"The model spec {json_path} is not valid JSON: {exc}") from exc
    return load_model(spec, read_npz(npz_path))
