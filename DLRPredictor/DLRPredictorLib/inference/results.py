"""What a prediction answers, one type per stage, each extending the one before it.

``PipelineOutput`` (the fusion stage: scores, explanation, distance to the training data) <-
``CasePrediction`` (one lesion through a bundle: adds the label, provenance, features, heatmap
and contour stability) <- ``PredictionResult`` (``api.predict_nodes``: adds the ids of the nodes
written). Each field is declared once, in the stage that computes it; a later stage is built from
the earlier one's fields with :meth:`PipelineOutput.extend`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np

from ..base.case import LesionSlice

_Result = TypeVar("_Result", bound="PipelineOutput")


@dataclass
class StabilityResult:
    """How the probability moves when the contour is eroded or dilated."""

    perturbations: list[str]
    probabilities: list[float]
    spread: float  # max - min over the original and every perturbation
    label_changes: bool


@dataclass
class PipelineOutput:
    """The fusion stage's answer for one case."""

    probability: float  # recalibrated when the bundle has a step for the model used
    probability_uncalibrated: float | None  # the model's own probability when recalibrated, else None
    cutoff: float  # on the scale of ``probability``
    model_used: str
    signature_scores: dict[str, float]
    contributions: list[tuple[str, float]]
    contribution_scale: str
    nomogram_points: dict[str, float]
    total_points: float | None
    ood_distance: float
    out_of_distribution: bool
    warnings: list[str]

    @classmethod
    def extend(cls: type[_Result], base: PipelineOutput, **added: Any) -> _Result:
        """This (later-stage) result from an earlier stage's result and the fields this stage adds.

        Args:
            base: the earlier result; every field it declares is taken over as it is (no copy).
            **added: the fields this type adds, and any of ``base``'s to replace (e.g. warnings).

        Returns:
            The new result.
        """
        inherited = {f.name: getattr(base, f.name) for f in fields(base)}
        return cls(**{**inherited, **added})


@dataclass
class CasePrediction(PipelineOutput):
    """Everything the model says about one lesion."""

    label: str
    predicted_positive: bool
    provenance: dict[str, str]
    features: dict[str, float] = field(repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)  # (k, j, i) like the image
    lesion: LesionSlice | None = field(default=None, repr=False)
    stability: StabilityResult | None = None
    #: A K-class bundle: every class's probability in the declared order (``label`` is the frozen
    #: rule's class, ``probability`` its probability); None for a binary bundle.
    class_probabilities: dict[str, float] | None = None


@dataclass
class PredictionResult(CasePrediction):
    """What ``api.predict_nodes`` returns: the prediction and the ids of the nodes it wrote."""

    features_table_node_id: str | None = None
    prediction_table_node_id: str | None = None
    heatmap_node_id: str | None = None


__all__ = ["CasePrediction", "PipelineOutput", "PredictionResult", "StabilityResult"]
