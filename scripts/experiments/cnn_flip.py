#!/usr/bin/env python3
"""Is a left-right flip at test time worth a second forward pass of the CNN?

Loads the kept (best-epoch) weights of a cnn_margin.py run from its checkpoint folder
``out/exp/ckpt_TAG``, predicts every case's exact and ellipse crop as is and flipped left-right
(never up-down: up is the skin), and prints the held-out BUS-BRA AUC of each and of the mean
logit. Saves ``out/exp/cnn_TAG_flip.npz`` in cnn_margin.py's layout (probability of the mean
logit, mean pooled features) for fuse.py.

Usage: python scripts/experiments/cnn_flip.py --tag m15s96e99 --size 96 --margin 0.15
(size and margin must be those the run was trained with).

Backs: docs/EXPERIMENTS.md section 5: no test-time flip (not adopted).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from common import EXP_DIR, load_cases, logit, print_flush, split_masks

VARIANTS = ["exact", "ellipse"]


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="the cnn_margin.py run (out/exp/ckpt_TAG)")
    ap.add_argument("--size", type=int, default=96, help="crop side the run was trained on (px)")
    ap.add_argument("--margin", type=float, default=0.15, help="crop margin the run was trained on")
    ap.add_argument("--arch", default="resnet18", help="ResNet architecture of the run")
    return ap.parse_args()


def main() -> None:
    """Predict plain and flipped crops; print and save the AUCs."""
    args = parse_args()
    from DLRPredictorLib.deep.deep_model import DeepModel
    from DLRPredictorLib.inputs.crops import CropSpec
    from DLRPredictorLib.training import data as training_data
    from safetensors.numpy import load_file
    from sklearn.metrics import roc_auc_score

    folder = EXP_DIR / f"ckpt_{args.tag}"
    record = json.loads((folder / "checkpoint.json").read_text())
    tensors = load_file(str(folder / record["weights_file"]))
    best = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
    model = DeepModel.from_state_dict(best, args.arch)

    cases, split = load_cases(VARIANTS)
    y = np.array([c.label for c in cases])
    dataset = np.array([c.dataset for c in cases])
    spec = CropSpec(margin_fraction=args.margin, size=args.size, square=True)
    crops = training_data.crops_array(cases, VARIANTS, spec)
    _, test = split_masks(split, dataset)
    out = {"y": y, "split": split, "ds": dataset, "ids": np.array([c.case_id for c in cases])}
    for j, variant in enumerate(VARIANTS):
        plain_f, plain_p = model.features_and_probabilities(crops[:, j])
        flip_f, flip_p = model.features_and_probabilities(np.ascontiguousarray(crops[:, j, :, ::-1]))
        mean_p = 1.0 / (1.0 + np.exp(-(logit(plain_p) + logit(flip_p)) / 2))
        aucs = [roc_auc_score(y[test], p[test]) for p in (plain_p, flip_p, mean_p)]
        print_flush(f"{variant:8s} plain {aucs[0]:.4f}  flipped {aucs[1]:.4f}  mean logit {aucs[2]:.4f}")
        out[f"P_{variant}"] = mean_p
        out[f"F_{variant}"] = (plain_f + flip_f) / 2
    np.savez(EXP_DIR / f"cnn_{args.tag}_flip.npz", **out)


if __name__ == "__main__":
    main()
