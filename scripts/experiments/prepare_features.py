#!/usr/bin/env python3
"""Cache radiomics (and optionally lesion crops) of every case and contour variant for the experiments.

Reads the train and test manifests (see common.py), computes the radiomics of every (case, variant)
with the given pyradiomics parameters, using the trainer's on-disk cache (out/bundle.work/cache, so
a second run or the bundle build reuses them), and writes ``out/exp/TAG.npz`` with:

  names            feature names
  labels, groups   0/1 label (1 = malignant), patient id
  split            "train" / "test" (which manifest the case came from)
  dataset, ids     source dataset (BUS-BRA / BrEaST), case id
  age, birads      clinical values as read ("" when absent)
  R_<variant>      (cases, features) radiomics; NaN rows where the extraction failed
  C_<variant>      (cases, CROP_SIZE, CROP_SIZE) z-scored lesion crops (15 % margin), only when
                   CROP_SIZE is given

Usage:
  python scripts/experiments/prepare_features.py PARAMS_YAML VARIANTS TAG [CROP_SIZE] [--jobs N]
      [--manifest SPLIT=CSV ...]

e.g. ``... DLRPredictor/Resources/Models/BreastUS-Malignancy/radiomics.yaml
exact,ellipse,jitter,dilate2,erode2 orig 128``.

Backs: every radiomics experiment of docs/EXPERIMENTS.md (sections 1, 2, 5 and 8): it
writes the feature caches they read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import EXP_DIR, MANIFESTS, RADIOMICS_CACHE, load_cases, print_flush

CROP_MARGIN = 0.15


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", type=Path, help="pyradiomics parameter file (YAML or JSON)")
    ap.add_argument("variants", help="comma-separated contour variants, e.g. exact,ellipse,jitter")
    ap.add_argument("tag", help="output name: out/exp/TAG.npz")
    ap.add_argument(
        "crop_size", type=int, nargs="?", default=0, help="also store lesion crops of this size (px)"
    )
    ap.add_argument("--jobs", type=int, default=2, help="radiomics worker processes (default 2)")
    ap.add_argument(
        "--manifest",
        action="append",
        metavar="SPLIT=CSV",
        help="read these manifests instead of the combined train/test ones (repeatable), "
        "e.g. train=out/manifests/busbra_train.csv",
    )
    return ap.parse_args()


def crop_stack(cases: list, variant: str, size: int) -> np.ndarray:
    """(cases, size, size) float32 lesion crops of one variant."""
    from DLRPredictorLib.inputs.crops import CropSpec, lesion_crop

    spec = CropSpec(margin_fraction=CROP_MARGIN, size=size, square=True)
    crops = [lesion_crop(case.variants[variant], spec)[0] for case in cases]
    return np.stack(crops).astype(np.float32)


def main() -> None:
    """Compute and save the cache."""
    args = parse_args()
    variants = args.variants.split(",")
    from DLRPredictorLib.features import radiomics as radiomics_features
    from DLRPredictorLib.training import data as training_data

    params = radiomics_features.load_parameters(args.params)
    manifests = MANIFESTS
    if args.manifest:
        manifests = tuple((m.split("=", 1)[0], Path(m.split("=", 1)[1])) for m in args.manifest)
    cases, split = load_cases(variants, manifests=manifests)
    print_flush(f"{len(cases)} cases")

    start = time.time()
    names, table = training_data.radiomics_table(
        cases, variants, params, RADIOMICS_CACHE, jobs=args.jobs, log=print_flush
    )
    print_flush(f"radiomics {time.time() - start:.1f} s")

    out = {
        "names": np.array(names),
        "labels": np.array([c.label for c in cases]),
        "groups": np.array([c.patient_id for c in cases]),
        "split": split,
        "dataset": np.array([c.dataset for c in cases]),
        "ids": np.array([c.case_id for c in cases]),
        "age": np.array([c.clinical.get("age", "") for c in cases]),
        "birads": np.array([c.clinical.get("birads", "") for c in cases]),
    }
    missing = np.full(len(names), np.nan)
    for variant in variants:
        out["R_" + variant] = np.array([table.get((c.case_id, variant), missing) for c in cases])
    if args.crop_size:
        for variant in variants:
            out["C_" + variant] = crop_stack(cases, variant, args.crop_size)

    EXP_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(EXP_DIR / f"{args.tag}.npz", **out)
    print_flush(f"done {time.time() - start:.1f} s: {EXP_DIR / args.tag}.npz")


# The guard is required: radiomics_table starts spawned worker processes, which re-import this file.
if __name__ == "__main__":
    main()
