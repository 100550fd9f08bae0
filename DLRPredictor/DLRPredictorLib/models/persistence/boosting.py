"""Loaded gradient boosting: XGBoost and LightGBM boosters read from their native model text.

xgboost and lightgbm are imported only when such a model is loaded or applied.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .protocols import ClassifierBase, two_columns


class SafeXGBoost(ClassifierBase):
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
        return two_columns(self._predict(X))

    def _logit(self, X: np.ndarray) -> np.ndarray:
        return self._predict(X, output_margin=True)

    def _contrib(self, X: np.ndarray) -> np.ndarray:
        return self._predict(X, pred_contribs=True)


class SafeLightGBM(ClassifierBase):
    """LightGBM binary booster reloaded from its native model string."""

    kind = "lightgbm"
    contribution_scale = "logit"

    def __init__(self, booster: Any, classes: tuple[Any, ...]) -> None:
        super().__init__(int(booster.num_feature()), classes)
        self.booster = booster

    def _predict(self, X: np.ndarray, **kwargs: bool) -> np.ndarray:
        return np.asarray(self.booster.predict(X, **kwargs), dtype=np.float64)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return two_columns(self._predict(X))

    def _logit(self, X: np.ndarray) -> np.ndarray:
        return self._predict(X, raw_score=True)

    def _contrib(self, X: np.ndarray) -> np.ndarray:
        return self._predict(X, pred_contrib=True)


def lightgbm_objective(model_text: str) -> str:
    """The objective name of a LightGBM model string (``objective=binary sigmoid:1`` -> ``binary``)."""
    for line in model_text.splitlines():
        if line.startswith("objective="):
            return line[len("objective=") :].split(" ", 1)[0].strip()
        if line.startswith("Tree="):
            break  # the header is over
    return ""
