#!/usr/bin/env python3
"""Does training on perturbed contours make the radiomics model robust to a rough outline?

A user may draw a rough outline (an ellipse) instead of the exact lesion contour. This trains the
radiomics classifiers on the exact contours only, on exact + ellipse, and on all five contour
variants (exact, ellipse, jitter, dilate2, erode2; one training row per case and variant), and
reports the held-out BUS-BRA AUC when the test lesions are given by each evaluation variant.

Models: L1 logistic regression (C = 0.05, 0.3, 1.0; the number of non-zero coefficients is shown),
L2 logistic regression (C = 0.1), both after standardisation, and LightGBM (num_leaves 15, 31).
``--log`` applies sign(x) * log(1 + |x|) to the features first.

Input: out/exp/orig.npz from prepare_features.py (Original radiomics of the five variants).
Usage: python scripts/experiments/rad_variants.py [--log] [--npz out/exp/orig.npz]

Backs: docs/EXPERIMENTS.md section 1: the Rad signature trains on five contour variants
(adopted) and without the signed-log transform.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    ALL_VARIANTS,
    EXP_DIR,
    l1_logistic,
    l2_logistic,
    print_flush,
    radiomics_matrix,
    split_masks,
    stacked_training_set,
)

TRAIN_SETS = {
    "exact": ["exact"],
    "exact+ellipse": ["exact", "ellipse"],
    "5 variants": ALL_VARIANTS,
}
L1_C_VALUES = (0.05, 0.3, 1.0)
L2_C = 0.1
LGBM_LEAVES = (15, 31)


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npz", type=Path, default=EXP_DIR / "orig.npz", help="prepare_features.py cache")
    ap.add_argument("--log", action="store_true", help="signed-log transform of the features")
    ap.add_argument("--eval", default="exact,ellipse,jitter", help="comma-separated test variants")
    ap.add_argument("--max-iter", type=int, default=5000, help="iteration cap of the logistic models")
    return ap.parse_args()


def lightgbm_model(num_leaves: int) -> Any:
    """The LightGBM classifier of the experiment (single-threaded, fixed default seed)."""
    import lightgbm

    return lightgbm.LGBMClassifier(
        n_estimators=400,
        learning_rate=0.03,
        num_leaves=num_leaves,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.5,
        min_child_samples=20,
        verbose=-1,
        n_jobs=1,
    )


def candidate_models(max_iter: int) -> list[tuple[str, Any]]:
    """Fresh, unfitted (name, model) pairs of every model compared."""
    models: list[tuple[str, Any]] = [(f"L1 C={c}", l1_logistic(c, max_iter)) for c in L1_C_VALUES]
    models.append((f"L2 C={L2_C}", l2_logistic(L2_C, max_iter)))
    models.extend((f"LGBM leaves={n}", lightgbm_model(n)) for n in LGBM_LEAVES)
    return models


def nonzero_coefficients(model: Any) -> str:
    """Number of non-zero coefficients of a fitted linear pipeline, "-" for other models."""
    if not hasattr(model, "steps"):
        return "-"
    return str(int((model[-1].coef_ != 0).sum()))


def main() -> None:
    """Fit every model on every training set and print the held-out AUCs."""
    from sklearn.metrics import roc_auc_score

    args = parse_args()
    eval_variants = args.eval.split(",")
    data = np.load(args.npz)
    train, test = split_masks(data["split"], data["dataset"])
    y_test = data["labels"][test]
    print_flush(
        f"{args.npz.name}: {train.sum()} training, {test.sum()} test cases, "
        f"{len(data['names'])} features, signed log {'on' if args.log else 'off'}"
    )
    header = f"{'model':16s} {'trained on':14s} " + " ".join(f"{v:>8s}" for v in eval_variants)
    print_flush(header + "  non-zero")
    for set_name, train_variants in TRAIN_SETS.items():
        x_train, y_train = stacked_training_set(data, train_variants, train, args.log)
        for model_name, model in candidate_models(args.max_iter):
            model.fit(x_train, y_train)
            aucs = []
            for variant in eval_variants:
                x_test = radiomics_matrix(data, variant, test, args.log)
                aucs.append(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))
            cells = " ".join(f"{auc:8.3f}" for auc in aucs)
            print_flush(f"{model_name:16s} {set_name:14s} {cells}  {nonzero_coefficients(model):>8s}")


if __name__ == "__main__":
    main()
