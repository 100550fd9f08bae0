#!/usr/bin/env python3
"""Is a weighted average of the radiomics and CNN logits better than either alone?

Radiomics model: L1 logistic regression (C = 0.3, standardised Original features, no log
transform) trained on the five contour variants of the training split (as in rad_variants.py).
CNN score: the logit of the probability saved by cnn_margin.py; with several CNN files, the mean of
their scaled logits. Each score is divided by its standard deviation on the training split's
exact contours, then fused as ``w * radiomics + (1 - w) * CNN`` for w = 0.5 ... 0.8, and the
held-out BUS-BRA AUC is printed for exact and ellipse test contours.

Caution: the weight is examined on the test fold itself, so the fused figures are optimistic.
They were only used to choose settings (crop margin, number of networks), never reported as
results; the bundle's fusion weights are fitted without the test fold.

Input: out/exp/orig.npz (prepare_features.py) and one or more out/exp/cnn_TAG.npz.
Usage: python scripts/experiments/fuse.py out/exp/cnn_m15s96.npz [out/exp/cnn_m30s96.npz ...]

Backs: docs/EXPERIMENTS.md sections 4-6: one CNN in the fusion (adopted), and the fused
figures of the weight-average and 128 px trials.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from common import (
    ALL_VARIANTS,
    EXP_DIR,
    check_same_cases,
    l1_logistic,
    logit,
    print_flush,
    radiomics_matrix,
    split_masks,
    stacked_training_set,
)

RAD_C = 0.3
WEIGHTS = (0.5, 0.6, 0.7, 0.8)
EVAL_VARIANTS = ("exact", "ellipse")


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cnn", type=Path, nargs="+", help="cnn_margin.py outputs (logits averaged)")
    ap.add_argument("--npz", type=Path, default=EXP_DIR / "orig.npz", help="prepare_features.py cache")
    return ap.parse_args()


def cnn_score(cnn_outputs: list[Mapping[str, np.ndarray]], variant: str, rows: np.ndarray) -> np.ndarray:
    """Mean over the CNNs of their logits, each scaled by its std on the training exact crops."""
    scaled = []
    for out in cnn_outputs:
        train, _ = split_masks(out["split"], out["ds"])
        scale = np.std(logit(out["P_exact"][train]))
        scaled.append(logit(out[f"P_{variant}"][rows]) / scale)
    return np.mean(scaled, axis=0)


def main() -> None:
    """Fit the radiomics model, fuse with the CNN scores and print the held-out AUCs."""
    from sklearn.metrics import roc_auc_score

    args = parse_args()
    data = np.load(args.npz)
    cnn_outputs = [np.load(path) for path in args.cnn]
    for path, out in zip(args.cnn, cnn_outputs, strict=True):
        check_same_cases(data["ids"], out["ids"], f"{args.npz.name} vs {path.name}")
    y = data["labels"]
    train, test = split_masks(data["split"], data["dataset"])

    rad = l1_logistic(RAD_C)
    rad.fit(*stacked_training_set(data, ALL_VARIANTS, train))
    rad_scale = np.std(rad.decision_function(radiomics_matrix(data, "exact", train)))

    print_flush(
        f"CNN: {', '.join(p.name for p in args.cnn)}; weight w of radiomics (chosen on the test fold)"
    )
    for variant in EVAL_VARIANTS:
        rad_z = rad.decision_function(radiomics_matrix(data, variant, test)) / rad_scale
        cnn_z = cnn_score(cnn_outputs, variant, test)
        cells = [f"rad {roc_auc_score(y[test], rad_z):.3f}", f"cnn {roc_auc_score(y[test], cnn_z):.3f}"]
        for w in WEIGHTS:
            cells.append(f"w={w} {roc_auc_score(y[test], w * rad_z + (1 - w) * cnn_z):.3f}")
        print_flush(f"{variant:8s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
