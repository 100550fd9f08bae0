"""ComBat harmonisation by scanner on BUS-BRA: out-of-fold Rad AUC with and without it.

Backs: docs/EXPERIMENTS.md section 12 (ComBat). The BUS-BRA training split (official folds 1-4,
``out/manifests/busbra_train.csv`` with its ``device`` column), radiomics only, exact outlines,
the selection and classifier settings of ``configs/busbra_loso_rad.yaml``. Two fold schemes:
leave one scanner out (the held-out scanner is by construction unseen, so ComBat leaves its rows
as they are and harmonises only the training scanners) and 5 patient-grouped folds (every scanner
in every fold's training part). Each fold runs the trainer's own cross-fitting
(``training.crossfit.CrossFitter.out_of_fold``): ComBat is fitted on the fold's training lesions
and applied to its validation rows. Prints one line per (scheme, harmonisation, scanner) and writes
``out/combat.work/combat_effect.csv``.

Run: .venv/bin/python scripts/experiments/combat_effect.py [--runs grouped5:none loso:combat ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time

import numpy as np
import pandas as pd
from common import ROOT, print_flush
from DLRPredictorLib.evaluation.subgroups import subgroup_rows
from DLRPredictorLib.features import radiomics as rf
from DLRPredictorLib.inputs import cohort_csv
from DLRPredictorLib.training import data as training_data
from DLRPredictorLib.training.config import HarmonisationConfig, load_config
from DLRPredictorLib.training.crossfit import CrossFitter
from DLRPredictorLib.training.run import TrainingCohort
from DLRPredictorLib.training.splits import plan_splits

MANIFEST = ROOT / "out" / "manifests" / "busbra_train.csv"
CONFIG = ROOT / "configs" / "busbra_loso_rad.yaml"
WORK = ROOT / "out" / "combat.work"
SHARED_CACHE = ROOT / "out" / "bundle.work" / "cache"
COLUMN = "device"


def load_cohort() -> tuple[list, np.ndarray, np.ndarray, list[str], dict]:
    """The BUS-BRA training cases (exact outlines) and their radiomics (cached)."""
    rows = cohort_csv.read_cohort_csv(
        MANIFEST,
        required=("case_id", "image", "mask", "label"),
        clinical_names=["age", "birads"],
        label_values={"malignant": 1, "benign": 0},
    )
    cases = [training_data.load_case(r, int(r.label), ["exact"], pixel_units=True, seed=42) for r in rows]
    cache = WORK / "cache"
    if not cache.exists() and SHARED_CACHE.exists():
        shutil.copytree(SHARED_CACHE, cache)  # a private copy: the run may append to it
    params = rf.load_parameters(CONFIG.parent / str(load_config(CONFIG).radiomics_parameters))
    names, rad = training_data.radiomics_table(cases, ["exact"], params, cache, jobs=1, log=print_flush)
    labels = np.array([c.label for c in cases])
    groups = np.array([c.patient_id for c in cases])
    return cases, labels, groups, names, rad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--runs",
        nargs="+",
        default=["grouped5:none", "grouped5:combat", "loso:combat", "loso:none"],
        choices=["grouped5:none", "grouped5:combat", "loso:none", "loso:combat"],
        help="fold scheme:harmonisation pairs, run in this order",
    )
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    base = load_config(CONFIG)
    cases, labels, groups, names, rad = load_cohort()
    devices = np.array([str(c.extra.get(COLUMN, "")).strip() for c in cases])
    out: list[dict] = []
    for run in args.runs:
        scheme, method = run.split(":")
        split = dataclasses.replace(
            base.split, fold_column=COLUMN if scheme == "loso" else None, folds=5, test_fraction=0.0
        )
        cfg = dataclasses.replace(
            base, split=split, harmonisation=HarmonisationConfig(method=method, batch_column=COLUMN)
        )
        plan = plan_splits(labels, groups, cfg, 0, devices if scheme == "loso" else None)
        cohort = TrainingCohort(cases, labels, groups, plan, names, rad)
        started = time.time()
        oof = CrossFitter(cfg, cohort, WORK / f"{scheme}_{method}", print_flush).out_of_fold(None)
        exact = oof.exact
        table = subgroup_rows(oof.y[exact], {"rad": oof.scores["rad"][exact]}, devices[oof.exact_cases])
        for row in table:
            row.update(scheme=scheme, harmonisation=method, seconds=round(time.time() - started))
            out.append(row)
            print_flush(
                f"{scheme} {method} {row.get('group')}: n={row.get('n')} auc={row.get('auc'):.3f} "
                f"({row.get('ci_low'):.3f}-{row.get('ci_high'):.3f})"
            )
        pd.DataFrame(out).to_csv(WORK / "combat_effect.csv", index=False)


if __name__ == "__main__":
    main()
