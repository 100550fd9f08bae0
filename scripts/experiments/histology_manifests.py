#!/usr/bin/env python3
"""K-class manifests of BUS-BRA histology from the binary ones of scripts/make_manifests.py.

The label of every case becomes its histology (bus_data.csv), with the classes named on the
command line kept and every other histology grouped as ``--other`` (default "other"); the cases,
paths, patients and the official fold split are those of the input manifests.

Usage (defaults: fibroadenoma, invasive ductal carcinoma, other; folds 1-4 / fold 5):
  python scripts/experiments/histology_manifests.py [--data ../shared/data] \
      [--manifests out/manifests] [--out out/mc] [--keep "fibroadenoma,invasive ductal carcinoma"]
Writes OUT/busbra_histology_train.csv and OUT/busbra_histology_test.csv.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--manifests", type=Path, default=ROOT / "out" / "manifests")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "mc")
    ap.add_argument("--keep", default="fibroadenoma,invasive ductal carcinoma")
    ap.add_argument("--other", default="other")
    args = ap.parse_args()
    keep = [k.strip() for k in args.keep.split(",") if k.strip()]
    with open(args.data / "BUS-BRA" / "bus_data.csv", newline="") as f:
        histology = {r["ID"]: r["Histology"].strip() for r in csv.DictReader(f)}
    args.out.mkdir(parents=True, exist_ok=True)
    for part in ("train", "test"):
        with open(args.manifests / f"busbra_{part}.csv", newline="") as f:
            reader = csv.DictReader(f)
            rows, columns = list(reader), list(reader.fieldnames or [])
        for r in rows:
            h = histology[r["case_id"]]
            r["label"] = h if h in keep else args.other
        out = args.out / f"busbra_histology_{part}.csv"
        with open(out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        print(out, dict(Counter(r["label"] for r in rows)))


if __name__ == "__main__":
    main()
