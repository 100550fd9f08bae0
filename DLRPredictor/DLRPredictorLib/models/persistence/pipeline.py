"""Loaded sklearn Pipeline: scaling / PCA steps ending in a classifier."""

from __future__ import annotations

import numpy as np

from .protocols import ClassifierBase
from .transformers import SafeTransformChain


class SafePipeline(ClassifierBase):
    """A Pipeline of scaling / PCA steps ending in a classifier."""

    kind = "pipeline"

    def __init__(self, chain: SafeTransformChain, final: ClassifierBase) -> None:
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
