"""Loaded CalibratedClassifierCV: sigmoid or isotonic calibrators over base classifiers."""

from __future__ import annotations

from typing import Any

import numpy as np

from .protocols import ClassifierBase, expit_array


class SigmoidCalibrator:
    """CalibratedClassifierCV's sigmoid calibrator: ``p = expit(-(a * r + b))``."""

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b = a, b

    def __call__(self, response: np.ndarray) -> np.ndarray:
        return expit_array(-(self.a * response + self.b))


class IsotonicCalibrator:
    """CalibratedClassifierCV's isotonic calibrator: clip, then linear interpolation."""

    def __init__(self, x: np.ndarray, y: np.ndarray, x_range: tuple[float, float]) -> None:
        self.x, self.y, self.x_range = x, y, x_range

    def __call__(self, response: np.ndarray) -> np.ndarray:
        clipped = np.clip(response, *self.x_range)
        if self.x.size == 1:
            return np.full(response.shape, self.y[0])
        return np.interp(clipped, self.x, self.y)


class SafeCalibrated(ClassifierBase):
    """CalibratedClassifierCV (sigmoid or isotonic): mean over its calibrated members."""

    kind = "calibrated"

    def __init__(
        self,
        members: list[tuple[ClassifierBase, SigmoidCalibrator | IsotonicCalibrator]],
        classes: tuple[Any, ...],
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

    def _single_sigmoid(self) -> tuple[ClassifierBase, SigmoidCalibrator] | None:
        if len(self.members) == 1 and isinstance(self.members[0][1], SigmoidCalibrator):
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
