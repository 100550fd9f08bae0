"""pyradiomics' own extractor over a cohort CSV, in one fresh process: the reference of bench_command.

Usage: ``python benchmarks/pyradiomics_alone.py COHORT.csv PARAMS.yaml FEATURES.json``

What a user needs to get the same radiomics features without DLRPredictor, and nothing more:
import SimpleITK, numpy and pyradiomics; build ``RadiomicsFeatureExtractor(PARAMS.yaml)``; then per
row of the cohort CSV (``case_id``, ``image``, ``mask`` columns, as ``dlrpredictor predict`` reads
them) read the picture with SimpleITK, convert RGB(A) to luminance with the BT.601 weights that
DLRPredictor uses (as float32, then float64: the 8-bit image itself overflows pyradiomics'
binning), read the mask and binarise it to the extractor's label, extract on the whole image, and
finally write every case's features to FEATURES.json. Pixel units (spacing 1), as the bundled
model. Imports nothing of DLRPredictorLib. Prints one JSON line of milestones (seconds since
the interpreter started running this file; the process start before it is the caller's to time).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import csv  # noqa: E402  (the milestones start before any import)
import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from radiomics.featureextractor import RadiomicsFeatureExtractor  # noqa: E402

#: ITU-R BT.601 luma weights, as DLRPredictorLib.inputs.images.LUMA_WEIGHTS.
LUMA = np.asarray((0.299, 0.587, 0.114), dtype=np.float64)


def grey_image(path: str) -> sitk.Image:
    """The picture as float64 luminance (RGB(A): BT.601 of RGB, alpha ignored), spacing 1."""
    image = sitk.ReadImage(path)
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() in (3, 4):
        array = (np.asarray(array[..., :3], dtype=np.float64) @ LUMA).astype(np.float32)
    return sitk.GetImageFromArray(np.asarray(array, dtype=np.float64))


def lesion_mask(path: str, reference: sitk.Image, label: int) -> sitk.Image:
    """The mask picture binarised to ``label`` (any non-zero colour component is lesion)."""
    mask = sitk.ReadImage(path)
    array = sitk.GetArrayFromImage(mask)
    if mask.GetNumberOfComponentsPerPixel() > 1:  # alpha left out, as for the image
        # Channel by channel: numpy's max over a last axis of 3 runs pixel by pixel (20x slower).
        array = np.maximum(np.maximum(array[..., 0], array[..., 1]), array[..., 2])
    out = sitk.GetImageFromArray((array != 0).astype(np.uint8) * np.uint8(label))
    out.CopyInformation(reference)
    return out


def main(argv: list[str]) -> int:
    """Extract every case of the cohort CSV; see the module docstring."""
    cohort, params, out = argv
    imported = time.perf_counter() - T0
    extractor = RadiomicsFeatureExtractor(params)
    label = int(extractor.settings.get("label", 1))
    ready = time.perf_counter() - T0
    with open(cohort, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    features: dict[str, dict[str, float]] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*local_binary_pattern.*")
        for row in rows:
            image = grey_image(row["image"])
            mask = lesion_mask(row["mask"], image, label)
            result = extractor.execute(image, mask, label=label)
            features[row["case_id"]] = {
                k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")
            }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(features, f)
    done = time.perf_counter() - T0
    print(json.dumps({"imported_s": imported, "extractor_s": ready, "done_s": done, "cases": len(rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
