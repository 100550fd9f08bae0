#!/usr/bin/env python3
"""Does self-supervised pretraining on the training crops help the CNN (SimCLR, CPU)?

No pretrained ImageNet ResNet weights can be obtained here, and the network trained from scratch
reaches about 0.88-0.89 held-out. This pretrains the same grayscale ResNet with SimCLR
(``DLRPredictorLib.training.ssl``, which the trainer runs for ``cnn.pretrain``) on the lesion
crops of the TRAINING split only (labels unused; the held-out fold is never seen), then saves the
backbone for fine-tuning with ``cnn_margin.py --init out/exp/ssl_TAG.safetensors``.

Each view draws the exact or the ellipse crop of its case, so the contour variants are positives
of one another. The checkpoint goes to out/exp/ckpt_ssl_TAG and is resumed.

Usage: python scripts/experiments/ssl_pretrain.py --tag s96 --epochs 30

Backs: docs/EXPERIMENTS.md sections 7 and 9: SimCLR pretraining on the training crops
(kept as the `cnn.pretrain` option; the bundle rebuilt from it was not adopted).
"""

from __future__ import annotations

import argparse

from common import EXP_DIR, add_crop_arguments, load_cases, print_flush

VARIANTS = ["exact", "ellipse"]
SEED = 42


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="output names: out/exp/ssl_TAG.safetensors, ckpt_ssl_TAG")
    add_crop_arguments(ap, size=96)
    ap.add_argument("--epochs", type=int, default=30, help="pretraining epochs")
    ap.add_argument("--batch", type=int, default=128, help="cases per step (2 views each)")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (cosine schedule)")
    ap.add_argument("--temperature", type=float, default=0.2, help="NT-Xent temperature")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return ap.parse_args()


def main() -> None:
    """Pretrain and save the backbone."""
    args = parse_args()
    from DLRPredictorLib.deep.weights import WEIGHTS_FORMAT
    from DLRPredictorLib.inputs.crops import CropSpec
    from DLRPredictorLib.training import data as training_data
    from DLRPredictorLib.training.ssl import SslConfig, pretrain_simclr
    from safetensors.numpy import save_file

    cases, split = load_cases(VARIANTS)
    train = [c for c, s in zip(cases, split, strict=True) if s == "train"]
    spec = CropSpec(margin_fraction=args.margin, size=args.size, square=True)
    data = training_data.crops_array(train, VARIANTS, spec)
    print_flush(f"training crops {tuple(data.shape)} (labels unused)")
    cfg = SslConfig(
        input_size=args.size,
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        temperature=args.temperature,
        seed=SEED,
        num_threads=args.threads,
    )
    result = pretrain_simclr(data, cfg, checkpoint_dir=EXP_DIR / f"ckpt_ssl_{args.tag}", log=print_flush)
    out = EXP_DIR / f"ssl_{args.tag}.safetensors"
    save_file(result.state_dict, str(out),
              metadata={"format": WEIGHTS_FORMAT, "arch": "resnet18", "ssl": "simclr"})
    print_flush(f"backbone written to {out} (weights sha256 {result.digest()})")


if __name__ == "__main__":
    main()
