"""The K-class radiomics signature: one-vs-rest feature selection, one multinomial logistic model.

- Selection is one-vs-rest: the binary :class:`~.selection.FeatureSelector` (univariate test,
  correlation pruning, L1-logistic LASSO: all two-group methods) is fitted once per class on
  "class k against every other class", and the signature reads the union of the K selections
  (in candidate-column order). A feature that separates one class only is found by that class's
  screen; a pooled K-group criterion would dilute it among the classes it does not separate.
- The classifier is multinomial (softmax) logistic regression on the z-scored union: one model
  whose K probabilities sum to 1 by construction. K one-vs-rest models would give K probabilities
  that have to be renormalised to sum to 1, which changes each of them and spoils the calibration
  each was fitted for. Its L2 strength C is chosen by patient-grouped, stratified cross-validation
  on the multinomial log loss (the proper score of the K probabilities the bundle reports).
- The decision rule is frozen separately (:func:`decide`): argmax of the probabilities, or argmax
  of ``p_k - c_k`` with per-class cutoffs chosen on out-of-fold scores (``training``).

A fitted signature is plain numbers (``to_spec``); applying it needs numpy alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base.errors import ConfigError, InputError
from ..base.numeric import softmax
from .selection import FeatureSelector, SelectionConfig, stratified_folds

#: The L2 strengths searched for the multinomial model (inverse regularisation, on z-scores).
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
SPEC_KIND = "MulticlassSignature"


@dataclass
class MulticlassSignature:
    """A fitted K-class signature.

    Attributes:
        classes: the class names, in the declared order (the columns of ``predict_proba``).
        columns: the features the model reads (union of the per-class selections).
        mean, std: z-scoring of ``columns`` (training rows).
        coef: (K, p) multinomial coefficients on the z-scores; intercept: (K,).
        per_class: the features each one-vs-rest selection kept.
        c: the chosen L2 strength; cv_log_loss: its cross-validated multinomial log loss.
    """

    classes: list[str]
    columns: list[str]
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    per_class: dict[str, list[str]] = field(default_factory=dict)
    c: float = 1.0
    cv_log_loss: float | None = None

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, K) class probabilities of the rows of ``X`` (columns in the order of ``columns``).

        Raises:
            InputError: wrong width or non-finite values.
        """
        M = np.asarray(X, dtype=float)
        if M.ndim != 2 or M.shape[1] != len(self.columns):
            raise InputError(
                f"the K-class signature reads {len(self.columns)} features; got an array of shape {M.shape}"
            )
        if not np.isfinite(M).all():
            raise InputError("the K-class signature got a missing or infinite feature value")
        return softmax(self.class_scores(M), axis=1)

    def class_scores(self, M: np.ndarray) -> np.ndarray:
        """(n, K) softmax inputs ``z @ coef.T + intercept`` (z: the z-scored features)."""
        return ((M - self.mean) / self.std) @ self.coef.T + self.intercept

    def contributions(self, x: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Each feature's term ``coef[k, j] * z_j`` of class k's softmax input, then the intercept."""
        z = (np.asarray(x, dtype=float) - self.mean) / self.std
        terms = [(name, float(w * v)) for name, w, v in zip(self.columns, self.coef[k], z)]
        return [*terms, ("(intercept)", float(self.intercept[k]))]

    def to_spec(self) -> dict[str, Any]:
        """JSON-able dict of the fitted signature."""
        return {
            "kind": SPEC_KIND,
            "classes": list(self.classes),
            "columns": list(self.columns),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "per_class": {k: list(v) for k, v in self.per_class.items()},
            "c": float(self.c),
            "cv_log_loss": self.cv_log_loss,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> MulticlassSignature:
        """Rebuild from :meth:`to_spec` output.

        Raises:
            ConfigError: not a K-class signature spec, or inconsistent shapes or values.
        """
        if spec.get("kind") != SPEC_KIND:
            raise ConfigError(f"not a K-class signature spec (kind={spec.get('kind')!r})")
        classes = [str(c) for c in spec["classes"]]
        columns = [str(c) for c in spec["columns"]]
        sig = cls(
            classes=classes,
            columns=columns,
            mean=np.asarray(spec["mean"], dtype=float),
            std=np.asarray(spec["std"], dtype=float),
            coef=np.asarray(spec["coef"], dtype=float),
            intercept=np.asarray(spec["intercept"], dtype=float),
            per_class={str(k): [str(n) for n in v] for k, v in dict(spec.get("per_class") or {}).items()},
            c=float(spec["c"]),
            cv_log_loss=spec.get("cv_log_loss"),
        )
        k, p = len(classes), len(columns)
        shapes_ok = (
            k >= 3
            and p >= 1
            and sig.mean.shape == (p,)
            and sig.std.shape == (p,)
            and sig.coef.shape == (k, p)
            and sig.intercept.shape == (k,)
        )
        finite = all(np.isfinite(a).all() for a in (sig.mean, sig.std, sig.coef, sig.intercept))
        if not shapes_ok or not finite or (sig.std <= 0).any():
            raise ConfigError(
                f"K-class signature spec is inconsistent ({k} classes, {p} columns, coef {sig.coef.shape})"
            )
        return sig


def decide(prob: np.ndarray, cutoffs: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """The frozen decision rule: argmax of ``p_k``, or with per-class cutoffs argmax of ``p_k - c_k``.

    Ties go to the class declared first (numpy's argmax), as ``evaluation.multiclass.decide``.
    """
    P = np.atleast_2d(np.asarray(prob, dtype=float))
    if cutoffs is None:
        return np.argmax(P, axis=1)
    return np.argmax(P - np.asarray(cutoffs, dtype=float)[None, :], axis=1)


def fit_multiclass_signature(
    X: np.ndarray,
    y: np.ndarray,
    columns: Sequence[str],
    classes: Sequence[str],
    *,
    selection: SelectionConfig,
    groups: np.ndarray | None = None,
    selection_rows: np.ndarray | None = None,
    cv: int = 5,
    seed: int = 0,
) -> MulticlassSignature:
    """Fit the K-class signature (see the module notes for the method).

    Args:
        X: (n, p) candidate features (rows: training rows, e.g. every contour variant).
        y: (n,) class index 0..K-1 of each row.
        columns: names of the columns of ``X``.
        classes: the class names in order (K >= 3).
        selection: the FeatureSelector settings used for every one-vs-rest selection.
        groups: (n,) patient ids: selection and the C search keep patients whole.
        selection_rows: rows the selection statistics are computed on (one per lesion); the
            multinomial model is fitted on every row.
        cv: folds of the C search.
        seed: seed of the folds.

    Returns:
        The fitted signature.

    Raises:
        InputError: a class without training rows, or too few rows for the folds.
    """
    names = [str(c) for c in columns]
    k = len(classes)
    y = np.asarray(y, dtype=int)
    counts = np.bincount(y, minlength=k)
    if (counts == 0).any():
        empty = [classes[int(i)] for i in np.flatnonzero(counts == 0)]
        raise InputError(
            f"no training case of class(es) {', '.join(empty)}; every declared class needs cases"
        )
    per_class: dict[str, list[str]] = {}
    for j, name in enumerate(classes):
        sel = FeatureSelector(selection).fit(
            X, (y == j).astype(int), feature_names=names, groups=groups, selection_rows=selection_rows
        )
        per_class[str(name)] = list(sel.selected_names)
    union = {n for v in per_class.values() for n in v}
    keep = [i for i, n in enumerate(names) if n in union]
    M = np.asarray(X, dtype=float)[:, keep]
    stat_rows = M if selection_rows is None else M[np.asarray(selection_rows, dtype=bool)]
    mean, std = stat_rows.mean(axis=0), stat_rows.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    Z = (M - mean) / std
    fit = fit_multinomial(Z, y, k, groups=groups, cv=cv, seed=seed)
    return MulticlassSignature(
        classes=[str(c) for c in classes],
        columns=[names[i] for i in keep],
        mean=mean,
        std=std,
        coef=fit.coef,
        intercept=fit.intercept,
        per_class=per_class,
        c=fit.c,
        cv_log_loss=fit.cv_log_loss,
    )


@dataclass
class MultinomialFit:
    """A multinomial logistic model: (K, p) coefficients, (K,) intercepts, its C and CV log loss."""

    coef: np.ndarray
    intercept: np.ndarray
    c: float
    cv_log_loss: float


def fit_multinomial(
    Z: np.ndarray, y: np.ndarray, k: int, *, groups: np.ndarray | None, cv: int, seed: int
) -> MultinomialFit:
    """Multinomial logistic regression of ``y`` (0..k-1) on ``Z``, its L2 strength C chosen from
    :data:`C_GRID` by patient-grouped, stratified CV on the multinomial log loss; refitted on all rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    def model(c: float) -> Any:
        return LogisticRegression(C=c, max_iter=5000)

    folds = stratified_folds(y, groups, cv, seed)
    losses = []
    for c in C_GRID:
        fold_losses = [
            log_loss(y[va], model(c).fit(Z[tr], y[tr]).predict_proba(Z[va]), labels=list(range(k)))
            for tr, va in folds
        ]
        losses.append(float(np.mean(fold_losses)))
    best = int(np.argmin(losses))
    final = model(C_GRID[best]).fit(Z, y)
    return MultinomialFit(
        coef=np.asarray(final.coef_, dtype=float),
        intercept=np.asarray(final.intercept_, dtype=float),
        c=float(C_GRID[best]),
        cv_log_loss=losses[best],
    )


__all__ = [
    "C_GRID",
    "MulticlassSignature",
    "MultinomialFit",
    "decide",
    "fit_multiclass_signature",
    "fit_multinomial",
]
