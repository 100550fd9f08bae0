#!/usr/bin/env python3
"""Per-case signature scores of a bundle on a manifest, with the exact and the ellipse contour.

For every case of the manifest the bundle predicts twice, image only (no clinical values): on the
manifest's mask and on its moment-matched ellipse (``inputs.contours.ellipse_mask``), the two
contour regimes the model cards report. The scores of every signature go to one CSV (case_id,
label, dataset, contour, one column per signature), so two bundles can be compared case by case
(paired DeLong) on the same images; ``--compare`` prints that comparison for two such files.

Usage:
    python scripts/experiments/score_bundle.py BUNDLE MANIFEST --out scores.csv
    python scripts/experiments/score_bundle.py --compare A.csv:DL B.csv:DL [--dataset BUS-BRA]

Backs: docs/EXPERIMENTS.md, "A DLR bundle on a fine-tuned EfficientNet-Lite0, trained on BUS-BRA alone".
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "DLRPredictor"))


def score(bundle: Path, manifest: Path, out: Path) -> None:
    """Write the per-case scores of ``bundle`` on ``manifest`` to ``out``."""
    from DLRPredictorLib.inference.predictor import load_predictor
    from DLRPredictorLib.inputs.contours import ellipse_mask
    from DLRPredictorLib.inputs.images import read_image

    predictor = load_predictor(bundle)
    rows = list(csv.DictReader(open(manifest, newline="", encoding="utf-8")))
    names = list(predictor.signature_names)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", "label", "dataset", "contour", *names])
        for n, r in enumerate(rows):
            volume = read_image(r["image"])
            mask = read_image(r["mask"]).array > 0
            for contour, m in (("exact", mask), ("ellipse", ellipse_mask(mask[0])[None])):
                p = predictor.predict(volume, m.astype(np.uint8), None, heatmap=False)
                scores = [p.signature_scores.get(k, float("nan")) for k in names]
                writer.writerow([r["case_id"], r["label"], r.get("dataset", ""), contour, *scores])
            if n % 50 == 0:
                print(f"{n + 1}/{len(rows)}", flush=True)
    tmp.replace(out)


def compare(a: str, b: str, dataset: str | None) -> None:
    """Paired DeLong of two score files' columns (``file:column``) on the cases both scored."""
    from DLRPredictorLib.evaluation.auc import auc_delong, delong_test

    def load(spec: str) -> dict[tuple[str, str], tuple[int, float, str]]:
        path, column = spec.rsplit(":", 1)
        out = {}
        for r in csv.DictReader(open(path, newline="", encoding="utf-8")):
            out[(r["case_id"], r["contour"])] = (
                int(r["label"] == "malignant"),
                float(r[column]),
                r["dataset"],
            )
        return out

    sa, sb = load(a), load(b)
    for contour in ("exact", "ellipse"):
        keys = sorted(
            k for k in sa if k in sb and k[1] == contour and (dataset is None or sa[k][2] == dataset)
        )
        y = np.array([sa[k][0] for k in keys])
        pa, pb = np.array([sa[k][1] for k in keys]), np.array([sb[k][1] for k in keys])
        ra, rb, t = auc_delong(y, pa), auc_delong(y, pb), delong_test(y, pa, pb)
        print(
            f"{contour:8s} n={len(keys)} ({y.sum()} positive)"
            f"  {a}: {ra.auc:.3f} ({ra.ci_low:.3f}-{ra.ci_high:.3f})"
            f"  {b}: {rb.auc:.3f} ({rb.ci_low:.3f}-{rb.ci_high:.3f})"
            f"  difference {ra.auc - rb.auc:+.3f}, p = {t.p:.3g}"
        )


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", type=Path)
    ap.add_argument("manifest", nargs="?", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", nargs=2, metavar="FILE:COLUMN")
    ap.add_argument("--dataset", default=None)
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare, args.dataset)
    else:
        score(args.bundle, args.manifest, args.out)


if __name__ == "__main__":
    main()
