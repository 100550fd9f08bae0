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
then .venv/bin/python scripts/experiments/combat_effect.py --compare (paired tests, no refit)
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
    ap.add_argument("--compare", action="store_true", help="only the paired tests of the saved fold scores")
    args = ap.parse_args()
    if args.compare:
        for scheme in ("grouped5", "loso"):
            compare(scheme)
        return
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
        folder = WORK / f"{scheme}_{method}"  # the fold scores are kept there (oof_scores.csv)
        folder.mkdir(parents=True, exist_ok=True)
        oof = CrossFitter(cfg, cohort, folder, print_flush).out_of_fold(None)
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


def compare(scheme: str) -> None:
    """Paired tests of the Rad out-of-fold AUC with against without ComBat (same rows): DeLong
    (images independent) and Obuchowski's clustered test (images of a patient together)."""
    from DLRPredictorLib.evaluation.auc import delong_test
    from DLRPredictorLib.evaluation.clustered_auc import pairwise_obuchowski

    frames = {}
    for method in ("none", "combat"):
        path = WORK / f"{scheme}_{method}" / "oof_scores.csv"
        if not path.exists():
            print_flush(f"{scheme}: no {path}; run that configuration first")
            return
        oof = pd.read_csv(path)
        frames[method] = oof[oof["variant"] == "exact"].set_index("case_id")
    both = frames["none"].join(frames["combat"][["score_rad"]].add_suffix("_combat"), how="inner")
    rows = cohort_csv.read_cohort_csv(
        MANIFEST, clinical_names=None, label_values={"malignant": 1, "benign": 0}
    )
    patient = {r.case_id: r.patient_id or r.case_id for r in rows}
    device = {r.case_id: str(r.extra.get(COLUMN) or r.clinical.get(COLUMN) or "") for r in rows}
    parts = [("all", both)] + [(d, both[both.index.map(device) == d]) for d in sorted(set(device.values()))]
    for name, part in parts:
        y, a, b = part["label"].to_numpy(), part["score_rad_combat"].to_numpy(), part["score_rad"].to_numpy()
        if len(set(y)) < 2:
            continue
        t = delong_test(y, a, b)
        c = pairwise_obuchowski(y, {"combat": a, "none": b}, part.index.map(patient).to_numpy())[0]
        print_flush(
            f"{scheme} {name}: n={len(part)} combat-none {t.diff:+.3f} (DeLong se {t.se_diff:.3f}, "
            f"p={t.p:.2f}; clustered se {c.se_diff:.3f}, p={c.p:.2f})"
        )


if __name__ == "__main__":
    main()
