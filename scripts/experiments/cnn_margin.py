#!/usr/bin/env python3
"""How much context around the lesion (crop margin) and which input size suit the CNN?

Trains a grayscale ResNet from scratch (random initialisation) on lesion crops of the training
split with the trainer's own routine (DLRPredictorLib.training.cnn.train_cnn): each case gives an
exact-contour and an ellipse crop, one of which is drawn per epoch; 15 % of the training patients
are held out for early stopping on validation AUC. Then it prints the held-out BUS-BRA AUC of the
network's probability on exact and on ellipse crops, and saves for fuse.py
``out/exp/cnn_TAG.npz``: y, split, ds (dataset), ids, and per variant F_<v> (pooled features) and
P_<v> (malignancy probability) of every case. Checkpoints go to out/exp/ckpt_TAG; an existing
checkpoint there is resumed, so delete the folder to start over.

Usage: python scripts/experiments/cnn_margin.py --tag m15s96 --size 96 --margin 0.15 --epochs 16 --patience 5

Backs: docs/EXPERIMENTS.md sections 3, 5 and 6: crop margin 0.15 (adopted), the weight
average and the 128 px input (not adopted); it also trains the networks the other CNN scripts read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import EXP_DIR, add_crop_arguments, load_cases, print_flush, split_masks

VARIANTS = ["exact", "ellipse"]
BATCH_SIZE = 32
VAL_FRACTION = 0.15
SEED = 42


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="output names: out/exp/cnn_TAG.npz, out/exp/ckpt_TAG")
    add_crop_arguments(ap, size=128)
    ap.add_argument("--epochs", type=int, default=20, help="maximum epochs")
    ap.add_argument("--patience", type=int, default=6, help="epochs without improvement before stopping")
    ap.add_argument("--lr", type=float, default=0.002, help="peak AdamW learning rate")
    ap.add_argument("--arch", default="resnet18", help="ResNet architecture")
    ap.add_argument("--ema", type=float, default=0.0, help="weight moving-average decay (0: off)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--init", type=Path, default=None, help="initial weights (e.g. ssl_pretrain.py's)")
    return ap.parse_args()


def main() -> None:
    """Train, evaluate and save the CNN outputs."""
    args = parse_args()
    from DLRPredictorLib.inputs.crops import CropSpec
    from DLRPredictorLib.training import data as training_data
    from DLRPredictorLib.training.cnn import train_cnn
    from DLRPredictorLib.training.cnn_config import CnnTrainConfig
    from sklearn.metrics import roc_auc_score

    cases, split = load_cases(VARIANTS)
    y = np.array([c.label for c in cases])
    groups = np.array([c.patient_id for c in cases])
    dataset = np.array([c.dataset for c in cases])
    spec = CropSpec(margin_fraction=args.margin, size=args.size, square=True)
    crops = training_data.crops_array(cases, VARIANTS, spec)
    print_flush(f"crops {crops.shape}")

    train_rows = np.where(split == "train")[0]
    config = CnnTrainConfig(
        arch=args.arch,
        input_size=args.size,
        epochs=args.epochs,
        batch_size=BATCH_SIZE,
        lr=args.lr,
        patience=args.patience,
        val_fraction=VAL_FRACTION,
        seed=SEED,
        num_threads=args.threads,
        ema_decay=args.ema,
    )
    init_state = None
    if args.init is not None:
        from safetensors.numpy import load_file

        init_state = load_file(str(args.init))
        print_flush(f"initial weights from {args.init}")
    start = time.time()
    result = train_cnn(
        crops[train_rows],
        y[train_rows],
        config,
        checkpoint_dir=EXP_DIR / f"ckpt_{args.tag}",
        groups=groups[train_rows],
        log=print_flush,
        init_state=init_state,
    )
    print_flush(f"training {time.time() - start:.1f} s")

    model = result.model()
    _, test = split_masks(split, dataset)
    out = {"y": y, "split": split, "ds": dataset, "ids": np.array([c.case_id for c in cases])}
    for j, variant in enumerate(VARIANTS):
        features, probability = model.features_and_probabilities(crops[:, j])
        out[f"F_{variant}"] = features
        out[f"P_{variant}"] = probability
        auc = roc_auc_score(y[test], probability[test])
        print_flush(f"{variant}: CNN probability AUC on the BUS-BRA test fold {auc:.4f}")
    np.savez(EXP_DIR / f"cnn_{args.tag}.npz", **out)


if __name__ == "__main__":
    main()
