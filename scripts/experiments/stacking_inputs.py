#!/usr/bin/env python3
"""Should the stacking meta-learner read the signatures' probabilities or their log-odds?

`dlrpredictor train` keeps the out-of-fold Rad and DL scores of every training row (case and
contour variant) in ``WORK/oof_scores.csv``. This fits the trainer's meta-learner (logistic
regression, C = 1) on probabilities and on log-odds, each on three sets of rows (every contour
variant; the exact outlines only; every variant but the ellipse), and prints for each:
- the coefficients and the implied weight of Rad on the standardised logit scale;
- the out-of-fold AUC on the exact rows, the ellipse rows and all rows (in-sample for the
  two-parameter meta-learner, which is what the trainer's cutoffs use too);
- with ``--heldout``, the held-out AUC of the same meta-learner applied to the bundle's Rad and
  DL scores of a `dlrpredictor evaluate` predictions file (columns score_rad, score_dl, label).

The choice between the two is made on the out-of-fold rows; the held-out lines only report.

Usage: python scripts/experiments/stacking_inputs.py out/bundle.work/oof_scores.csv \
           [--heldout out/eval/predictions.csv]

Backs: docs/EXPERIMENTS.md sections 8 and 9: the stacking meta-learner reads probabilities
on every row (`model.stacking_inputs`, `model.fusion_variants`; log-odds not adopted).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from common import logit, print_flush

INPUTS = ("probability", "logit")
ROW_SETS = {
    "all variants": lambda v: np.ones(len(v), bool),
    "exact": lambda v: (v == "exact").to_numpy(),
    "no ellipse": lambda v: (v != "ellipse").to_numpy(),
}


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("oof", type=Path, help="oof_scores.csv of a training work folder")
    ap.add_argument("--heldout", type=Path, action="append", default=[], help="evaluate predictions CSV")
    return ap.parse_args()


def meta_inputs(frame: pd.DataFrame, inputs: str) -> np.ndarray:
    """The two meta-learner inputs of each row: probabilities or their log-odds."""
    p = frame[["score_rad", "score_dl"]].to_numpy(float)
    return logit(p) if inputs == "logit" else p


def main() -> None:
    """Fit both meta-learners on the out-of-fold rows and print their AUCs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    args = parse_args()
    oof = pd.read_csv(args.oof)
    heldout = {path: pd.read_csv(path) for path in args.heldout}
    heldout = {p: f[f["status"] == "ok"] if "status" in f else f for p, f in heldout.items()}
    print_flush(f"{args.oof}: {len(oof)} out-of-fold rows, variants {sorted(oof['variant'].unique())}")
    for inputs, (rows_name, rows_of) in ((i, r) for i in INPUTS for r in ROW_SETS.items()):
        z = meta_inputs(oof, inputs)
        rows = rows_of(oof["variant"])
        meta = LogisticRegression(C=1.0, max_iter=5000, random_state=42).fit(z[rows], oof["label"][rows])
        coef = meta.coef_.ravel()
        # weight of Rad when both inputs are put on the standardised logit scale
        sd = logit(oof[["score_rad", "score_dl"]].to_numpy(float)).std(axis=0)
        scaled = coef * (sd if inputs == "logit" else 1.0)
        weight = scaled[0] / scaled.sum() if inputs == "logit" else float("nan")
        cells = [f"coef {coef[0]:.3f} {coef[1]:.3f}", f"Rad weight (logit scale) {weight:.2f}"]
        score = meta.decision_function(z)
        for variant in ("exact", "ellipse"):
            rows = (oof["variant"] == variant).to_numpy()
            cells.append(f"OOF {variant} {roc_auc_score(oof['label'][rows], score[rows]):.4f}")
        cells.append(f"OOF all {roc_auc_score(oof['label'], score):.4f}")
        for path, frame in heldout.items():
            held = meta.decision_function(meta_inputs(frame, inputs))
            cells.append(f"{path.parent.name}/{path.name} {roc_auc_score(frame['label'], held):.4f}")
        print_flush(f"{inputs:11s} {rows_name:12s} " + "; ".join(cells))


if __name__ == "__main__":
    main()
