#!/usr/bin/env python3
"""Per-crop time of each backbone's numpy engine against the same network in torch, side by side.

One crop at a time on one thread (BLAS for numpy, torch's intra-op pool for torch), as a prediction
runs it: the numpy engine's ``trunk`` + ``head`` against torch's eval-mode forward of the same
weights (random initialisation; the time does not depend on the values). The rounds alternate
numpy and torch so that load from other processes falls on both; the table gives medians and the
numpy / torch ratio. No target: the prediction targets are those of bench_predict.py and
bench_ratio.py; this table says what a backbone costs there.

Usage: .venv/bin/python benchmarks/bench_backbones.py [--size 96] [--repeats 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from benchcommon import machine_line, median, print_table


def main() -> int:
    """Time every backbone and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=96, help="crop side (px)")
    ap.add_argument("--repeats", type=int, default=15, help="alternating rounds per backbone")
    ap.add_argument("--arch", nargs="*", default=None, help="backbones (default: all)")
    args = ap.parse_args()
    import torch
    from DLRPredictorLib.base.thread_limits import BLAS_ONE_THREAD
    from DLRPredictorLib.deep.backbones import ARCHITECTURES
    from DLRPredictorLib.deep.deep_model import DeepModel, build_resnet

    torch.set_num_threads(1)
    crop = np.random.default_rng(0).normal(size=(1, 1, args.size, args.size)).astype(np.float32)
    rows = []
    for arch in args.arch or ARCHITECTURES:
        torch.manual_seed(0)
        net = build_resnet(arch, 2, 1).eval()
        engine = DeepModel(net, arch).engine
        x = torch.from_numpy(crop)
        numpy_s, torch_s = [], []
        with BLAS_ONE_THREAD.held(), torch.no_grad():
            engine.head(engine.trunk(crop))  # warm-up of both
            net(x)
            for _ in range(args.repeats):
                t = time.perf_counter()
                engine.head(engine.trunk(crop))
                numpy_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                net(x)
                torch_s.append(time.perf_counter() - t)
        n, tt = median(numpy_s), median(torch_s)
        rows.append([arch, f"{n * 1000:.1f}", f"{tt * 1000:.1f}", f"{n / tt:.2f}"])
    print(machine_line())
    print(f"one {args.size} px crop, one thread, medians of {args.repeats} alternating rounds")
    print_table(["backbone", "numpy ms", "torch ms", "numpy / torch"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
