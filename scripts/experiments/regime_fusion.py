"""Fusion by contour regime, judged on the out-of-fold scores of a training run only.

Reads a training run's work folder (``oof_scores.csv``: exact and ellipse rows of every training
lesion; ``cache/radiomics_*.jsonl``: their shape2D features) and the training manifest (patient
ids), and compares by patient-grouped 5-fold cross-validation over those rows (no held-out or
external image is read):

- pooled: one stacking meta-learner on the exact and ellipse rows together;
- per regime: one meta-learner on the exact rows, one on the ellipse rows, applied by row type;
- gate: the meta-learner of the exact rows, handed to the DL signature alone as the outline's
  detail vanishes (models/contour_gate.py, thresholds from the training fold's rows);
- quality: one meta-learner with the outline detail and its products with the members' log-odds.

Usage:
  .venv/bin/python scripts/experiments/regime_fusion.py out/lite0.work \
      out/manifests/busbra_train_breast_all.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "DLRPredictor"))

from DLRPredictorLib.models.contour_gate import GATE_COLUMNS, gate_thresholds, outline_detail


def shape_detail(work: Path, keys: set[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """Outline detail of the (case, variant) rows ``keys`` from the run's radiomics cache."""
    out: dict[tuple[str, str], float] = {}
    for path in sorted((work / "cache").glob("radiomics_*.jsonl")):
        for line in path.open():
            rec = json.loads(line)
            case, variant = rec["key"].split("|")[:2]
            if (case, variant) in keys:
                f = rec["features"]
                out[(case, variant)] = float(outline_detail(*(np.array([f[c]]) for c in GATE_COLUMNS))[0])
    return out


def main() -> None:
    from scipy.special import logit
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("manifest")
    args = ap.parse_args()
    patients = {r["case_id"]: r["patient_id"] for r in csv.DictReader(open(args.manifest))}
    rows = list(csv.DictReader(open(args.work / "oof_scores.csv")))
    case = np.array([r["case_id"] for r in rows])
    var = np.array([r["variant"] for r in rows])
    y = np.array([int(r["label"]) for r in rows])
    eps = 1e-6
    lr_ = logit(np.clip([float(r["score_rad"]) for r in rows], eps, 1 - eps))
    ld = logit(np.clip([float(r["score_dl"]) for r in rows], eps, 1 - eps))
    detail_of = shape_detail(args.work, set(zip(case, var, strict=True)))
    d = np.array([detail_of[(c, v)] for c, v in zip(case, var, strict=True)])
    groups = np.array([patients[c] for c in case])
    ex = var == "exact"
    for name, sel in (("exact", ex), ("ellipse", ~ex)):
        pct = np.round(np.percentile(d[sel], [1, 5, 50, 95, 99]), 3)
        print(f"outline detail, {name} rows: 1/5/50/95/99 % {pct}")
    both = np.column_stack([lr_, ld])
    quality = np.column_stack([lr_, ld, d * lr_, d * ld, d])
    out = {k: np.zeros(len(y)) for k in ("pooled", "per regime", "gate", "quality")}

    def fit(X: np.ndarray, sel: np.ndarray) -> LogisticRegression:
        return LogisticRegression(C=1.0, max_iter=5000).fit(X[sel], y[sel])

    cv = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    for tr, te in cv.split(np.zeros(len(y)), y, groups):
        out["pooled"][te] = fit(both, tr).decision_function(both[te])
        out["quality"][te] = fit(quality, tr).decision_function(quality[te])
        for regime in (ex, ~ex):
            s = te[regime[te]]
            out["per regime"][s] = fit(both, tr[regime[tr]]).decision_function(both[s])
        low, high = gate_thresholds(d[tr[~ex[tr]]], d[tr[ex[tr]]])
        w = np.clip((d[te] - low) / (high - low), 0, 1)
        stacked = fit(both, tr[ex[tr]]).decision_function(both[te])
        out["gate"][te] = w * stacked + (1 - w) * ld[te]
    print(f"{'':12s} {'exact':>7s} {'ellipse':>7s}")
    for name, s in (("Rad", lr_), ("DL", ld), *out.items()):
        print(f"{name:12s} {roc_auc_score(y[ex], s[ex]):7.3f} {roc_auc_score(y[~ex], s[~ex]):7.3f}")
    for sel, label in ((ex, "exact"), (~ex, "ellipse"), (np.ones_like(ex), "pooled")):
        m = fit(both, sel)
        print(f"weights fitted on {label} rows: rad {m.coef_[0][0]:.2f} dl {m.coef_[0][1]:.2f}")


if __name__ == "__main__":
    main()
