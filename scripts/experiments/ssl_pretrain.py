#!/usr/bin/env python3
"""Does self-supervised pretraining on the training crops help the CNN (SimCLR, CPU)?

No pretrained ImageNet weights can be obtained here, and the network trained from scratch reaches
about 0.88-0.89 held-out. This pretrains the same grayscale ResNet with SimCLR (Chen et al. 2020,
NT-Xent loss on two augmented views of every crop, a 2-layer projection head) on the lesion crops
of the TRAINING split only (labels unused; the held-out fold is never seen), then saves the
backbone for fine-tuning with ``cnn_margin.py --init out/exp/ssl_TAG.safetensors``.

Views: the trainer's own augmentation (``cnn_training._augment``: random resized crop, left-right
flip, gamma, contrast, noise), with a stronger crop scale; each epoch draws the exact or the
ellipse crop of each case for each view, so the contour variants are positives of one another.
Checkpoints (network, head, optimiser, epoch) go to out/exp/ckpt_ssl_TAG and are resumed.

Usage: python scripts/experiments/ssl_pretrain.py --tag s96 --epochs 30
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

from common import EXP_DIR, add_crop_arguments, load_cases, print_flush, use_library

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


def nt_xent(z1, z2, temperature: float):
    """SimCLR's loss: each view must pick its partner among the 2N - 1 other views."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def main() -> None:
    """Pretrain and save the backbone."""
    args = parse_args()
    use_library()
    import torch
    from DLRPredictorLib import deep_features, training_data
    from DLRPredictorLib.cnn_training import CnnTrainConfig, _augment, _zscore_batch
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    cases, split = load_cases(VARIANTS)
    train = [c for c, s in zip(cases, split, strict=True) if s == "train"]
    spec = deep_features.CropSpec(margin_fraction=args.margin, size=args.size, square=True)
    data = torch.from_numpy(training_data.crops_array(train, VARIANTS, spec))
    print_flush(f"training crops {tuple(data.shape)} (labels unused)")

    view_cfg = replace(CnnTrainConfig(input_size=args.size), rrc_scale=(0.35, 1.0))
    torch.manual_seed(SEED)
    net = deep_features.build_resnet("resnet18", num_classes=2, in_channels=1)
    nn = torch.nn
    head = nn.Sequential(nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Linear(512, 128))
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4, foreach=True)
    ckpt = EXP_DIR / f"ckpt_ssl_{args.tag}" / "last.pt"
    start_epoch = 0
    if ckpt.is_file():  # our own checkpoint, written below by this script
        state = torch.load(ckpt, weights_only=True)
        net.load_state_dict(state["net"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        start_epoch = int(state["epoch"]) + 1
        print_flush(f"resumed after epoch {start_epoch}")

    def backbone(x):
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        return torch.flatten(net.avgpool(x), 1)

    n = data.shape[0]
    steps = n // args.batch
    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * epoch / args.epochs))
        for group in opt.param_groups:
            group["lr"] = lr
        gen = torch.Generator().manual_seed(SEED * 1000 + epoch)
        order = torch.randperm(n, generator=gen)
        net.train()
        head.train()
        total = 0.0
        for s in range(steps):
            idx = order[s * args.batch : (s + 1) * args.batch]
            views = []
            for _ in range(2):
                variant = torch.randint(len(VARIANTS), (idx.numel(),), generator=gen)
                x = data[idx, variant].unsqueeze(1)
                views.append(_zscore_batch(_augment(x, view_cfg, gen)))
            loss = nt_xent(head(backbone(views[0])), head(backbone(views[1])), args.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        state = {"net": net.state_dict(), "head": head.state_dict(), "opt": opt.state_dict(), "epoch": epoch}
        torch.save(state, ckpt)
        print_flush(f"epoch {epoch + 1}/{args.epochs}: loss {total / steps:.4f}, lr {lr:.2e}, "
                    f"{time.time() - t0:.0f} s")
    out = EXP_DIR / f"ssl_{args.tag}.safetensors"
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(out),
              metadata={"format": deep_features.WEIGHTS_FORMAT, "arch": "resnet18", "ssl": "simclr"})
    print_flush(f"backbone written to {out}")


if __name__ == "__main__":
    main()
