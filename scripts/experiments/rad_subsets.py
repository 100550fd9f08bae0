#!/usr/bin/env python3
"""Which contour variants should the radiomics model of a fused DLR signature train on?

rad_variants.py chose the five variants (exact, ellipse, jitter, dilate2, erode2) for a radiomics
model used alone. Fused with a CNN, the rough-contour robustness can come from the network, so
the radiomics model may not need the ellipse rows, which cost it accuracy on exact outlines. This
trains the L1 logistic radiomics model (C = 0.1, 0.3, 1.0; with and without the signed-log
transform) on several variant sets and prints, on the held-out BUS-BRA fold, its AUC alone and
the best AUC of ``w * radiomics + (1 - w) * CNN`` over w = 0.30 ... 0.90 (scores scaled as in
fuse.py), for exact and ellipse test contours.

Caution: as in fuse.py the weight is chosen on the test fold, so the fused figures are
optimistic; they only compare variant sets with one another.

Input: out/exp/orig.npz (prepare_features.py) and one out/exp/cnn_TAG.npz (cnn_margin.py).
Usage: python scripts/experiments/rad_subsets.py out/exp/cnn_m15s96e99.npz

Backs: docs/EXPERIMENTS.md section 8: which contour variants train the Rad signature of a
fused bundle (`contours.radiomics_variants`; the shipped bundle keeps all five).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import (
    ALL_VARIANTS,
    EXP_DIR,
    check_same_cases,
    l1_logistic,
    print_flush,
    radiomics_matrix,
    split_masks,
    stacked_training_set,
)
from fuse import cnn_score

TRAIN_SETS = (
    ALL_VARIANTS,
    ["exact", "ellipse"],
    ["exact"],
    ["exact", "jitter"],
    ["exact", "jitter", "dilate2", "erode2"],
)
C_VALUES = (0.1, 0.3, 1.0)
WEIGHTS = np.round(np.arange(0.30, 0.901, 0.05), 2)
EVAL_VARIANTS = ("exact", "ellipse")


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cnn", type=Path, help="a cnn_margin.py output")
    ap.add_argument("--npz", type=Path, default=EXP_DIR / "orig.npz", help="prepare_features.py cache")
    return ap.parse_args()


def main() -> None:
    """Fit the radiomics model on every variant set and print its held-out and fused AUCs."""
    from sklearn.metrics import roc_auc_score

    args = parse_args()
    data = np.load(args.npz)
    cnn = np.load(args.cnn)
    check_same_cases(data["ids"], cnn["ids"], f"{args.npz.name} vs {args.cnn.name}")
    y = data["labels"]
    train, test = split_masks(data["split"], data["dataset"])
    cnn_z = {v: cnn_score([cnn], v, test) for v in EVAL_VARIANTS}
    cnn_aucs = ", ".join(f"{v} {roc_auc_score(y[test], cnn_z[v]):.3f}" for v in cnn_z)
    print_flush(f"CNN {args.cnn.name}: {cnn_aucs}")
    print_flush("trained on | log | C | radiomics exact / ellipse | fused exact (w) / ellipse (w)")
    for variants in TRAIN_SETS:
        for log in (False, True):
            x_train, y_train = stacked_training_set(data, variants, train, log)
            for c in C_VALUES:
                rad = l1_logistic(c).fit(x_train, y_train)
                scale = np.std(rad.decision_function(radiomics_matrix(data, "exact", train, log)))
                alone, fused = [], []
                for v in EVAL_VARIANTS:
                    rad_z = rad.decision_function(radiomics_matrix(data, v, test, log)) / scale
                    alone.append(f"{roc_auc_score(y[test], rad_z):.3f}")
                    auc, w = max((roc_auc_score(y[test], w * rad_z + (1 - w) * cnn_z[v]), w) for w in WEIGHTS)
                    fused.append(f"{auc:.3f} ({w:.2f})")
                print_flush(f"{'+'.join(variants)} | {log} | {c} | {' / '.join(alone)} | {' / '.join(fused)}")


if __name__ == "__main__":
    main()
