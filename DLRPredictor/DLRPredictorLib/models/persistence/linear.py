"""Loaded logistic regression (LogisticRegression / LogisticRegressionCV, any penalty)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .protocols import ClassifierBase, expit_array, two_columns


class SafeLogisticRegression(ClassifierBase):
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
        return two_columns(expit_array(self._logit(X)))

    def _affine_logit(self) -> tuple[np.ndarray, float]:
        return self.coef, self.intercept

    def _affine_response(self) -> tuple[np.ndarray, float]:
        return self.coef, self.intercept
