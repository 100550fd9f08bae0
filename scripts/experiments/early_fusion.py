#!/usr/bin/env python3
"""Early (feature-level) fusion against the shipped late fusion, with the library's own signatures.

Every fused figure in this folder so far combined two scores (Rad and DL), and with the weight
chosen on the test fold itself none passed 0.944 on exact outlines. Early fusion is not bounded by
that ceiling: one signature (t-test, correlation pruning, LASSO, grid-searched logistic model:
``signatures.early_fusion``, the trainer's ``model.fusion: early``) chooses among the radiomics
features and the PCA components of the network's pooled features together.

This fits, on the training split, with the bundle's selection settings and seed:
- Rad: the radiomics signature on the five contour variants (as the trainer does);
- DL: PCA (``model.pca_components``) of the pooled features, then the DL signature;
- DLR early: one signature on the radiomics columns plus the PCA columns;
each optionally with the signed-log transform of the radiomics features, and prints the held-out
BUS-BRA AUC (exact and ellipse test outlines). Nothing is chosen on the test fold.

The network's features come from one cnn_margin.py output: a network trained on the whole training
split, so the training rows' features are in-sample, exactly as for the trainer's final signatures.
Those outputs hold the exact and ellipse crops only, so DL and DLR early train on those two
variants.

Usage: python scripts/experiments/early_fusion.py out/exp/cnn_m15s96e99.npz [--log]

Backs: docs/EXPERIMENTS.md section 10: late (stacking) fusion rather than early fusion, and
no signed-log transform in the library's signature (neither adopted).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import (
    ALL_VARIANTS,
    EXP_DIR,
    ROOT,
    check_same_cases,
    print_flush,
    radiomics_matrix,
    split_masks,
)

DL_VARIANTS = ("exact", "ellipse")
EVAL_VARIANTS = ("exact", "ellipse")


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cnn", type=Path, help="a cnn_margin.py output (pooled features F_exact, F_ellipse)")
    ap.add_argument("--npz", type=Path, default=EXP_DIR / "orig.npz", help="prepare_features.py cache")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "breastus_malignancy_resnet18.yaml")
    ap.add_argument("--log", action="store_true", help="signed-log transform of the radiomics features")
    return ap.parse_args()


def main() -> None:
    """Fit Rad, DL and early-fusion DLR on the training split; print their held-out AUCs."""
    import pandas as pd
    from DLRPredictorLib.models.signatures import DeepFeatureReducer, Signature, early_fusion
    from DLRPredictorLib.training.config import load_config
    from DLRPredictorLib.training.trainer import selection_settings
    from sklearn.metrics import roc_auc_score

    args = parse_args()
    data = np.load(args.npz)
    cnn = np.load(args.cnn)
    check_same_cases(data["ids"], cnn["ids"], f"{args.npz.name} vs {args.cnn.name}")
    names = [str(n) for n in data["names"]]
    y_all = data["labels"]
    groups_all = data["groups"]
    train, test = split_masks(data["split"], data["dataset"])
    # the bundle's selection settings and seed, read from its training configuration
    config = load_config(args.config)
    sel = selection_settings(config)

    def rad(variant: str, rows: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(radiomics_matrix(data, variant, rows, args.log), columns=names)

    def stacked(
        variants: tuple[str, ...] | list[str], rows: np.ndarray
    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        frame = pd.concat([rad(v, rows) for v in variants], ignore_index=True)
        n = len(variants)
        return frame, np.tile(y_all[rows], n), np.tile(groups_all[rows], n)

    kw = {"selection": sel, "cv": min(5, config.split.folds), "seed": config.seed}
    X, y, g = stacked(ALL_VARIANTS, train)
    rad_sig = Signature("Rad", names, config.model.rad_classifier, **kw).fit(X, y, groups=g)
    print_flush(f"Rad: {len(rad_sig.selected_features)} features, {rad_sig.best_params}")

    D = np.vstack([cnn[f"F_{v}"][train] for v in DL_VARIANTS])
    n_comp = config.model.pca_components
    reducer = DeepFeatureReducer(int(n_comp) if n_comp >= 1 else float(n_comp)).fit(D)
    Xd, yd, gd = stacked(DL_VARIANTS, train)
    both = pd.concat([Xd, reducer.transform_frame(D)], axis=1)
    dl_sig = Signature("DL", reducer.names, config.model.dl_classifier, **kw).fit(both, yd, groups=gd)
    early = early_fusion(names, reducer.names, **kw).fit(both, yd, groups=gd)
    chosen = early.selected_features
    n_dl = sum(c in reducer.names for c in chosen)
    print_flush(f"DLR early: {len(chosen)} features ({n_dl} deep), {early.best_params}")

    label = "signed log" if args.log else "no transform"
    print_flush(f"held-out BUS-BRA AUC ({args.cnn.name}, radiomics {label}):")
    for v in EVAL_VARIANTS:
        test_frame = pd.concat([rad(v, test), reducer.transform_frame(cnn[f"F_{v}"][test])], axis=1)
        yt = y_all[test]
        aucs = {s.name: roc_auc_score(yt, s.predict_proba(test_frame)) for s in (rad_sig, dl_sig, early)}
        print_flush(f"  {v:8s} " + "  ".join(f"{k} {a:.4f}" for k, a in aucs.items()))


if __name__ == "__main__":
    main()
