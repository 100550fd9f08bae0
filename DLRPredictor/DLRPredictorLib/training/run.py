"""What a training run works on and produces: the cohort, out-of-fold scores, the fitted parts.

:class:`TrainingRun` is the finished run as the trainer hands it to the bundle export
(``bundle_export.py``) and the held-out evaluation (``heldout.py``): everything they read, and
nothing of the trainer's working state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .config import TrainConfig
from .data import TrainingCase
from .splits import FoldPlan

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..deep.deep_model import DeepModel
    from ..models.clinical_variables import ClinicalVariable
    from ..models.combined import CombinedModel
    from ..models.nomogram import Nomogram
    from ..models.recalibration import Recalibration
    from ..models.signatures import DeepFeatureReducer

#: (case index, contour variant): one training row (every variant of a case is a row).
Row = tuple[int, str]
#: Deep feature vector of each row.
DeepFeatures = dict[Row, np.ndarray]


@dataclass
class TrainingCohort:
    """The labelled cases of a run, their patient groups, the split plan and the radiomics table.

    Attributes:
        cases: every usable case (training cases first, then those of an external test manifest).
        labels: (N,) 0/1 label per case.
        groups: (N,) patient id per case.
        plan: test split and training folds (indices into ``cases``).
        rad_names: radiomics feature names, the columns of every radiomics vector.
        rad: radiomics vector by (case_id, variant); pairs whose extraction failed are absent.
    """

    cases: list[TrainingCase]
    labels: np.ndarray
    groups: np.ndarray
    plan: FoldPlan
    rad_names: list[str]
    rad: dict[tuple[str, str], np.ndarray]

    def rows(self, idx: np.ndarray, variants: list[str]) -> tuple[list[Row], np.ndarray]:
        """(case index, variant) pairs that have radiomics, and their radiomics matrix."""
        pairs = [(int(i), v) for i in idx for v in variants if (self.cases[i].case_id, v) in self.rad]
        return pairs, np.array([self.rad[(self.cases[i].case_id, v)] for i, v in pairs])

    def frame(
        self,
        pairs: list[Row],
        R: np.ndarray,
        deep: DeepFeatures | None,
        reducer: DeepFeatureReducer | None,
    ) -> pd.DataFrame:
        """The feature table of these rows: radiomics, then the reduced deep features if given."""
        frame = pd.DataFrame(R, columns=self.rad_names)
        if deep is not None and reducer is not None:
            D = np.array([deep[p] for p in pairs])
            frame = pd.concat([frame, reducer.transform_frame(D)], axis=1)
        return frame


@dataclass
class OofScores:
    """Out-of-fold signature scores of the training rows (from models that never saw the row).

    Attributes:
        pairs: the rows, fold after fold.
        scores: score per signature ("rad", "dl", "dlr") and row.
        y: label per row.
    """

    pairs: list[Row]
    scores: dict[str, np.ndarray]
    y: np.ndarray

    @property
    def exact(self) -> np.ndarray:
        """Boolean mask of the rows with the exact contour."""
        return np.array([v == "exact" for _, v in self.pairs])

    @property
    def exact_cases(self) -> np.ndarray:
        """Case index of each exact-contour row."""
        return np.array([i for i, _ in self.pairs])[self.exact]


@dataclass
class ClinicalFit:
    """The clinical combined model (image score + clinical predictors) and its nomogram.

    Attributes:
        variables: the clinical variables of the configuration.
        univariable: univariable logistic regression per predictor.
        multivariable: the multivariable model of the chosen predictors.
        model: the combined model.
        nomogram: its nomogram.
        keep: positions among the exact out-of-fold rows of the cases with complete clinical values.
        oof: the combined model's probability on those rows.
        logit_range: range of the image score's logit on the exact out-of-fold rows.
    """

    variables: list[ClinicalVariable]
    univariable: pd.DataFrame
    multivariable: pd.DataFrame
    model: CombinedModel
    nomogram: Nomogram
    keep: np.ndarray
    oof: np.ndarray
    logit_range: tuple[float, float]


@dataclass
class TrainingRun:
    """A finished training run: what the bundle export and the held-out evaluation need.

    Attributes:
        config: the training configuration (paths resolved).
        cohort: cases, labels, groups, split plan and radiomics.
        work: the work folder (caches, checkpoints, reports).
        signatures: the final models by name: "rad", and with the CNN "reducer", "dl", "dlr"
            (the fusion model, or the early-fusion signature).
        oof: out-of-fold scores ("dlr" is the fusion's once fitted).
        clinical: the clinical combined model, or None.
        final_net: the network trained on every training case, or None without CNN.
        final_deep: its deep features of every case (exact and ellipse contours included).
        cnn_history: epoch history per network ("fold1", ..., "final").
        pretrain_history: SimCLR pretraining record, or None.
        radiomics_parameters: the pyradiomics parameters.
        radiomics_parameters_path: their file (copied into the bundle).
        excluded: (case_id, reason) of every case left out.
        elapsed_s: seconds from the start to the end of fitting (before the held-out evaluation).
        manifest_name: file name of the training manifest.
        command: the command line, when run from the CLI.
        hardware: machine description.
        recalibration: the image-only probability's recalibration step, or None.
        recalibration_selection: how it was chosen (``recalibration_fit.fit_recalibration``).
        ledger: the held-out ledger file this run appends to (``ledger.py``).
    """

    config: TrainConfig
    cohort: TrainingCohort
    work: Path
    signatures: dict[str, Any]
    oof: OofScores
    clinical: ClinicalFit | None
    final_net: DeepModel | None
    final_deep: DeepFeatures | None
    cnn_history: dict[str, list[dict[str, float]]]
    pretrain_history: dict[str, Any] | None
    radiomics_parameters: dict[str, Any]
    radiomics_parameters_path: Path
    excluded: list[tuple[str, str]]
    elapsed_s: float
    manifest_name: str
    command: str
    hardware: str
    recalibration: Recalibration | None = None
    recalibration_selection: dict[str, Any] = field(default_factory=dict)
    ledger: Path | None = None
