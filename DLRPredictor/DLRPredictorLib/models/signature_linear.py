"""The DL signature's logit as an affine map of the pooled deep feature vector.

The DL signature is ``f -> z-score -> PCA -> column selection (-> z-score) -> classifier``.
Every step before the classifier is affine, so when the classifier's logit is affine in its inputs
(logistic regression, a linear SVM with Platt scaling, a pipeline of scaling / PCA steps ending in
one of them, a single sigmoid calibration of one) the whole signature is
``logit(f) = f @ w_eff + b_eff`` exactly. ``w_eff`` is the gradient of the score the user sees with
respect to the pooled features: what the signature's Grad-CAM weighs layer4's channels with
(``deep.heatmap.weighted_cam``). Classifiers without an affine logit (RBF SVM, trees, kNN) give
None: there is no exact gradient to explain them with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .signatures import DeepFeatureReducer, Signature


@dataclass(frozen=True)
class PooledAffine:
    """``logit = f @ weights + bias`` for a pooled feature vector ``f`` of length ``len(weights)``."""

    weights: np.ndarray  # (D,) float64
    bias: float

    def logit(self, pooled: np.ndarray) -> np.ndarray:
        """The logit of each row of ``pooled`` (n, D), or of one vector (D,)."""
        return np.asarray(pooled, dtype=np.float64) @ self.weights + self.bias


def estimator_affine(estimator: Any) -> tuple[np.ndarray, float] | None:
    """The classifier's logit as ``(w, c)`` with ``logit = x @ w + c``, or None when not affine.

    Loaded bundle models (``models.persistence``) expose it through ``affine_logit``; a fitted
    scikit-learn logistic regression through ``coef_`` / ``intercept_`` (the in-process pipeline
    right after training).
    """
    affine = getattr(estimator, "affine_logit", None)
    if callable(affine):
        found = affine()
        if found is None:
            return None
        return np.asarray(found[0], dtype=np.float64).ravel(), float(found[1])
    if type(estimator).__name__ in ("LogisticRegression", "LogisticRegressionCV"):
        return np.asarray(estimator.coef_, dtype=np.float64).ravel(), float(np.ravel(estimator.intercept_)[0])
    return None


def dl_signature_affine(reducer: DeepFeatureReducer, signature: Signature) -> PooledAffine | None:
    """Compose the reducer, the signature's selector and its classifier into one affine map of f.

    Args:
        reducer: the fitted z-score + PCA of the pooled features.
        signature: the fitted DL signature on the reducer's components.

    Returns:
        The map, or None when the classifier's logit is not affine or the signature selects a
        column that is not a deep component (then the map would depend on other features).
    """
    selector = signature.selector
    if selector is None or signature.estimator is None or selector.config.transform != "none":
        return None  # a quantile transform is not affine
    affine = estimator_affine(signature.estimator)
    if affine is None:
        return None
    names = reducer.names
    index = {n: i for i, n in enumerate(names)}
    if not selector.selected_names or any(n not in index for n in selector.selected_names):
        return None
    idx = [index[n] for n in selector.selected_names]
    # PC = ((f - mean) / std - pca_mean) @ components.T, restricted to the selected columns.
    loadings = np.asarray(reducer.components, dtype=np.float64)[idx].T  # (D, s)
    matrix = loadings / np.asarray(reducer.std, dtype=np.float64)[:, None]
    shift = -(np.asarray(reducer.mean) / np.asarray(reducer.std) + np.asarray(reducer.pca_mean)) @ loadings
    if selector.config.standardize:
        matrix = matrix / selector.std
        shift = (shift - selector.mean) / selector.std
    coef, intercept = affine
    if coef.shape != (len(idx),):
        return None
    return PooledAffine(weights=matrix @ coef, bias=float(shift @ coef) + intercept)
