"""A K-class endpoint's training: out-of-fold class probabilities, the final signature, the rule.

The same leakage rules as the binary trainer (``trainer.py``): the patient-level split and the
training folds come from ``splits.py``; for each fold the K-class signature
(``models.multiclass_signature``: one-vs-rest selection, multinomial logistic model) is fitted on
the other folds and scores the fold left out; the decision rule's per-class cutoffs (when asked
for) are chosen on those out-of-fold probabilities only; the shipped signature is refitted on every
training case. K-class endpoints train the radiomics signature only (see
:func:`check_multiclass_config` for what is refused, and why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import ConfigError, ManifestError
from ..base.labels import label_key
from ..models.multiclass_signature import MulticlassSignature, decide, fit_multiclass_signature
from .config import TrainConfig
from .crossfit import selection_settings
from .run import TrainingCohort

Log = Callable[[str], None]


def check_multiclass_config(config: TrainConfig) -> None:
    """Refuse, before any work, what a K-class endpoint does not train.

    Raises:
        ConfigError: the CNN enabled (its trainer and Grad-CAM are binary), clinical variables
            (the combined model and its nomogram are binary; see the model card), ComBat, a
            classifier other than ``lr`` (the multinomial model), or the quantile transform.
    """
    why = "a K-class endpoint (task.classes) trains the radiomics signature only"
    if config.cnn.enabled:
        raise ConfigError(f"{why}: set cnn.enabled: false (the network trainer and its heatmap are binary)")
    if config.clinical.variables:
        raise ConfigError(
            f"{why}: remove clinical.variables (the combined model and its nomogram are binary; "
            "a K-class bundle offers no nomogram)"
        )
    if config.harmonisation.method != "none":
        raise ConfigError(
            f"{why}: harmonisation (ComBat) is not offered for it; set harmonisation.method: none"
        )
    if config.model.rad_classifier != "lr":
        raise ConfigError(
            f"{why} with multinomial logistic regression: set model.rad_classifier: lr "
            f"(got {config.model.rad_classifier!r})"
        )
    if config.selection.transform != "none":
        raise ConfigError(f"{why}: selection.transform must be none")


def class_label(raw: str | None, classes: list[str], where: str) -> int | None:
    """A manifest label text's class index (case and surrounding blanks ignored); None when empty.

    Raises:
        ManifestError: a label that is not one of the declared classes.
    """
    if raw is None or not str(raw).strip():
        return None
    lookup = {label_key(c): i for i, c in enumerate(classes)}
    code = lookup.get(label_key(raw))
    if code is None:
        raise ManifestError(
            f"{where}: label '{raw}' is not one of the declared classes ({', '.join(classes)}); "
            "correct it or declare its class in task.classes"
        )
    return code


@dataclass
class MulticlassRun:
    """A finished K-class training run, as the bundle export reads it.

    Attributes:
        config, cohort, work: as :class:`run.TrainingRun`.
        signature: the K-class signature fitted on every training case.
        oof_prob: (n, K) out-of-fold probabilities of the exact contour of each training case.
        oof_cases: the case index of each of those rows.
        cutoffs: per-class cutoffs of the decision rule (None: argmax).
        cutoff_search: how the cutoffs were chosen (criterion and its out-of-fold value).
        record: radiomics parameters and their path, excluded cases, manifest name, command,
            hardware and ledger (as the binary trainer's record).
        elapsed_s: seconds spent fitting.
    """

    config: TrainConfig
    cohort: TrainingCohort
    work: Path
    signature: MulticlassSignature
    oof_prob: np.ndarray
    oof_cases: np.ndarray
    cutoffs: list[float] | None
    cutoff_search: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def classes(self) -> list[str]:
        """The class names in order."""
        return list(self.config.task.classes)

    @property
    def oof_y(self) -> np.ndarray:
        """The class index of each out-of-fold row."""
        return self.cohort.labels[self.oof_cases].astype(int)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Mean over classes of the proportion of the class's cases predicted as it."""
    return float(np.mean([np.mean(pred[y == j] == j) for j in range(k) if (y == j).any()]))


def choose_cutoffs(y: np.ndarray, prob: np.ndarray, rounds: int = 3) -> tuple[list[float], float]:
    """Per-class cutoffs ``c`` of the rule argmax(p_k - c_k) that maximise balanced accuracy.

    Coordinate ascent from c = 0 (the argmax): each class's cutoff in turn is set to the best of
    its candidate values (the observed ``p_k`` quantiles, centred), ``rounds`` passes. The first
    class's cutoff stays 0 (adding one constant to every cutoff changes no decision). Equal
    balanced accuracy keeps the value nearer 0.

    Returns:
        (cutoffs, out-of-fold balanced accuracy under them).
    """
    k = prob.shape[1]
    c = np.zeros(k)
    best = balanced_accuracy(y, decide(prob, c), k)
    grid = np.linspace(-0.5, 0.5, 41)
    for _ in range(rounds):
        changed = False
        for j in range(1, k):
            for v in sorted(grid, key=abs):
                trial = c.copy()
                trial[j] = v
                score = balanced_accuracy(y, decide(prob, trial), k)
                if score > best + 1e-12:
                    best, c, changed = score, trial, True
        if not changed:
            break
    return [float(x) for x in c], best


def fit_multiclass(
    config: TrainConfig, cohort: TrainingCohort, work: Path, log: Log, *, record: dict[str, Any]
) -> MulticlassRun:
    """Out-of-fold probabilities, the cutoffs (if asked for) and the final K-class signature.

    Args:
        config: the training configuration (``task.classes`` set).
        cohort: its cohort (labels are class indices).
        work: the work folder.
        log: one line per step.
        record: the run's record (see :class:`MulticlassRun`).

    Returns:
        The run.
    """
    import time

    started = time.time()
    classes = list(config.task.classes)
    settings = selection_settings(config)
    variants = config.contours.for_radiomics()
    train = cohort.plan.train

    def fit(idx: np.ndarray) -> MulticlassSignature:
        pairs, R = cohort.rows(idx, variants)
        rows = np.array([v == "exact" for _, v in pairs]) if config.selection.lesion_rows else None
        return fit_multiclass_signature(
            R,
            cohort.labels[[i for i, _ in pairs]],
            cohort.rad_names,
            classes,
            selection=settings,
            groups=cohort.groups[[i for i, _ in pairs]],
            selection_rows=rows,
            cv=min(5, config.split.folds),
            seed=config.seed,
        )

    def exact_prob(sig: MulticlassSignature, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pairs, R = cohort.rows(idx, ["exact"])
        cols = [cohort.rad_names.index(c) for c in sig.columns]
        return np.array([i for i, _ in pairs], dtype=int), sig.predict_proba(R[:, cols])

    cases, probs = [], []
    for f, fold in enumerate(cohort.plan.folds, 1):
        held = train[fold]
        log(f"K-class signature, fold {f} of {len(cohort.plan.folds)}")
        sig = fit(np.setdiff1d(train, held))
        idx, p = exact_prob(sig, held)
        cases.append(idx)
        probs.append(p)
    oof_cases, oof_prob = np.concatenate(cases), np.concatenate(probs)
    log("K-class signature on all training cases")
    final = fit(train)
    cutoffs: list[float] | None = None
    search: dict[str, Any] = {"rule": "argmax"}
    oof_y = cohort.labels[oof_cases].astype(int)
    argmax_ba = balanced_accuracy(oof_y, decide(oof_prob), len(classes))
    search["argmax_balanced_accuracy_oof"] = argmax_ba
    if config.task.decision_rule == "cutoffs":
        cutoffs, ba = choose_cutoffs(oof_y, oof_prob)
        search.update(rule="cutoffs", criterion="balanced accuracy, out-of-fold", balanced_accuracy_oof=ba)
        log(f"per-class cutoffs {cutoffs}: out-of-fold balanced accuracy {ba:.3f} (argmax {argmax_ba:.3f})")
    return MulticlassRun(
        config=config,
        cohort=cohort,
        work=work,
        signature=final,
        oof_prob=oof_prob,
        oof_cases=oof_cases,
        cutoffs=cutoffs,
        cutoff_search=search,
        record=record,
        elapsed_s=time.time() - started,
    )


__all__ = [
    "MulticlassRun",
    "balanced_accuracy",
    "check_multiclass_config",
    "choose_cutoffs",
    "class_label",
    "fit_multiclass",
]
