"""The models of a multi-input bundle, one per combination of inputs, on out-of-fold scores.

Every input's run gives each of its training cases out-of-fold Rad (and DL) probabilities from
models that never saw the case's patient (the inputs share one patient-level fold plan). For each
combination of two or more inputs that holds every required input, on the cases that have all of
them:

- ``stacking`` / ``ensemble``: the late-fusion code of a one-input bundle (``models.fusion``: a
  stacking meta-learner or accuracy-weighted ensemble weights) learns how to combine those
  probabilities across inputs; its cutoff is the Youden point of its scores there;
- ``early``: one signature (``models.signatures.early_fusion``: selection and classifier) on the
  inputs' exact-contour radiomics side by side (columns ``NAME:feature``), cross-fitted on the
  shared folds for its out-of-fold scores and cutoff, then refitted on all of those cases. The
  inputs' deep features do not take part: only the final networks' features are kept, and they
  are not out of fold.

A single input is answered by its own image-only model (its bundle's DLR, or Rad without a CNN)
with that bundle's cutoff.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.errors import InputError
from .run import TrainingRun

#: The per-input signatures the fusion across inputs reads (the DLR is itself a fusion of these).
BASE_SIGNATURES = ("rad", "dl")


@dataclass
class SubsetModel:
    """The fitted model for one combination of inputs, with what the card reports of it."""

    inputs: tuple[str, ...]
    kind: str  # "input", "fusion" (stacking / ensemble) or "early"
    members: list[str]
    fusion: Any  # StackingFusion / EnsembleFusion, the early-fusion Signature, None for an input model
    cutoff: float | None
    n_cases: int
    oof_auc: float | None  # AUC of its out-of-fold scores (the meta-learner in-sample for a fusion)

    def declaration(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """The model's entry of multi_input.json (an early-fusion signature's arrays go to ``arrays``)."""
        entry: dict[str, Any] = {"inputs": list(self.inputs), "kind": self.kind}
        if self.kind == "early":
            from ..inference.pipeline import _signature_to

            prefix = "early/" + "+".join(self.inputs)
            entry.update(signature=_signature_to(prefix, self.fusion, arrays), cutoff=self.cutoff)
        elif self.fusion is not None:
            entry.update(members=list(self.members), fusion=self.fusion.to_spec(), cutoff=self.cutoff)
        entry["training"] = {"cases": self.n_cases, "oof_auc": self.oof_auc}
        return entry


def oof_by_case(run: TrainingRun) -> dict[str, dict[str, float]]:
    """Case id -> {signature: out-of-fold probability} on the exact contour."""
    out: dict[str, dict[str, float]] = {}
    exact = run.oof.exact
    for j, (i, _v) in enumerate(run.oof.pairs):
        if exact[j]:
            cid = run.cohort.cases[i].case_id
            out[cid] = {name: float(s[j]) for name, s in run.oof.scores.items()}
    return out


def combinations(names: list[str], required: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty combination of inputs that holds the required ones, in declaration order."""
    out = []
    for k in range(1, len(names) + 1):
        for combo in itertools.combinations(names, k):
            if all(r in combo for r in required):
                out.append(combo)
    return out


