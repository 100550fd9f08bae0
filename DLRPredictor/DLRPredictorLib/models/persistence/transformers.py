"""Loaded feature transformers: sklearn StandardScaler, PCA, and a chain of them."""

from __future__ import annotations

import numpy as np

from .protocols import TransformerBase


class SafeStandardScaler(TransformerBase):
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


class SafePCA(TransformerBase):
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


class SafeTransformChain(TransformerBase):
    """A chain of transformers applied in order (a transform-only Pipeline)."""

    kind = "pipeline"

    def __init__(self, steps: list[TransformerBase], n_features_in: int) -> None:
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
