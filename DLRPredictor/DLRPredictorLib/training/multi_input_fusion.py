"""The models of a multi-input bundle, one per combination of inputs, on out-of-fold scores.

Every input's run gives each of its training cases out-of-fold Rad (and DL) probabilities from
models that never saw the case's patient (the inputs share one patient-level fold plan). For each
combination of two or more inputs that holds every required input, the fusion code of a one-input
bundle (``models.fusion``: a stacking meta-learner or accuracy-weighted ensemble weights) learns
how to combine those probabilities across inputs, on the cases that have all of them, and its
cutoff is the Youden point of its scores there. A single input is answered by its own image-only
model (its bundle's DLR, or Rad without a CNN) with that bundle's cutoff.
"""

from __future__ import annotations

import itertools
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
    kind: str  # "input" or "fusion"
    members: list[str]
    fusion: Any  # StackingFusion / EnsembleFusion, None for an input model
    cutoff: float | None
    n_cases: int
    oof_auc: float | None  # AUC of its out-of-fold scores (the meta-learner in-sample for a fusion)

    def declaration(self) -> dict[str, Any]:
        """The model's entry of multi_input.json."""
        entry: dict[str, Any] = {"inputs": list(self.inputs), "kind": self.kind}
        if self.fusion is not None:
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
) -> list[SubsetModel]:
    """One model per combination of inputs (see the module notes).

    Args:
        runs: input name -> its finished training run (declaration order).
        labels: case id -> 0/1 label.
        required: the required inputs.
        fusion: "stacking" or "ensemble".
        stacking_inputs: what a stacking meta-learner reads ("probability" or "logit").
        folds, seed: recorded in the fusion spec (as in a one-input bundle).

    Raises:
        InputError: a combination whose cases lack one of the two classes.
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
            raise InputError(
                f"only {len(ids)} training cases have every input of {' + '.join(combo)} (need at least "
                f"10 with both classes) to learn their fusion"
            )
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
