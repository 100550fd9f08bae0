#!/usr/bin/env python3
"""Fine-tuning an ImageNet backbone with the project's CNN training: BUS-BRA folds 1-4 -> fold 5.

Reads BUS-BRA directly (``5-fold-cv.csv``: official folds; fold 5 is the test fold), makes the
project's lesion crops (``inputs.crops``, margin 0.15) of the exact mask and of its moment-matched
ellipse (``inputs.contours.ellipse_mask``), and trains ``training.cnn.train_cnn_ensemble`` on folds
1-4 with both crops as variants (one drawn per case and epoch: 50/50), class-weighted loss, the
default augmentation (random resized crop, left-right flip, gamma, contrast, noise), AdamW with one
warm-up epoch then cosine decay, no inner validation (the last epoch is kept). Every seed and the
seed ensemble (the members' last feature maps averaged, ``deep.engines.EnsembleInference``) are
then applied with the numpy engine to fold 5's exact and ellipse crops, and the CNN head's
class-1 probability is scored: AUC with DeLong 95 % CI, and DeLong tests of the ensemble against
each seed.

Fold 5 has been looked at before by this project, so these are development estimates, not
held-out figures.

Usage: python scripts/experiments/finetune_backbone.py --arch efficientnet_lite0 --size 128 \
    --epochs 3 --seeds 3 [--schedule onecycle] [--validate-fold 4] [--data ../shared/data/BUS-BRA]
    [--threads 2] [--checkpoints DIR] [--crops-cache NPZ]

With ``--validate-fold K`` the networks train on the folds other than 5 and K and are scored on
fold K: a recipe choice made inside the training split, fold 5 untouched.

Backs: docs/EXPERIMENTS.md, "ImageNet backbones fine-tuned with the training code".
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="efficientnet_lite0")
    ap.add_argument("--init", default="imagenet", choices=["imagenet", "scratch"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--margin", type=float, default=0.15)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--freeze-epochs", type=int, default=0)
    ap.add_argument("--schedule", default="cosine", choices=["cosine", "onecycle"])
    ap.add_argument(
        "--validate-fold", type=int, default=None,
        help="train on the folds other than 5 and this one, score this one (fold 5 is not read)",
    )  # fmt: skip
    ap.add_argument("--crops-cache", type=Path, default=None, help="npz of the crops (made if absent)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "BUS-BRA")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "exp" / "finetune_backbone.json")
    ap.add_argument("--checkpoints", type=Path, default=None, help="per-epoch checkpoints (a rerun resumes)")
    return ap.parse_args()


def load_crops(data: Path, size: int, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 2, size, size) exact / ellipse crops, labels, official folds."""
    from DLRPredictorLib.inputs.contours import ellipse_mask
    from DLRPredictorLib.inputs.crops import CropSpec, crop_from_arrays
    from PIL import Image

    spec = CropSpec(margin_fraction=margin, size=size)
    with open(data / "5-fold-cv.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    crops, labels, folds = [], [], []
    for r in rows:
        image = np.asarray(Image.open(data / "Images" / f"{r['ID']}.png").convert("L"), dtype=np.float32)
        mask = np.asarray(Image.open(data / "Masks" / f"mask_{r['ID'][4:]}.png").convert("L")) > 0
        exact = crop_from_arrays(image, mask, None, spec)[0]
        ellipse = crop_from_arrays(image, ellipse_mask(mask), None, spec)[0]
        crops.append(np.stack([exact, ellipse]))
        labels.append(int(r["Pathology"] == "malignant"))
        folds.append(int(r["kFold"]))
    return np.stack(crops).astype(np.float32), np.array(labels), np.array(folds)


def main() -> None:
    """Train, score, print and save."""
    args = parse_args()
    from DLRPredictorLib.deep.deep_model import DeepModel
    from DLRPredictorLib.deep.engines import ensemble_tensors
    from DLRPredictorLib.evaluation.auc import auc_delong, delong_test
    from DLRPredictorLib.training.cnn import train_cnn_ensemble
    from DLRPredictorLib.training.cnn_config import CnnTrainConfig

    t0 = time.perf_counter()
    if args.crops_cache is not None and args.crops_cache.exists():
        cached = np.load(args.crops_cache)
        crops, labels, folds = cached["crops"], cached["labels"], cached["folds"]
    else:
        crops, labels, folds = load_crops(args.data, args.size, args.margin)
        if args.crops_cache is not None:
            np.savez(args.crops_cache, crops=crops, labels=labels, folds=folds)
    if args.validate_fold is None:
        train, test = folds != 5, folds == 5
    else:  # a choice made inside the training split: fold 5 is neither trained on nor scored
        train, test = (folds != 5) & (folds != args.validate_fold), folds == args.validate_fold
    took = time.perf_counter() - t0
    print(f"crops: {len(labels)} cases ({train.sum()} train, {test.sum()} test), {took:.0f} s", flush=True)
    cfg = CnnTrainConfig(
        arch=args.arch, init=args.init, input_size=args.size, epochs=args.epochs, lr=args.lr,
        val_fraction=0.0, warmup_epochs=1, freeze_epochs=args.freeze_epochs, num_threads=args.threads,
        schedule=args.schedule,
    )  # fmt: skip
    t1 = time.perf_counter()
    log = lambda s: print(s, flush=True)  # noqa: E731
    result = train_cnn_ensemble(
        crops[train], labels[train], cfg, args.seeds, log=log, checkpoint_dir=args.checkpoints
    )
    train_s = time.perf_counter() - t1
    members = [result, *result.members]
    models = {f"seed{m}": DeepModel.from_state_dict(r.state_dict, args.arch) for m, r in enumerate(members)}
    states = [r.state_dict for r in members]
    models["ensemble"] = DeepModel.from_state_dict(ensemble_tensors(states), args.arch, members=len(states))
    y = labels[test]
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "train_seconds": round(train_s, 1)}
    for v, variant in enumerate(("exact", "ellipse")):
        x = crops[test][:, v]
        probs = {name: model.probabilities(x) for name, model in models.items()}
        seed_probs = [probs[f"seed{m}"] for m in range(len(members))]
        probs["mean_of_seed_probabilities"] = np.mean(seed_probs, axis=0)
        rows = {}
        for name, p in probs.items():
            res = auc_delong(y, p)
            rows[name] = {"auc": res.auc, "ci": [res.ci_low, res.ci_high]}
            if name.startswith("seed"):
                rows[name]["p_vs_ensemble"] = delong_test(y, probs["ensemble"], p).p
            ci = f"({res.ci_low:.3f}-{res.ci_high:.3f})"
            print(f"{variant:8s} {name:28s} AUC {res.auc:.3f} {ci}", flush=True)
        report[variant] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    total = time.perf_counter() - t0
    print(f"training {train_s:.0f} s for {len(members)} seeds; total {total:.0f} s; {args.out}")


if __name__ == "__main__":
    main()
