"""A K-class endpoint with the network: Rad, DL and DLR signatures, cross-fitted on the same folds.

The binary trainer's order of work (``trainer.py``), for K classes:
1. For each training fold k, a CNN with K outputs (class-weighted cross-entropy; early stopping
   on the macro one-vs-rest AUC of its inner validation patients) is trained on the other folds;
   its average-pooled features of fold k are out of fold (``crossfit.CrossFitter``).
2. On the other folds, the K-class Rad signature (``multiclass_fit.fit_rad_signature``) and the
   K-class DL signature (z-score + PCA of the pooled features, ``DeepFeatureReducer``, then the
   same one-vs-rest selection and multinomial logistic model as Rad) are fitted; both score fold
   k's exact contours. Every training case thus gets out-of-fold Rad and DL class probabilities.
3. The fusion (``models.multiclass_fusion``: stacking, a multinomial meta-model on the members'
   log probabilities, or ensemble, their mean) is fitted on those out-of-fold probabilities. The
   DLR's own out-of-fold probabilities come from a meta-model fitted on the other folds' rows
   (cross-fitted again on the same folds), so the decision rule's cutoffs, chosen on them, and the
   out-of-fold report are honest.
4. The shipped network, reducer and signatures are refitted on every training case.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..base.executor import MapFunction
from ..models.multiclass_fusion import MulticlassFusion, fit_multiclass_fusion
from ..models.multiclass_signature import MulticlassSignature, fit_multiclass_signature
from .config import TrainConfig
from .crossfit import CrossFitter, radiomics_variants, selection_settings
from .multiclass_fit import MulticlassRun, decision_rule, fit_rad_signature, rad_exact_prob
from .run import DeepFeatures, TrainingCohort

Log = Callable[[str], None]
SIGNATURES = ("rad", "dl", "dlr")


def fit_dl_signature(
    config: TrainConfig, cohort: TrainingCohort, idx: np.ndarray, deep: DeepFeatures
) -> tuple[Any, MulticlassSignature]:
    """The reducer (z-score + PCA) and K-class DL signature fitted on the cases ``idx``.

    Rows: every training contour variant with radiomics (as the binary DL signature); the
    selection statistics on the exact contours when ``selection.lesion_rows``. The selection
    has no transform: the signature stays affine in the pooled features.
    """
    from ..models.signatures import DeepFeatureReducer

    pairs, _ = cohort.rows(idx, list(config.contours.variants))
    D = np.array([deep[p] for p in pairs])
    n_comp = config.model.pca_components
    reducer = DeepFeatureReducer(int(n_comp) if n_comp >= 1 else float(n_comp)).fit(D)
    rows = np.array([v == "exact" for _, v in pairs]) if config.selection.lesion_rows else None
    sig = fit_multiclass_signature(
        reducer.transform(D),
        cohort.labels[[i for i, _ in pairs]],
        reducer.names,
        list(config.task.classes),
        selection=replace(selection_settings(config), transform="none"),
        groups=cohort.groups[[i for i, _ in pairs]],
        selection_rows=rows,
        cv=min(5, config.split.folds),
        seed=config.seed,
    )
    return reducer, sig


def dl_prob(reducer: Any, sig: MulticlassSignature, vectors: np.ndarray) -> np.ndarray:
    """(n, K) DL signature probabilities of pooled feature vectors (the prediction's numpy steps)."""
    pcs = reducer.transform(vectors)
    return sig.predict_proba(pcs[:, [reducer.names.index(c) for c in sig.columns]])


def _fusion(
    config: TrainConfig, probs: list[np.ndarray], y: np.ndarray, groups: np.ndarray
) -> MulticlassFusion:
    return fit_multiclass_fusion(
        config.model.fusion,
        probs,
        y,
        list(config.task.classes),
        ["rad", "dl"],
        groups=groups,
        cv=min(5, config.split.folds),
        seed=config.seed,
    )


def fit_multiclass_dlr(
    config: TrainConfig,
    cohort: TrainingCohort,
    work: Path,
    log: Log,
    *,
    record: dict[str, Any],
    map_fn: MapFunction | None = None,
) -> MulticlassRun:
    """Out-of-fold Rad / DL / DLR probabilities, the fusion, the rule and the final models.

    Args:
        config: the training configuration (``task.classes`` set, ``cnn.enabled``).
        cohort: its cohort (labels are class indices).
        work: the work folder (network checkpoints in ``work/cnn``).
        log: one line per step.
        record: the run's record (see :class:`multiclass_fit.MulticlassRun`).
        map_fn: where the crops are cut (``base.executor``); the folds run here, in turn.

    Returns:
        The run, ``oof_prob`` being the DLR's (the reported model).
    """
    started = time.time()
    fitter = CrossFitter(config, cohort, work, log, map_fn)
    crops = fitter.crops()
    fitter.init_state = fitter.initial_weights(crops)
    train, folds = cohort.plan.train, cohort.plan.folds
    deep_variants = sorted(set(config.contours.variants) | {"exact"})
    cases: list[np.ndarray] = []
    probs: dict[str, list[np.ndarray]] = {"rad": [], "dl": []}
    fold_of: list[np.ndarray] = []
    for k, fold in enumerate(folds):
        va = train[fold]
        tr = np.setdiff1d(train, va)
        log(f"K-class fold {k + 1}/{len(folds)}: {len(tr)} training, {len(va)} out-of-fold cases")
        net = fitter.train_network(f"fold{k + 1}", tr, crops).model()
        deep = fitter.deep_features(net, np.concatenate([tr, va]), deep_variants)
        rad = fit_rad_signature(config, cohort, tr)
        idx, p_rad = rad_exact_prob(cohort, rad, va)
        reducer, dl = fit_dl_signature(config, cohort, tr, deep)
        cases.append(idx)
        fold_of.append(np.full(len(idx), k))
        probs["rad"].append(p_rad)
        probs["dl"].append(dl_prob(reducer, dl, np.array([deep[(int(i), "exact")] for i in idx])))
    oof_cases = np.concatenate(cases)
    oof_fold = np.concatenate(fold_of)
    by_sig = {name: np.concatenate(p) for name, p in probs.items()}
    y = cohort.labels[oof_cases].astype(int)
    groups = cohort.groups[oof_cases]
    members = [by_sig["rad"], by_sig["dl"]]
    # the DLR's out-of-fold probabilities: its meta-model fitted on the other folds' rows
    dlr = np.zeros_like(by_sig["rad"])
    for k in range(len(folds)):
        out = oof_fold == k
        fus = _fusion(config, [m[~out] for m in members], y[~out], groups[~out])
        dlr[out] = fus.predict_proba([m[out] for m in members])
    by_sig["dlr"] = dlr
    fusion = _fusion(config, members, y, groups)
    log(f"K-class fusion ({config.model.fusion}) fitted on {len(y)} out-of-fold rows")
    log("final network and K-class signatures on all training cases")
    final_net = fitter.train_network("final", train, crops).model()
    final_deep = fitter.deep_features(final_net, np.arange(len(cohort.cases)), radiomics_variants(config))
    final_rad = fit_rad_signature(config, cohort, train)
    final_reducer, final_dl = fit_dl_signature(config, cohort, train, final_deep)
    cutoffs, search = decision_rule(config, y, dlr, log)
    return MulticlassRun(
        config=config,
        cohort=cohort,
        work=work,
        signature=final_rad,
        oof_prob=dlr,
        oof_cases=oof_cases,
        cutoffs=cutoffs,
        cutoff_search=search,
        record=record,
        elapsed_s=time.time() - started,
        by_signature=by_sig,
        dl_signature=final_dl,
        reducer=final_reducer,
        fusion=fusion,
        final_net=final_net,
        final_deep=final_deep,
        cnn_history=fitter.cnn_history,
    )


__all__ = ["SIGNATURES", "dl_prob", "fit_dl_signature", "fit_multiclass_dlr"]
