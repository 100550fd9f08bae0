#!/usr/bin/env python3
"""Record the shipped bundle's predictions on a few real cases (DLRPredictor/Testing/Python/data).

test_shipped_bundle.py compares every future run with these values, so that an accidental change
to preprocessing, features or fusion is caught. Rerun this only when the bundle is rebuilt on
purpose: python scripts/pin_predictions.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "DLRPredictor" / "Testing" / "Python" / "data" / "pinned_predictions.json"
# (dataset-relative image, mask, spacing_mm, clinical): benign and malignant from both datasets.
CASES = [
    ("BUS-BRA/Images/bus_0001-l.png", "BUS-BRA/Masks/mask_0001-l.png", None, {}),
    ("BUS-BRA/Images/bus_0002-l.png", "BUS-BRA/Masks/mask_0002-l.png", None, {}),
    ("BUS-BRA/Images/bus_0010-l.png", "BUS-BRA/Masks/mask_0010-l.png", None, {}),
    (
        "BrEaST-Lesions-USG/images_and_masks/case001.png",
        "BrEaST-Lesions-USG/images_and_masks/case001_tumor.png",
        0.078125,
        {"age": "57", "birads": "2"},
    ),
    (
        "BrEaST-Lesions-USG/images_and_masks/case010.png",
        "BrEaST-Lesions-USG/images_and_masks/case010_tumor.png",
        None,
        {},
    ),
]


def predict_all(data: Path) -> list[dict]:
    """The shipped bundle's answers on CASES (no heatmap, deterministic)."""
    from DLRPredictorLib.inference import predictor
    from DLRPredictorLib.inputs import images, lesion

    pred = predictor.load_predictor()
    out = []
    for image, mask, spacing, clinical in CASES:
        volume = images.read_image(data / image, spacing_mm=spacing)
        m = lesion.read_mask(data / mask, volume)
        res = pred.predict(volume, m, clinical, heatmap=False, case=Path(image).stem)
        out.append(
            {
                "image": image,
                "mask": mask,
                "spacing_mm": spacing,
                "clinical": clinical,
                "probability": res.probability,
                "scores": res.signature_scores,
                "model_used": res.model_used,
            }
        )
    return out


def bundle_digest() -> str:
    """sha256 of the shipped bundle's manifest.json (it lists every file's sha256)."""
    from DLRPredictorLib.inference import predictor

    return hashlib.sha256((predictor.default_bundle_path() / "manifest.json").read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    OUT.write_text(
        json.dumps({"bundle_manifest_sha256": bundle_digest(), "cases": predict_all(args.data)}, indent=1)
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
