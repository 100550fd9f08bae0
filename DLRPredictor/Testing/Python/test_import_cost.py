"""Applying a frozen bundle imports none of the training-only libraries, torch included (cold start).

A fresh interpreter loads the tiny bundle and predicts a synthetic phantom through every predict
path: ``load_predictor`` + ``Predictor.predict`` (with clinical values and Grad-CAM), the array
API, the node API and the in-process batch rows. sklearn, pandas, scipy, statsmodels,
lightgbm, xgboost and matplotlib are needed to train and to report, never to apply a bundle
(``models.persistence`` rebuilds the estimators with numpy); importing them costs seconds at start-up
(scipy.ndimage alone about 0.3 s: mask components come from SimpleITK, which is loaded anyway).
torch is needed only to train the network: the bundle's ResNet is applied in numpy
(``resnet_numpy``), and ``import torch`` alone took 1.6-2.7 s here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_python_probe
from DLRPredictorLib.inputs import phantom

FORBIDDEN = (
    "torch", "torchvision", "sklearn", "pandas", "scipy", "statsmodels", "lightgbm", "xgboost", "matplotlib",
    "cryptography",  # only checking or making a signature needs it; the tiny bundle is unsigned
    "dask", "distributed",  # only a run given a Dask scheduler (--scheduler) needs them
)

_PROBE = r"""
import json, sys
from pathlib import Path

bundle, work = Path(sys.argv[1]), Path(sys.argv[2])
forbidden = tuple(json.loads(sys.argv[3]))
steps = {}


def offenders():
    return sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))


def record(step):
    before = {m for s in steps.values() for m in s["new"]}
    steps[step] = {"new": [m for m in offenders() if m not in before]}


paths = json.loads(sys.argv[4])
from DLRPredictorLib.inputs import images, lesion
from DLRPredictorLib.inference import predictor

volume = images.read_image(paths["image"])
mask = lesion.read_mask(paths["mask"], volume)
clinical = {"age": 57, "birads": "4b"}
pred = predictor.load_predictor(bundle)
record("import + load_predictor")
res = pred.predict(volume, mask, clinical, heatmap=True)
facts = {"probability": res.probability, "model_used": res.model_used,
         "has_heatmap": res.heatmap is not None, "points": len(res.nomogram_points)}
record("Predictor.predict")

from DLRPredictorLib import api

arr = api.predict_arrays(volume.array[0], mask[0], spacing_mm=volume.spacing[:2], clinical=clinical,
                         bundle_path=bundle)
facts["arrays_probability"] = arr.probability
record("api.predict_arrays")

from DLRPredictorLib.cohort import batch

summary = batch.predict_cohort_in_process(paths["manifest"], work / "results.csv", bundle,
                                            show_progress=False)
facts["batch_ok"] = summary.n_ok
facts["batch_cases"] = summary.n_cases
record("batch rows")

from DLRPredictorLib import cli
from DLRPredictorLib.cohort import dask_runner

facts["scheduler"] = dask_runner.scheduler_option(None)  # what `predict` asks without --scheduler
record("cli + scheduler option")

from DLRPredictorLib.scene import adapter as scene_adapter, scene_io

scene = scene_adapter.create_scene()
node = scene_io.add_volume_node(scene, volume, "Image")
seg, segment_id = scene_io.add_segmentation_from_mask(scene, mask, node, "Lesion segmentation", "Lesion")
nodes = api.predict_nodes(node, seg, segment_id, clinical=clinical, bundle_path=bundle)
facts["nodes_probability"] = nodes.probability
scene.Clear(1)
record("api.predict_nodes")
print(json.dumps({"steps": steps, "facts": facts}))
"""


def test_predicting_imports_no_training_or_report_library(tiny_bundle: Path, tmp_path: Path) -> None:
    # The phantom is written here: making it uses scipy.ndimage, which predicting must not import.
    paths = {k: str(v) for k, v in phantom.write_phantom(tmp_path / "phantom").items()}
    report = run_python_probe(
        _PROBE, str(tiny_bundle), str(tmp_path), json.dumps(FORBIDDEN), json.dumps(paths), timeout=600
    )
    done = report["facts"]
    # The probe really predicted along every path (else an absent import would prove nothing).
    assert 0.0 < done["probability"] < 1.0
    assert done["model_used"].startswith("Combined") and done["points"] > 0  # combined + nomogram ran
    assert done["has_heatmap"]
    assert done["arrays_probability"] == pytest.approx(done["probability"], rel=1e-9)
    assert done["nodes_probability"] == pytest.approx(done["probability"], rel=1e-9)
    assert done["batch_cases"] == 3 and done["batch_ok"] == 3
    offenders = {step: _packages(s["new"]) for step, s in report["steps"].items() if s["new"]}
    found = "; ".join(f"{step}: {', '.join(names)}" for step, names in offenders.items())
    assert not offenders, f"predicting imported training/report-only modules (by first step): {found}"


def _packages(modules: list[str]) -> list[str]:
    """The forbidden names (sklearn, scipy.stats, ...) that the given loaded modules belong to."""
    return sorted({f for f in FORBIDDEN for m in modules if m == f or m.startswith(f + ".")})
