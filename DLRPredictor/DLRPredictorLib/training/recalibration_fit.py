"""The recalibration step of the reported image-only probability, chosen by CV inside the training split.

Fitted on the out-of-fold scores of the exact-contour training rows (one row per lesion; no
held-out case). With ``model.calibration: auto`` each candidate ("none", "platt", "isotonic") is
fitted on K-1 patient-grouped folds of those rows and scored on the fold left out; the candidate
with the lowest mean Brier score is kept (ties go to the simpler one, in that order) and refitted on
all of them. The Brier score is the criterion because it is a proper score that stays finite for the
0 and 1 an isotonic step can give (log loss would hinge on an arbitrary clipping).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..models.recalibration import FITTERS, Recalibration
from .config import TrainConfig

CANDIDATES = ("none", "platt", "isotonic")


def _brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def cv_brier(p: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> dict[str, float]:
    """Mean Brier score of each candidate on patient-grouped inner folds of (p, y)."""
    from ..models.selection import stratified_folds

    totals = {c: [] for c in CANDIDATES}  # type: dict[str, list[float]]
    for tr, va in stratified_folds(y, groups, folds, seed):
        totals["none"].append(_brier(p[va], y[va]))
        for name in ("platt", "isotonic"):
            step = FITTERS[name](p[tr], y[tr], "cv")
            totals[name].append(_brier(step.apply(p[va]), y[va]))
    return {c: float(np.mean(v)) for c, v in totals.items()}


def fit_recalibration(
    config: TrainConfig, model: str, p: np.ndarray, y: np.ndarray, groups: np.ndarray
) -> tuple[Recalibration | None, dict[str, Any]]:
    """The recalibration step of ``model`` that ``model.calibration`` asks for.

    Args:
        config: ``model.calibration`` ("none", "platt", "isotonic" or "auto"), ``split.folds``, ``seed``.
        model: the recalibrated model's name.
        p: its out-of-fold probabilities on the exact training rows.
        y: their labels.
        groups: their patient ids (inner folds keep a patient on one side).

    Returns:
        (the fitted step or None for "none", how it was chosen: criterion, folds, the inner-fold
        Brier score of each candidate, the choice).
    """
    wanted = config.model.calibration
    if wanted == "none":
        return None, {"chosen": "none", "criterion": "given in the training config"}
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=int)
    selection: dict[str, Any] = {
        "chosen": wanted,
        "criterion": "given in the training config",
        "fitted_on": len(y),
    }
    if wanted == "auto":
        scores = cv_brier(p, y, np.asarray(groups), config.split.folds, config.seed + 2)
        wanted = min(CANDIDATES, key=lambda c: (round(scores[c], 12), CANDIDATES.index(c)))
        selection = {
            "criterion": "mean Brier score on patient-grouped inner folds of the out-of-fold exact rows",
            "folds": config.split.folds,
            "cv_brier": scores,
            "chosen": wanted,
            "fitted_on": len(y),
        }
        if wanted == "none":
            return None, selection
    step = FITTERS[wanted](p, y, model)
    step.selection = selection
    return step, selection


def calibration_figures(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Brier score, calibration slope and intercept (``evaluation.calibration``) and the
    Hosmer-Lemeshow test (deciles) of probabilities ``p``; None where a figure cannot be formed."""
    from ..base.errors import InputError
    from ..evaluation.calibration import calibration, hosmer_lemeshow

    cal = calibration(y, p)
    out: dict[str, Any] = {
        "brier": cal.brier,
        "slope": cal.slope if cal.converged else None,
        "intercept": cal.intercept if cal.converged else None,
        "hosmer_lemeshow_stat": None,
        "hosmer_lemeshow_p": None,
    }
    try:
        stat, _, pval = hosmer_lemeshow(y, p)
        out["hosmer_lemeshow_stat"], out["hosmer_lemeshow_p"] = stat, pval
    except InputError:  # too few distinct probabilities for 3 risk groups (a coarse isotonic step)
        pass
    return out


def before_after(step: Recalibration, y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """:func:`calibration_figures` of the model's probabilities and of their recalibration."""
    return {
        "model": step.model,
        "method": step.method,
        "n": len(y),
        "before": calibration_figures(y, p),
        "after": calibration_figures(y, step.apply(p)),
    }
