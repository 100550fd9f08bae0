"""Recalibration of a reported probability: logistic (Platt) or isotonic, stored as plain JSON.

A :class:`Recalibration` maps the uncalibrated probability ``p`` of one model to a calibrated one:

- ``platt``: ``expit(intercept + slope * logit(p))``, the logistic recalibration of
  ``evaluation.calibration`` turned into a step (``logit`` clips ``p`` to [1e-8, 1 - 1e-8]);
- ``isotonic``: ``p`` clipped to the fitted range, then linear interpolation between the
  isotonic regression's thresholds (sklearn's ``IsotonicRegression(out_of_bounds="clip")``).

Applying it is numpy only (the prediction path imports no sklearn); fitting imports sklearn.
The spec read back from a bundle is checked field by field (:meth:`Recalibration.from_spec`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base.errors import BundleError
from .classifiers import proba_to_logit
from .persistence.calibration import IsotonicCalibrator, SigmoidCalibrator

METHODS = ("platt", "isotonic")


@dataclass
class Recalibration:
    """A fitted recalibration step of one model's probability.

    Attributes:
        model: the model whose probability it recalibrates ("dlr", "rad", ...).
        method: "platt" or "isotonic".
        params: platt: ``slope``, ``intercept``; isotonic: ``x``, ``y`` (thresholds, non-decreasing)
            and ``x_min``, ``x_max`` (the fitted input range).
        selection: how the method was chosen (criterion, folds, score per candidate); recorded only.
    """

    model: str
    method: str
    params: dict[str, Any]
    selection: dict[str, Any] = field(default_factory=dict)

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of the uncalibrated probabilities ``p``."""
        p = np.asarray(p, dtype=float)
        if self.method == "platt":
            # SigmoidCalibrator computes expit(-(a * r + b)): a = -slope, b = -intercept
            sig = SigmoidCalibrator(-float(self.params["slope"]), -float(self.params["intercept"]))
            return sig(proba_to_logit(p))
        iso = IsotonicCalibrator(
            np.asarray(self.params["x"], dtype=float),
            np.asarray(self.params["y"], dtype=float),
            (float(self.params["x_min"]), float(self.params["x_max"])),
        )
        return iso(p)

    def to_spec(self) -> dict[str, Any]:
        """Plain JSON of the step (stored in ``pipeline.json``)."""
        return {"model": self.model, "method": self.method, **self.params, "selection": self.selection}

    @classmethod
    def from_spec(cls, spec: Any) -> Recalibration:
        """The step of a ``pipeline.json`` calibration block, checked.

        Raises:
            BundleError: the block is not an object, names an unknown method, or its numbers are
                missing, not finite, out of [0, 1] or not ordered as a fitted step's are.
        """
        if not isinstance(spec, dict):
            _bad(f"it is a JSON {type(spec).__name__}, not an object")
        model, method = spec.get("model"), spec.get("method")
        if not isinstance(model, str) or not model:
            _bad("'model' must name the recalibrated model")
        if method not in METHODS:
            _bad(f"'method' is {method!r}; expected one of {', '.join(METHODS)}")
        selection = spec.get("selection") or {}
        if not isinstance(selection, dict):
            _bad("'selection' must be an object")
        if method == "platt":
            slope, intercept = _number(spec, "slope"), _number(spec, "intercept")
            if slope <= 0:
                _bad(f"the Platt slope {slope} is not positive (a step must keep the order of the scores)")
            return cls(model, method, {"slope": slope, "intercept": intercept}, selection)
        x, y = _array(spec, "x"), _array(spec, "y")
        lo, hi = _number(spec, "x_min"), _number(spec, "x_max")
        if x.size == 0 or x.size != y.size:
            _bad(
                f"the isotonic thresholds 'x' ({x.size}) and 'y' ({y.size}) must be non-empty and of "
                "equal length"
            )
        if np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
            _bad("the isotonic thresholds are not non-decreasing")
        if np.any(y < 0) or np.any(y > 1) or not lo <= hi:
            _bad("the isotonic values must lie in [0, 1] and x_min must not exceed x_max")
        params = {"x": x.tolist(), "y": y.tolist(), "x_min": lo, "x_max": hi}
        return cls(model, method, params, selection)


def _bad(why: str) -> None:
    raise BundleError(f"pipeline.json: the calibration block is invalid: {why}; rebuild the bundle")


def _number(spec: dict[str, Any], key: str) -> float:
    v = spec.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        _bad(f"'{key}' must be a finite number, got {v!r}")
    return float(v)  # type: ignore[arg-type]  # checked above


def _array(spec: dict[str, Any], key: str) -> np.ndarray:
    v = spec.get(key)
    if not isinstance(v, list) or any(isinstance(e, bool) or not isinstance(e, (int, float)) for e in v):
        _bad(f"'{key}' must be a list of numbers")
    a = np.asarray(v, dtype=float)
    if not np.all(np.isfinite(a)):
        _bad(f"'{key}' holds a value that is not finite")
    return a


def fit_platt(p: np.ndarray, y: np.ndarray, model: str) -> Recalibration:
    """Logistic recalibration ``logit P(y=1) = intercept + slope * logit(p)``, unpenalised.

    Args:
        p: uncalibrated probabilities.
        y: 0/1 labels.
        model: the model they belong to.
    """
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=np.inf, solver="lbfgs", tol=1e-10, max_iter=10_000)  # unpenalised
    lr.fit(proba_to_logit(np.asarray(p, dtype=float))[:, None], np.asarray(y, dtype=int))
    return Recalibration(
        model, "platt", {"slope": float(lr.coef_[0, 0]), "intercept": float(lr.intercept_[0])}
    )


def fit_isotonic(p: np.ndarray, y: np.ndarray, model: str) -> Recalibration:
    """Isotonic regression of the labels on ``p`` (non-decreasing, clipped outside the fitted range)."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    )
    params = {
        "x": [float(v) for v in iso.X_thresholds_],
        "y": [float(v) for v in iso.y_thresholds_],
        "x_min": float(iso.X_min_),
        "x_max": float(iso.X_max_),
    }
    return Recalibration(model, "isotonic", params)


FITTERS = {"platt": fit_platt, "isotonic": fit_isotonic}
