#!/usr/bin/env python3
"""Rad, DL and DLR of a K-class DLR bundle compared on one scored cohort (paired DeLong per class).

Reads the predictions CSV that `dlrpredictor evaluate` (or `predict`) wrote for a labelled cohort
with a K-class bundle trained with the network: its ``score_rad:<class>``, ``score_dl:<class>`` and
``score_dlr:<class>`` columns and the ``label`` column. Prints, per class, each signature's
one-vs-rest AUC and the paired DeLong test of DLR against Rad and against DL on the same cases, and
each signature's macro AUC (mean of the per-class AUCs). Nothing is chosen on these numbers.

Usage:
  python scripts/experiments/multiclass_signatures.py PREDICTIONS.csv \
      --classes "fibroadenoma,invasive ductal carcinoma,other"
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from DLRPredictorLib.evaluation.auc import delong_test

SIGNATURES = ("rad", "dl", "dlr")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", type=Path)
    ap.add_argument("--classes", required=True, help="the bundle's classes, in order, comma-separated")
    args = ap.parse_args()
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    with open(args.predictions, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("status", "ok") == "ok" and r.get("label")]
    y = np.array([classes.index(r["label"]) for r in rows])
    P = {s: np.array([[float(r[f"score_{s}:{c}"]) for c in classes] for r in rows]) for s in SIGNATURES}
    print(f"{len(rows)} cases; per class: {np.bincount(y, minlength=len(classes)).tolist()}")
    macro = {s: [] for s in SIGNATURES}
    for k, name in enumerate(classes):
        yk = (y == k).astype(int)
        vs_rad = delong_test(yk, P["dlr"][:, k], P["rad"][:, k])
        vs_dl = delong_test(yk, P["dlr"][:, k], P["dl"][:, k])
        aucs = {"rad": vs_rad.auc_b, "dl": vs_dl.auc_b, "dlr": vs_rad.auc_a}
        for s in SIGNATURES:
            macro[s].append(aucs[s])
        print(
            f"{name} vs rest: Rad {aucs['rad']:.3f}, DL {aucs['dl']:.3f}, DLR {aucs['dlr']:.3f}; "
            f"DLR - Rad p = {vs_rad.p:.3g}, DLR - DL p = {vs_dl.p:.3g} (paired DeLong)"
        )
    print("macro AUC: " + ", ".join(f"{s.upper()} {np.mean(v):.3f}" for s, v in macro.items()))


if __name__ == "__main__":
    main()
