#!/usr/bin/env python3
"""Record the shipped bundle's predictions on a few real cases (DLRPredictor/Testing/Python/data).

test_shipped_bundle.py compares every future run with these values, so that an accidental change
to preprocessing, features or fusion is caught. Rerun this only when the bundle is rebuilt on
purpose.

After a deliberate rebuild of DLRPredictor/Resources/Models/BreastUS-Malignancy::

    .venv/bin/python scripts/pin_predictions.py --pin-digest [--data ../shared/data]

1. ``--pin-digest`` first checks every file of the new bundle against its manifest.json and writes
   the bundle's content digest into ``SHIPPED_BUNDLE_DIGESTS`` (bundle/trust.py); without it the
   new bundle is refused as "not the expected one" and no prediction can be recorded.
2. The predictions on CASES are written to Testing/Python/data/pinned_predictions.json, keyed by
   the sha256 of the bundle's manifest.json.

Commit the bundle, trust.py and pinned_predictions.json together. Each case's clinical record is
reduced to the variables the bundle declares (``inputs.clinical_variables`` of its manifest), so
the same CASES serve a bundle with or without, e.g., age.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "DLRPredictor" / "Testing" / "Python" / "data" / "pinned_predictions.json"
TRUST = ROOT / "DLRPredictor" / "DLRPredictorLib" / "bundle" / "trust.py"
# (dataset-relative image, mask, spacing_mm, clinical record of the dataset): benign and malignant
# from both datasets; an empty record predicts with the image-only model.
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


def declared_clinical(record: dict[str, str], variables: list[Any]) -> dict[str, str]:
    """The values of ``record`` that the bundle declares (its other values are not passed)."""
    names = {v.name for v in variables}
    return {name: value for name, value in record.items() if name in names}


def predict_all(data: Path) -> list[dict]:
    """The shipped bundle's answers on CASES (no heatmap, deterministic)."""
    from DLRPredictorLib.inference import predictor
    from DLRPredictorLib.inputs import images, lesion

    pred = predictor.load_predictor()
    out = []
    for image, mask, spacing, record in CASES:
        clinical = declared_clinical(record, pred.clinical_variables)
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


def pin_trust_digest() -> tuple[str, str]:
    """Write the shipped bundle's content digest into SHIPPED_BUNDLE_DIGESTS of bundle/trust.py.

    Every listed file is checked against its sha256 first (the digest is then that of the files
    as they are). Returns (old digest, new digest).
    """
    from DLRPredictorLib.bundle import trust, verify
    from DLRPredictorLib.inference import predictor

    root = predictor.default_bundle_path()
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    digest = trust.content_digest(manifest, {n: e["sha256"] for n, e in manifest["files"].items()})
    verify.verify_folder(root, None, check_versions=False, expected_digest=digest)
    text = TRUST.read_text(encoding="utf-8")
    entry = re.compile(rf'("{re.escape(root.name)}": ")([0-9a-f]{{64}})(")')
    found = entry.findall(text)
    if len(found) != 1:
        raise SystemExit(f"{TRUST} has {len(found)} SHIPPED_BUNDLE_DIGESTS entries for '{root.name}', not 1")
    TRUST.write_text(entry.sub(rf"\g<1>{digest}\g<3>", text), encoding="utf-8")
    trust.SHIPPED_BUNDLE_DIGESTS[root.name] = digest  # this process predicts with the new pin next
    return found[0][1], digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument(
        "--pin-digest",
        action="store_true",
        help="first write the rebuilt bundle's content digest into bundle/trust.py",
    )
    args = ap.parse_args()
    if args.pin_digest:
        old, new = pin_trust_digest()
        print(f"SHIPPED_BUNDLE_DIGESTS: {old} -> {new} ({TRUST})")
    OUT.write_text(
        json.dumps({"bundle_manifest_sha256": bundle_digest(), "cases": predict_all(args.data)}, indent=1)
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
