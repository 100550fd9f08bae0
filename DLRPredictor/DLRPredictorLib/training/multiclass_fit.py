"""A K-class endpoint's training: out-of-fold class probabilities, the final signature, the rule.

The same leakage rules as the binary trainer (``trainer.py``): the patient-level split and the
training folds come from ``splits.py``; for each fold the K-class signature
(``models.multiclass_signature``: one-vs-rest selection, multinomial logistic model) is fitted on
the other folds and scores the fold left out; the decision rule's per-class cutoffs (when asked
for) are chosen on those out-of-fold probabilities only; the shipped signature is refitted on every
training case. With ``cnn.enabled`` the network, the DL signature and the fusion are cross-fitted
on the same folds (``multiclass_dlr.py``); see :func:`check_multiclass_config` for what is
refused, and why.
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
        ConfigError: clinical variables (the combined model and its nomogram are binary; see the
            model card), ComBat, a classifier other than ``lr`` (the multinomial model), the
            quantile transform, or with the network early fusion or a DL classifier other than
            ``lr``.
    """
    why = "a K-class endpoint (task.classes) trains the Rad, DL and DLR (fusion) signatures only"
    if config.cnn.enabled and config.model.fusion == "early":
        raise ConfigError(
            f"{why}: set model.fusion to stacking or ensemble (early fusion is not offered for K classes)"
        )
    if config.cnn.enabled and config.model.dl_classifier != "lr":
        raise ConfigError(
            f"{why} with multinomial logistic regression: set model.dl_classifier: lr "
            f"(got {config.model.dl_classifier!r})"
        )
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
        by_signature: with the network: each signature's out-of-fold probabilities of the same
            rows ("rad", "dl", "dlr"; ``oof_prob`` is then the DLR's, the reported model).
        dl_signature, reducer, fusion: with the network: the K-class DL signature on the
            principal components (``models.signatures.DeepFeatureReducer``) of the pooled
            features, and the ``models.multiclass_fusion.MulticlassFusion`` of Rad and DL.
        final_net, final_deep: the network trained on every training case (``DeepModel``) and
            its pooled features of every case and contour variant.
        cnn_history: epoch history of every network trained.
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
    by_signature: dict[str, np.ndarray] = field(default_factory=dict)
    dl_signature: MulticlassSignature | None = None
    reducer: Any = None
    fusion: Any = None
    final_net: Any = None
    final_deep: dict[Any, np.ndarray] = field(default_factory=dict)
    cnn_history: dict[str, Any] = field(default_factory=dict)

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
    train = cohort.plan.train
    cases, probs = [], []
    for f, fold in enumerate(cohort.plan.folds, 1):
        held = train[fold]
        log(f"K-class signature, fold {f} of {len(cohort.plan.folds)}")
        sig = fit_rad_signature(config, cohort, np.setdiff1d(train, held))
        idx, p = rad_exact_prob(cohort, sig, held)
        cases.append(idx)
        probs.append(p)
    oof_cases, oof_prob = np.concatenate(cases), np.concatenate(probs)
    log("K-class signature on all training cases")
    final = fit_rad_signature(config, cohort, train)
    cutoffs, search = decision_rule(config, cohort.labels[oof_cases].astype(int), oof_prob, log)
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


def fit_rad_signature(config: TrainConfig, cohort: TrainingCohort, idx: np.ndarray) -> MulticlassSignature:
    """The K-class Rad signature fitted on the cases ``idx`` (their radiomics contour variants)."""
    pairs, R = cohort.rows(idx, config.contours.for_radiomics())
    rows = np.array([v == "exact" for _, v in pairs]) if config.selection.lesion_rows else None
    return fit_multiclass_signature(
        R,
        cohort.labels[[i for i, _ in pairs]],
        cohort.rad_names,
        list(config.task.classes),
        selection=selection_settings(config),
        groups=cohort.groups[[i for i, _ in pairs]],
        selection_rows=rows,
        cv=min(5, config.split.folds),
        seed=config.seed,
    )


def rad_exact_prob(
    cohort: TrainingCohort, sig: MulticlassSignature, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(case index, (n, K) probabilities) of the Rad signature on the exact contours of ``idx``."""
    pairs, R = cohort.rows(idx, ["exact"])
    cols = [cohort.rad_names.index(c) for c in sig.columns]
    return np.array([i for i, _ in pairs], dtype=int), sig.predict_proba(R[:, cols])


def decision_rule(
    config: TrainConfig, oof_y: np.ndarray, oof_prob: np.ndarray, log: Log
) -> tuple[list[float] | None, dict[str, Any]]:
    """The frozen rule on the reported model's out-of-fold probabilities: (cutoffs or None, how)."""
    k = len(config.task.classes)
    search: dict[str, Any] = {"rule": "argmax"}
    argmax_ba = balanced_accuracy(oof_y, decide(oof_prob), k)
    search["argmax_balanced_accuracy_oof"] = argmax_ba
    if config.task.decision_rule != "cutoffs":
        return None, search
    cutoffs, ba = choose_cutoffs(oof_y, oof_prob)
    search.update(rule="cutoffs", criterion="balanced accuracy, out-of-fold", balanced_accuracy_oof=ba)
    log(f"per-class cutoffs {cutoffs}: out-of-fold balanced accuracy {ba:.3f} (argmax {argmax_ba:.3f})")
    return cutoffs, search


__all__ = [
    "MulticlassRun",
    "balanced_accuracy",
    "check_multiclass_config",
    "choose_cutoffs",
    "class_label",
    "decision_rule",
    "fit_multiclass",
    "fit_rad_signature",
    "rad_exact_prob",
]
