"""What is fitted on the out-of-fold scores: the DLR fusion and the clinical combined model.

Both learn from scores of models that never saw the row (:class:`run.OofScores`), so the weights
they give each signature reflect how the signatures do on new cases, not on their own training
cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.errors import ConfigError, DLRError
from .config import TrainConfig
from .run import ClinicalFit, OofScores, TrainingCohort


@dataclass
class FusionFit:
    """The DLR fusion model and its out-of-fold score on every row (for the cutoffs)."""

    model: Any  # StackingFusion, EnsembleFusion or the early-fusion Signature
    oof: np.ndarray


def fit_fusion(
    config: TrainConfig,
    sigs: dict[str, Any],
    oof: dict[str, np.ndarray],
    y: np.ndarray,
    rows: np.ndarray,
    *,
    shape: GateShape | None = None,
) -> FusionFit | None:
    """Stacking meta-learner or ensemble weights, fitted on the out-of-fold rows ``rows``.

    Args:
        config: ``model.fusion``, ``model.stacking_inputs``, ``split.folds`` and ``seed``.
        sigs: the final signatures ("rad", "dl", and "dlr" for early fusion).
        oof: out-of-fold score per signature and row.
        y: label per row.
        rows: boolean mask of the rows the fusion learns from (``model.fusion_variants``).
        shape: with ``model.contour_gate``, the outline detail of every out-of-fold row and of
            the training rows that set the gate's thresholds.

    Returns:
        The fusion model and its out-of-fold score on every row, or None without a DL signature
        (with early fusion: the early-fusion signature and its out-of-fold score).
    """
    from ..models.fusion import EnsembleFusion, StackingFusion

    if "dl" not in sigs or config.model.fusion == "early":
        return FusionFit(sigs["dlr"], oof["dlr"]) if "dlr" in sigs else None
    P = np.column_stack([oof["rad"], oof["dl"]])
    members = [sigs["rad"], sigs["dl"]]
    if config.model.fusion == "stacking":
        stacking = StackingFusion(
            members,
            cv=config.split.folds,
            seed=config.seed,
            name="DLR",
            inputs=config.model.stacking_inputs,
        )
        fitted: Any = stacking.fit_meta(P[rows], y[rows])
    else:
        fitted = EnsembleFusion(members, cv=config.split.folds, seed=config.seed, name="DLR").fit_meta(
            P[rows], y[rows]
        )
    if not config.model.contour_gate:
        return FusionFit(fitted, fitted.combine(P))
    if shape is None:
        raise DLRError("model.contour_gate: the outline detail of the out-of-fold rows was not given")
    from ..models.contour_gate import ContourGatedFusion, gate_thresholds

    low, high = gate_thresholds(shape.ellipse, shape.exact)
    gated = ContourGatedFusion(fitted, fallback=1, low=low, high=high)  # member 1: the DL signature
    return FusionFit(gated, gated.combine(P, shape.oof))


@dataclass
class GateShape:
    """Outline detail (``models.contour_gate.outline_detail``) for the contour gate.

    Attributes:
        oof: of every out-of-fold row, in their order.
        exact: of the training cases' exact outlines.
        ellipse: of the training cases' moment-matched ellipses.
    """

    oof: np.ndarray
    exact: np.ndarray
    ellipse: np.ndarray


def gate_shape(cohort: TrainingCohort, pairs: list[Any], train: np.ndarray) -> GateShape:
    """The outline detail the contour gate is fitted and applied with, from the cohort's radiomics.

    Raises:
        ConfigError: the radiomics parameters extract no shape2D perimeter and axes.
    """
    from ..models.contour_gate import GATE_COLUMNS, outline_detail

    missing = [c for c in GATE_COLUMNS if c not in cohort.rad_names]
    if missing:
        raise ConfigError(
            f"model.contour_gate reads {', '.join(GATE_COLUMNS)}; the radiomics parameters give no "
            f"{missing[0]}: enable the shape2D class (force2D)"
        )
    cols = [cohort.rad_names.index(c) for c in GATE_COLUMNS]

    def detail(rows: list[Any]) -> np.ndarray:
        R = np.array([cohort.rad[(cohort.cases[i].case_id, v)][cols] for i, v in rows]).reshape(-1, 3)
        return outline_detail(R[:, 0], R[:, 1], R[:, 2])

    exact, _ = cohort.rows(train, ["exact"])
    ellipse, _ = cohort.rows(train, ["ellipse"])
    return GateShape(oof=detail(pairs), exact=detail(exact), ellipse=detail(ellipse))


def fit_clinical(
    config: TrainConfig, cohort: TrainingCohort, oof: OofScores, *, log: Callable[[str], None]
) -> ClinicalFit | None:
    """The clinical combined model on the exact-contour out-of-fold rows, and its nomogram.

    Args:
        config: ``clinical.variables`` and ``clinical.univariable_p``.
        cohort: the cases (their clinical values and labels).
        oof: out-of-fold scores (the image score is "dlr" once the fusion is fitted, else "rad").
        log: where a skipped model is reported.

    Returns:
        The fit, or None without clinical variables or with fewer than 20 training cases of
        complete clinical values (or one class only).
    """
    from ..models.classifiers import proba_to_logit
    from ..models.clinical_logistic import multivariable_logistic, select_predictors, univariable_logistic
    from ..models.clinical_variables import ClinicalVariable, clinical_feature_names, encode_clinical
    from ..models.combined import CombinedModel
    from ..models.nomogram import Nomogram

    variables = [ClinicalVariable(**v) for v in config.clinical.variables]
    if not variables:
        return None
    image_model = "dlr" if "dlr" in oof.scores else "rad"
    score = oof.scores[image_model][oof.exact]
    oof_cases = oof.exact_cases
    y = cohort.labels[oof_cases]
    keep: list[int] = []
    encoded: list[np.ndarray] = []
    for j, i in enumerate(oof_cases):
        c = cohort.cases[i].clinical
        try:
            row = encode_clinical([{v.name: c.get(v.name) for v in variables}], variables)[0]
        except DLRError:
            continue  # cases with a missing clinical value do not inform the combined model
        keep.append(j)
        encoded.append(row)
    if len(keep) < 20 or len(set(y[keep])) < 2:
        log(f"clinical model skipped: only {len(keep)} training cases with complete clinical values")
        return None
    X = np.array(encoded)
    names = clinical_feature_names(variables)
    uni = univariable_logistic(X, y[keep], names)
    chosen = select_predictors(uni, alpha=config.clinical.univariable_p)
    cols = [names.index(n) for n in chosen]
    multi = multivariable_logistic(X[:, cols], y[keep], chosen)
    combined = CombinedModel(score_name="DLR score", score_scale="probability")
    combined.fit(score[keep], X[:, cols], y[keep], chosen)
    lg = proba_to_logit(score)
    logit_range = (float(np.min(lg)), float(np.max(lg)))
    nomo = Nomogram.from_combined(combined, variables, score_range=logit_range)
    return ClinicalFit(
        variables=variables,
        univariable=uni,
        multivariable=multi,
        model=combined,
        nomogram=nomo,
        keep=np.array(keep),
        oof=combined.predict_proba(score[keep], X[:, cols]),
        logit_range=logit_range,
    )
