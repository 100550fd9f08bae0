"""Shared pytest fixtures: real data from ../shared/data (skipped when absent) and a real MRML scene."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("DLR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SKIP_MESSAGE = (
    f"real breast-ultrasound data not found at {SHARED_DATA} "
    "(a user's clone has no shared/; set DLR_SHARED_DATA to run these tests)"
)


@dataclass(frozen=True)
class RealCase:
    """One real image with its lesion mask and label."""

    case_id: str
    image: Path
    mask: Path
    label: int  # 1 = malignant
    spacing_mm: float | None = None
    age: float | None = None
    birads: str | None = None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared real data; skips the test when it is absent."""
    if not (SHARED_DATA / "BUS-BRA").is_dir():
        pytest.skip(SKIP_MESSAGE)
    return SHARED_DATA


def _busbra(root: Path) -> list[RealCase]:
    with open(root / "BUS-BRA" / "bus_data.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        RealCase(
            case_id=r["ID"],
            image=root / "BUS-BRA" / "Images" / f"{r['ID']}.png",
            mask=root / "BUS-BRA" / "Masks" / f"mask_{r['ID'][4:]}.png",
            label=int(r["Pathology"] == "malignant"),
            birads=r["BIRADS"],
        )
        for r in rows
    ]


def _breast(root: Path) -> list[RealCase]:
    base = root / "BrEaST-Lesions-USG"
    with open(base / "clinical.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cases = []
    for r in rows:
        if r["Classification"] not in ("benign", "malignant") or not r["Mask_tumor_filename"]:
            continue
        age = r["Age"]
        cases.append(
            RealCase(
                case_id=f"breast{int(r['CaseID']):03d}",
                image=base / "images_and_masks" / r["Image_filename"],
                mask=base / "images_and_masks" / r["Mask_tumor_filename"].split("&")[0],
                label=int(r["Classification"] == "malignant"),
                spacing_mm=float(r["Pixel_size"]) * 10.0,
                age=float(age) if age.replace(".", "", 1).isdigit() else None,
                birads=r["BIRADS"],
            )
        )
    return cases


@pytest.fixture(scope="session")
def busbra_cases(shared_data: Path) -> list[RealCase]:
    """All BUS-BRA cases (grayscale PNG, binary mask PNG, no spacing)."""
    return _busbra(shared_data)


@pytest.fixture(scope="session")
def breast_cases(shared_data: Path) -> list[RealCase]:
    """BrEaST cases with a tumour mask (RGBA PNG, spacing in mm, age and BI-RADS)."""
    return _breast(shared_data)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module's tests: on a shared CPU, spin-waiting OpenMP threads cost far
    more than they give (training sets its own count through ``num_threads``)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def run_python_probe(code: str, *args: str, timeout: float) -> dict:
    """Run ``code`` in a fresh interpreter that can import DLRPredictorLib; its last stdout line is JSON.

    A fresh process is the only honest place to ask which modules an import or a prediction loads.
    """
    import json
    import subprocess
    import sys

    module_dir = str(REPO_ROOT / "DLRPredictor")
    env = dict(os.environ, PYTHONPATH=module_dir + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert run.returncode == 0, f"the probe failed:\n{run.stderr[-4000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


PREDICTION_PROBE = (
    "import json, sys\n"
    "from DLRPredictorLib.inference.predictor import load_predictor\n"
    "from DLRPredictorLib.inputs import images, lesion\n"
    "pred = load_predictor(sys.argv[1])\n"
    "vol = images.read_image(sys.argv[2])\n"
    "res = pred.predict(vol, lesion.read_mask(sys.argv[3], vol), heatmap=sys.argv[4] == 'heatmap')\n"
    "heavy = sorted(m for m in ('sklearn', 'torch', 'scipy', 'pandas') if m in sys.modules)\n"
    "print(json.dumps({'heavy': heavy, 'scores': res.signature_scores, 'model': res.model_used,\n"
    "                  'heatmap': res.heatmap is not None, 'label': res.label,\n"
    "                  'classes': getattr(res, 'class_probabilities', None)}))\n"
)


def probe_first_prediction(bundle: Path, manifest: Path, *, heatmap: bool) -> dict:
    """Predict the manifest's first case with ``bundle`` in a fresh interpreter: the heavy modules
    it loaded ("heavy"), the signature scores, model used, whether a heatmap came back, the label
    and (K-class) the class probabilities."""
    import csv

    with open(manifest, newline="") as f:
        first = next(csv.DictReader(f))
    flag = "heatmap" if heatmap else "no-heatmap"
    return run_python_probe(PREDICTION_PROBE, str(bundle), first["image"], first["mask"], flag, timeout=120)


def write_listed_file(root: Path, name: str, content: bytes) -> None:
    """Write a bundle file AND list it in manifest.json with its correct sha256 and size (its role
    kept; "model" for a new file), as a careful tamperer would: only the rule under test can refuse it.
    """
    import hashlib
    import json

    target = root.joinpath(*name.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    path = root / "manifest.json"
    man = json.loads(path.read_text(encoding="utf-8"))
    entry = man["files"].setdefault(name, {"role": "model"})
    entry.update(sha256=hashlib.sha256(content).hexdigest(), bytes=len(content))
    path.write_text(json.dumps(man, indent=2), encoding="utf-8")


@pytest.fixture
def scene():
    """A fresh plain-Python MRML scene (slicer-core) that behaves like the application's."""
    from DLRPredictorLib.scene import adapter as scene_adapter

    s = scene_adapter.create_scene()
    yield s
    s.Clear(1)


TINY_CONFIG = """
bundle_id: tiny-test
title: Tiny test bundle (synthetic phantoms)
seed: 0
split: {test_fraction: 0.25, folds: 2}
cnn: {arch: resnet18, input_size: 64, epochs: 2, batch_size: 16, patience: 2, num_threads: 2}
contours: {variants: [exact]}
selection: {max_features: 8}
model: {grid_search: false, pca_components: 4}
clinical:
  variables:
    - {name: age, type: numeric, unit: years, minimum: 10, maximum: 110, label: Age}
    - {name: birads, type: categorical, label: BI-RADS, allowed: ["1","2","3","4","4a","4b","4c","5"],
       ordinal_values: [1, 2, 3, 4.5, 4.2, 4.5, 4.8, 5]}
"""


def original_only_parameters() -> str:
    """The shipped 2D ultrasound parameter file restricted to the Original image (fast for tests)."""
    from DLRPredictorLib.features import radiomics as rf

    text = rf.DEFAULT_PARAMETERS.read_text(encoding="utf-8")
    start, end = text.index("imageType:"), text.index("featureClass:")
    return text[:start] + "imageType:\n  Original: {}\n" + text[end:]


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory) -> Path:
    """Manifest of a small labelled synthetic cohort (no external data)."""
    from DLRPredictorLib.inputs import synthetic_cohort as sc

    return sc.write_cohort(tmp_path_factory.mktemp("cohort"), n_cases=40, seed=0)


@pytest.fixture(scope="session")
def first_case(synthetic_cohort: Path) -> dict[str, str]:
    """The first case of the synthetic cohort as a cohort CSV row (absolute paths, no label)."""
    from DLRPredictorLib.inputs import cohort_csv

    labels = {"malignant": 1, "benign": 0}  # label texts of the synthetic cohort
    row = cohort_csv.read_cohort_csv(synthetic_cohort, clinical_names=None, label_values=labels)[0]
    return {
        "case_id": row.case_id,
        "image": str(row.resolved_image),
        "mask": str(row.resolved_mask),
        "spacing_mm": "" if row.spacing_mm is None else repr(row.spacing_mm),
    }


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, synthetic_cohort: Path) -> Path:
    """A real bundle trained by `train_from_manifest` on the synthetic cohort (about a minute)."""
    from DLRPredictorLib.training import trainer as training

    root = tmp_path_factory.mktemp("tiny")
    cfg = root / "tiny.yaml"
    cfg.write_text(TINY_CONFIG + "radiomics_parameters: original_only.yaml\n")
    (root / "original_only.yaml").write_text(original_only_parameters())
    return training.train_from_manifest(
        synthetic_cohort, root / "bundle", cfg, work_dir=root / "work", log=lambda line: None
    )
