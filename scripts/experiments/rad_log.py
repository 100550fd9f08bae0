#!/usr/bin/env python3
"""Do Laplacian-of-Gaussian radiomics (sigma 1, 2, 3 px) add anything to the Original features?

Fits an L1 logistic regression (after standardisation, C = 0.05, 0.3, 1.0) on the exact contours
of the training split, once on the Original image features and once on Original + LoG, and prints
the held-out BUS-BRA AUC. No log transform of the features.

Input: out/exp/loge.npz (prepare_features.py with scripts/experiments/radiomics_log.yaml, exact
contours only); out/exp/orig.npz is only read to check that both caches hold the same cases.
Usage: python scripts/experiments/rad_log.py [--npz out/exp/loge.npz] [--orig out/exp/orig.npz]

Backs: docs/EXPERIMENTS.md section 2: no LoG image type in the bundle's radiomics (not adopted).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import EXP_DIR, check_same_cases, l1_logistic, print_flush, radiomics_matrix, split_masks

C_VALUES = (0.05, 0.3, 1.0)
LOG_PREFIX = "log-"  # pyradiomics names LoG features "log-sigma-<s>-mm-3D_<class>_<feature>"


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npz", type=Path, default=EXP_DIR / "loge.npz", help="Original + LoG cache")
    ap.add_argument("--orig", type=Path, default=EXP_DIR / "orig.npz", help="cache to check cases against")
    return ap.parse_args()


def main() -> None:
    """Fit both feature sets at every C and print the held-out AUCs."""
    from sklearn.metrics import roc_auc_score

    args = parse_args()
    data = np.load(args.npz)
    check_same_cases(data["ids"], np.load(args.orig)["ids"], f"{args.npz.name} vs {args.orig.name}")
    names = data["names"]
    y = data["labels"]
    train, test = split_masks(data["split"], data["dataset"])
    original = np.array([not n.startswith(LOG_PREFIX) for n in names])
    feature_sets = {"Original": original, "Original+LoG": np.ones(len(names), dtype=bool)}
    print_flush(f"{len(names)} features, {int(original.sum())} of them Original")

    x_train = radiomics_matrix(data, "exact", train)
    x_test = radiomics_matrix(data, "exact", test)
    for c in C_VALUES:
        for set_name, columns in feature_sets.items():
            model = l1_logistic(c)
            model.fit(x_train[:, columns], y[train])
            auc = roc_auc_score(y[test], model.predict_proba(x_test[:, columns])[:, 1])
            print_flush(f"{set_name:14s} C={c:<5} AUC {auc:.4f}")


if __name__ == "__main__":
    main()
