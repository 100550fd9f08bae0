#!/usr/bin/env python3
"""Write DLRPredictor manifests for the public datasets in ../shared/data (paths, not copies).

Outputs (in --out, default out/manifests):
  busbra_all.csv                  every BUS-BRA image (patient_id = Case, device, official 5-fold column)
  busbra_train.csv, busbra_test.csv   official fold --test-fold held out (patient-level)
  breast_all.csv                  BrEaST cases with a tumour mask (age, BI-RADS, spacing_mm)
  breast_train.csv, breast_test.csv   a patient-disjoint held-out part (seeded, stratified)
  combined_train.csv              busbra_train + breast_train (an earlier bundled model)
  busbra_train_breast_all.csv     busbra_train + every BrEaST case (the bundled model: BrEaST is
                                  its external cohort, split.external_dataset)
  breast_train_busbra_all.csv     breast_train + every BUS-BRA case (the reverse protocol: BUS-BRA
                                  external, breast_test the within-dataset held-out part)

Usage: python scripts/make_manifests.py [--data ../shared/data] [--out out/manifests] [--test-fold 5]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

COLUMNS = [
    "case_id",
    "image",
    "mask",
    "label",
    "patient_id",
    "spacing_mm",
    "age",
    "birads",
    "dataset",
    "device",
]


def busbra_rows(root: Path) -> list[dict[str, str]]:
    """BUS-BRA rows with the official 5-fold assignment in `fold`."""
    base = root / "BUS-BRA"
    with open(base / "5-fold-cv.csv", newline="") as f:
        folds = {r["ID"]: r["kFold"] for r in csv.DictReader(f)}
    rows = []
    with open(base / "bus_data.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append(
                {
                    "case_id": r["ID"],
                    "image": str((base / "Images" / f"{r['ID']}.png").resolve()),
                    "mask": str((base / "Masks" / f"mask_{r['ID'][4:]}.png").resolve()),
                    "label": r["Pathology"],
                    "patient_id": f"busbra-{r['Case']}",
                    "spacing_mm": "",
                    "age": "",
                    # BUS-BRA's BI-RADS is 2-5 without 4a/4b/4c; "4" means unspecified 4.
                    "birads": r["BIRADS"],
                    "dataset": "BUS-BRA",
                    "device": r["Device"],  # the scanner: `evaluate --group-column device`
                    "fold": folds[r["ID"]],
                }
            )
    return rows


def breast_rows(root: Path) -> list[dict[str, str]]:
    """BrEaST rows with a tumour mask; each case is its own patient (one image per patient)."""
    base = root / "BrEaST-Lesions-USG"
    rows = []
    with open(base / "clinical.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["Classification"] not in ("benign", "malignant") or not r["Mask_tumor_filename"]:
                continue
            age = r["Age"].strip()
            rows.append(
                {
                    "case_id": f"breast{int(r['CaseID']):03d}",
                    "image": str((base / "images_and_masks" / r["Image_filename"]).resolve()),
                    "mask": str(
                        (base / "images_and_masks" / r["Mask_tumor_filename"].split("&")[0]).resolve()
                    ),
                    "label": r["Classification"],
                    "patient_id": f"breast-{int(r['CaseID'])}",
                    "spacing_mm": repr(float(r["Pixel_size"]) * 10.0),
                    "age": age if age.replace(".", "", 1).isdigit() else "",
                    "birads": r["BIRADS"].strip(),
                    "dataset": "BrEaST",
                }
            )
    return rows


def write(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("out/manifests"))
    ap.add_argument("--test-fold", default="5", help="official BUS-BRA fold held out (1-5)")
    ap.add_argument("--breast-test-fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    bus = busbra_rows(args.data)
    write(args.out / "busbra_all.csv", bus)
    bus_train = [r for r in bus if r["fold"] != args.test_fold]
    bus_test = [r for r in bus if r["fold"] == args.test_fold]
    write(args.out / "busbra_train.csv", bus_train)
    write(args.out / "busbra_test.csv", bus_test)
    br = breast_rows(args.data)
    write(args.out / "breast_all.csv", br)
    rng = random.Random(args.seed)
    test_ids: set[str] = set()
    for label in ("benign", "malignant"):  # stratified by class
        ids = sorted(r["case_id"] for r in br if r["label"] == label)
        rng.shuffle(ids)
        test_ids.update(ids[: round(len(ids) * args.breast_test_fraction)])
    write(args.out / "breast_train.csv", [r for r in br if r["case_id"] not in test_ids])
    write(args.out / "breast_test.csv", [r for r in br if r["case_id"] in test_ids])
    write(args.out / "combined_train.csv", bus_train + [r for r in br if r["case_id"] not in test_ids])
    write(args.out / "combined_test.csv", bus_test + [r for r in br if r["case_id"] in test_ids])
    write(args.out / "busbra_train_breast_all.csv", bus_train + br)
    write(
        args.out / "breast_train_busbra_all.csv",
        [r for r in br if r["case_id"] not in test_ids] + bus_train + bus_test,
    )


if __name__ == "__main__":
    main()
