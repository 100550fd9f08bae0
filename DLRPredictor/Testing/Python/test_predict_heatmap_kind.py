"""``predict --scenes DIR --heatmap KIND``: the scenes' heatmap explains KIND, the results CSV is unchanged.

One real BUS-BRA case with the shipped bundle (skipped when ../shared/data is absent), predicted
three times through ``dlrpredictor predict``: without scenes, with scenes and the DL-signature map
(local worker pool), with scenes and the CNN-head map (a one-worker Dask ``local:1`` cluster). The
headless Slicer script's in-scene path is checked on the same case. ``--heatmap`` without
``--scenes`` would be silently ignored, so both commands refuse it.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib import cli
from DLRPredictorLib.base.case_ids import case_file_stem
from DLRPredictorLib.cohort import batch
from DLRPredictorLib.deep.heatmap import HEATMAP_KINDS
from DLRPredictorLib.inference.predictor import load_predictor
from DLRPredictorLib.scene import scene_io
from DLRPredictorLib.scene.heatmap import HEATMAP_KIND_ATTRIBUTE

SCRIPT = Path(__file__).resolve().parents[2] / "Resources" / "Scripts" / "slicer_batch.py"


def _slicer_batch():
    spec = importlib.util.spec_from_file_location("slicer_batch_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _heatmap_of(mrb: Path) -> tuple[str, np.ndarray]:
    """(the heatmap volume's kind attribute, its values) from a saved case scene."""
    scene = scene_io.load_scene(mrb)
    try:
        collection = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
        nodes = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
        (node,) = [n for n in nodes if n.GetAttribute("DLRPredictor.table") == "heatmap"]
        return node.GetAttribute(HEATMAP_KIND_ATTRIBUTE), scene_io.image_from_volume_node(node).array.copy()
    finally:
        scene.Clear(1)


@pytest.fixture(scope="module")
def one_case(tmp_path_factory, busbra_cases) -> tuple[Path, dict[str, str]]:
    case = busbra_cases[0]
    row = {"case_id": case.case_id.lower(), "image": str(case.image), "mask": str(case.mask)}
    path = tmp_path_factory.mktemp("heatmap_kind") / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    return path, row


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_case) -> dict[str, tuple[bytes, Path | None]]:
    """kind (or "none") -> (results CSV bytes, the case's scene file)."""
    manifest, row = one_case
    folder = tmp_path_factory.mktemp("heatmap_kind_runs")
    common = ["predict", str(manifest), "--jobs", "1", "--no-progress"]
    out: dict[str, tuple[bytes, Path | None]] = {}
    assert cli.main([*common, "--out", str(folder / "none.csv")]) == 0
    out["none"] = ((folder / "none.csv").read_bytes(), None)
    for kind, where in zip(HEATMAP_KINDS, ([], ["--scheduler", "local:1"]), strict=True):
        scenes = folder / f"scenes_{kind}"
        results = folder / f"{kind}.csv"
        argv = [*common, "--out", str(results), "--scenes", str(scenes), "--heatmap", kind, *where]
        assert cli.main(argv) == 0
        out[kind] = (results.read_bytes(), scenes / f"{case_file_stem(row['case_id'])}.mrb")
    return out


def test_each_kind_writes_its_map_and_the_results_file_is_unchanged(runs):
    maps = {}
    for kind in HEATMAP_KINDS:
        # Same code path for every row (the heatmap is not an input of any results cell; one BLAS
        # thread in either worker): the very bytes of the run without scenes.
        assert runs[kind][0] == runs["none"][0], kind
        attribute, values = _heatmap_of(runs[kind][1])
        assert attribute == kind
        assert values.max() > 0.0, f"{kind}: a flat map"
        maps[kind] = values
    # The two maps weigh layer4's channels with two different gradients: on a real lesion they
    # differ by far more than rounding (values in 0..1).
    assert np.abs(maps["dl-signature"] - maps["cnn-head"]).max() > 0.05


def test_the_slicer_script_writes_the_kind_it_was_given(tmp_path, scene, one_case, runs):
    _, row = one_case
    script = _slicer_batch()
    pred = load_predictor(None)
    script._predict_in_scene(scene, pred, row, False, tmp_path, heatmap_kind="cnn-head")
    attribute, values = _heatmap_of(tmp_path / f"{case_file_stem(row['case_id'])}.mrb")
    assert attribute == "cnn-head"
    # Same engine in this process as in the Dask worker; BLAS threads may differ here.
    np.testing.assert_allclose(values, _heatmap_of(runs["cnn-head"][1])[1], rtol=0, atol=1e-5)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0  # the cohort leaves no nodes


def test_heatmap_without_scenes_is_refused_with_one_clear_line(tmp_path, capsys, one_case):
    manifest, _ = one_case
    out = tmp_path / "results.csv"
    assert cli.main(["predict", str(manifest), "--out", str(out), "--heatmap", "cnn-head"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("dlrpredictor predict: error: --heatmap cnn-head needs --scenes DIR"), line
    assert not out.exists() and list(tmp_path.iterdir()) == []

    argv = ["predict", str(manifest), "--out", str(out), "--heatmap", "dl-signature"]
    assert _slicer_batch().main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("slicer_batch.py: error: --heatmap dl-signature needs --scenes DIR"), line
    assert not out.exists()


def test_the_kind_is_checked_before_any_work(tmp_path):
    with pytest.raises(batch.InputError, match="needs --scenes"):
        batch.scene_heatmap_kind("cnn-head", None)
    with pytest.raises(batch.InputError, match="heatmap must be one of"):
        batch.scene_heatmap_kind("gradcam++", tmp_path)
    assert batch.scene_heatmap_kind(None, None) == HEATMAP_KINDS[0]
    assert batch.scene_heatmap_kind("cnn-head", tmp_path) == "cnn-head"