def fit_subset_models(
    runs: dict[str, TrainingRun],
    labels: dict[str, int],
    required: list[str],
    *,
    fusion: str,
    stacking_inputs: str,
    folds: int,
    seed: int,
    fold_of: dict[str, str] | None = None,
    groups: dict[str, str] | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> list[SubsetModel]:
    """One model per combination of inputs (see the module notes).

    Args:
        runs: input name -> its finished training run (declaration order).
        labels: case id -> 0/1 label.
        required: the required inputs.
        fusion: "stacking", "ensemble" or "early".
        stacking_inputs: what a stacking meta-learner reads ("probability" or "logit").
        folds, seed: recorded in the fusion spec (as in a one-input bundle).
        fold_of: case id -> shared fold (early fusion's cross-fitting).
        groups: case id -> patient id (early fusion's selection and grid search).
        log: where a combination left without a model is reported.

    A combination of two or more inputs that fewer than 10 training cases (or one class only)
    have in full gets no model: a case with those inputs is answered by the model of the largest
    combination of them that has one (``VerifiedMultiInputBundle.model_for``).
    """
    from ..evaluation.auc import auc_delong
    from ..evaluation.cutoff_metrics import youden_cutoff
    from ..models.fusion import EnsembleFusion, StackingFusion

    names = list(runs)
    oof = {n: oof_by_case(r) for n, r in runs.items()}
    models = []
    for combo in combinations(names, required):
        if len(combo) == 1:
            run = runs[combo[0]]
            image = "dlr" if "dlr" in run.oof.scores else "rad"
            s = oof[combo[0]]
            ids = sorted(s)
            y = np.array([labels[c] for c in ids])
            auc = float(auc_delong(y, np.array([s[c][image] for c in ids])).auc) if len(set(y)) == 2 else None
            models.append(SubsetModel(combo, "input", [f"{combo[0]}:{image}"], None, None, len(ids), auc))
            continue
        ids = sorted(set.intersection(*(set(oof[n]) for n in combo)))
        y = np.array([labels[c] for c in ids])
        if len(ids) < 10 or len(set(y.tolist())) < 2:
            # a case with these inputs is answered by the largest combination of them with a model
            log(
                f"no model for {' + '.join(combo)}: only {len(ids)} training cases have all of them "
                "(need at least 10 with both classes)"
            )
            continue
        if fusion == "early":
            models.append(_early(runs, combo, labels, fold_of=fold_of or {}, groups=groups or {}, seed=seed))
            continue
        members = [f"{n}:{s}" for n in combo for s in BASE_SIGNATURES if s in runs[n].signatures]
        sigs = [runs[m.partition(":")[0]].signatures[m.partition(":")[2]] for m in members]
        P = np.array([[oof[m.partition(":")[0]][c][m.partition(":")[2]] for m in members] for c in ids])
        label = " + ".join(combo)
        model: StackingFusion | EnsembleFusion
        if fusion == "stacking":
            model = StackingFusion(sigs, cv=folds, seed=seed, name=label, inputs=stacking_inputs)
        else:
            model = EnsembleFusion(sigs, cv=folds, seed=seed, name=label)
        fused = model.fit_meta(P, y).combine(P)
        models.append(
            SubsetModel(
                combo,
                "fusion",
                members,
                model,
                float(youden_cutoff(y, fused)),
                len(ids),
                float(auc_delong(y, fused).auc),
            )
        )
    return models


def early_table(
    runs: dict[str, TrainingRun], combo: tuple[str, ...]
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Columns ``NAME:feature`` of the inputs' radiomics side by side, and each case's row (exact
    contour; only the cases that have every input of ``combo``)."""
    columns = [f"{n}:{f}" for n in combo for f in runs[n].cohort.rad_names]
    per_input = []
    for n in combo:
        cohort = runs[n].cohort
        per_input.append({c.case_id: cohort.rad.get((c.case_id, "exact")) for c in cohort.cases})
    ids = sorted(set.intersection(*(set(k for k, v in p.items() if v is not None) for p in per_input)))
    return columns, {c: np.concatenate([p[c] for p in per_input]) for c in ids}


def _early(
    runs: dict[str, TrainingRun],
    combo: tuple[str, ...],
    labels: dict[str, int],
    *,
    fold_of: dict[str, str],
    groups: dict[str, str],
    seed: int,
) -> SubsetModel:
    """The early-fusion signature of a combination: cross-fitted on the shared folds, then final."""
    import pandas as pd

    from ..evaluation.auc import auc_delong
    from ..evaluation.cutoff_metrics import youden_cutoff
    from ..models.signatures import early_fusion
    from .crossfit import selection_settings

    config = runs[combo[0]].config
    columns, table = early_table(runs, combo)
    ids = list(table)
    y = np.array([labels[c] for c in ids])
    if len(ids) < 10 or len(set(y.tolist())) < 2:
        raise InputError(
            f"only {len(ids)} training cases have every input of {' + '.join(combo)} (need at least 10 "
            "with both classes) to learn their fusion"
        )
    X = pd.DataFrame(np.array([table[c] for c in ids]), columns=columns)
    g = np.array([groups.get(c, c) for c in ids])
    folds = np.array([fold_of.get(c, "") for c in ids])
    first = [c for c in columns if c.startswith(f"{combo[0]}:")]

    def signature() -> Any:
        return early_fusion(
            first,
            [c for c in columns if c not in set(first)],
            name=" + ".join(combo),
            classifier=config.model.rad_classifier,
            selection=selection_settings(config),
            grid=None if config.model.grid_search else {},
            cv=min(5, config.split.folds),
            seed=seed,
        )

    oof = np.full(len(ids), np.nan)
    for k in sorted(set(folds.tolist())):
        va = folds == k
        fitted = signature().fit(X[~va].reset_index(drop=True), y[~va], groups=g[~va])
        oof[va] = fitted.predict_proba(X[va].reset_index(drop=True))
    final = signature().fit(X, y, groups=g)
    return SubsetModel(
        combo,
        "early",
        [f"{n}:radiomics" for n in combo],
        final,
        float(youden_cutoff(y, oof)),
        len(ids),
        float(auc_delong(y, oof).auc),
    )
