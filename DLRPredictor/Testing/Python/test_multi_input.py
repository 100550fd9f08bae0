"""Several named inputs per case: manifest columns, training, the bundle, prediction, CLI, scene.

The two-input bundle is trained on real BUS-BRA images: the two views of one lesion
(``bus_NNNN-l`` and ``bus_NNNN-r``) are the inputs ``US_l`` (required) and ``US_r`` (optional),
30 patients, Original radiomics and a one-epoch 32 px ResNet18 per input (small, to keep the test
short; the measured two-view experiment is in docs/EXPERIMENTS.md).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import original_only_parameters, write_listed_file
from test_bundle_trust import _keys

CONFIG = """
bundle_id: two-view-test
title: Two views of a breast lesion (test)
seed: 0
radiomics_parameters: orig.yaml
split: {folds: 2}
cnn: {arch: resnet18, input_size: 32, epochs: 1, batch_size: 16, patience: 1, num_threads: 1}
contours: {variants: [exact]}
selection: {max_features: 6}
model: {grid_search: false, calibration: none, pca_components: 4}
input_fusion: stacking
inputs:
  - {name: US_l, modality: US, required: true}
  - {name: US_r, modality: US}
"""
HEADER = ["case_id", "label", "image:US_l", "mask:US_l", "image:US_r", "mask:US_r"]


def _views(root: Path) -> dict[str, dict[str, dict[str, str]]]:
    """Patient -> view letter -> bus_data.csv row, for the patients with both views."""
    with open(root / "BUS-BRA" / "bus_data.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, dict[str, dict[str, str]]] = {}
    for r in rows:
        out.setdefault(r["Case"], {})[r["ID"][-1]] = r
    return {p: v for p, v in out.items() if "l" in v and "r" in v}


def _files(root: Path, row: dict[str, str]) -> tuple[str, str]:
    base = root / "BUS-BRA"
    return str(base / "Images" / f"{row['ID']}.png"), str(base / "Masks" / f"mask_{row['ID'][4:]}.png")


@pytest.fixture(scope="module")
def two_view(shared_data: Path, tmp_path_factory, one_torch_thread):
    """(bundle folder, views of the patients not trained on, folder) of a two-view bundle."""
    from DLRPredictorLib.base.executor import serial_map
    from DLRPredictorLib.training.multi_input_train import train_multi_input

    views = _views(shared_data)
    order = sorted(views, key=int)
    malignant = [p for p in order if views[p]["l"]["Pathology"] == "malignant"][:15]
    benign = [p for p in order if views[p]["l"]["Pathology"] == "benign"][:15]
    root = tmp_path_factory.mktemp("two_view")
    with open(root / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for p in malignant + benign:
            v = views[p]
            w.writerow(
                [
                    f"bus_{int(p):04d}",
                    v["l"]["Pathology"],
                    *_files(shared_data, v["l"]),
                    *_files(shared_data, v["r"]),
                ]
            )
    (root / "orig.yaml").write_text(original_only_parameters())
    (root / "config.yaml").write_text(CONFIG)
    bundle = train_multi_input(
        root / "train.csv",
        root / "bundle",
        root / "config.yaml",
        work_dir=root / "work",
        log=lambda s: None,
        map_fn=serial_map,  # 120 short extractions: starting worker processes would cost more
    )
    unseen = {p: views[p] for p in order if p not in set(malignant + benign)}
    return bundle, unseen, root


def _radiomics_only_config(root: Path, fusion: str) -> Path:
    """The fixture's config without the CNN, with another fusion across the inputs."""
    config = root / f"{fusion}.yaml"
    text = CONFIG.replace("input_fusion: stacking", f"input_fusion: {fusion}")
    config.write_text(re.sub(r"(?m)^cnn: .*$", "cnn: {enabled: false}", text))
    return config


def _load(shared_data: Path, row: dict[str, str]):
    from DLRPredictorLib.inputs import images, lesion

    image, mask = _files(shared_data, row)
    volume = images.read_image(image)
    return volume, lesion.read_mask(mask, volume)


def test_two_view_bundle_answers_with_the_model_for_the_inputs_given(two_view, shared_data):
    from DLRPredictorLib.base.errors import InputError
    from DLRPredictorLib.base.numeric import expit
    from DLRPredictorLib.inference.multi_input_predictor import load_multi_input_predictor
    from DLRPredictorLib.inference.predictor import load_predictor

    bundle, unseen, _ = two_view
    pred = load_multi_input_predictor(bundle)
    assert pred.input_names == ["US_l", "US_r"]
    patient = next(iter(unseen.values()))
    left, right = _load(shared_data, patient["l"]), _load(shared_data, patient["r"])

    both = pred.predict({"US_l": left, "US_r": right}, case="p1")
    assert both.model_used.startswith("US_l + US_r (stacking of US_l:rad, US_l:dl, US_r:rad, US_r:dl)")
    assert both.inputs_used == ["US_l", "US_r"]
    assert set(both.signature_scores) == {f"{n}:{s}" for n in ("US_l", "US_r") for s in ("rad", "dl", "dlr")}
    # the stacking formula applied by hand to the stored coefficients (an independent computation)
    doc = json.loads((bundle / "multi_input.json").read_text())
    model = next(m for m in doc["models"] if m["inputs"] == ["US_l", "US_r"])
    P = np.array([both.signature_scores[m] for m in model["members"]])
    expected = float(expit(model["fusion"]["intercept"] + P @ np.array(model["fusion"]["coef"])))
    assert both.probability == pytest.approx(expected, abs=1e-12)
    # Exact: the bundle's frozen cutoff, passed on.
    assert both.cutoff == model["cutoff"]
    assert both.label == ("malignant" if both.probability >= both.cutoff else "benign")
    # one heatmap per input, each on its own image's grid
    for name, (volume, _mask) in (("US_l", left), ("US_r", right)):
        heat = both.per_input[name].heatmap
        assert heat is not None and heat.shape == volume.shape

    only = pred.predict({"US_l": left}, case="p1")
    assert only.model_used.startswith("US_l only: ")
    assert only.inputs_used == ["US_l"]
    assert any("US_r not given" in w for w in only.warnings)
    # the US_l-only answer is that input's own bundle's answer (the same deterministic code path)
    own = load_predictor(bundle / "inputs" / "US_l").predict(*left)
    assert only.probability == own.probability and only.cutoff == own.cutoff

    with pytest.raises(InputError, match="required input"):
        pred.predict({"US_r": right}, case="p1")
    with pytest.raises(InputError, match="not inputs of this bundle"):
        pred.predict({"US_x": right})


def test_cli_predict_takes_a_multi_input_manifest(two_view, shared_data, tmp_path, capsys):
    from DLRPredictorLib import cli
    from DLRPredictorLib.scene import scene_io

    bundle, unseen, _ = two_view
    patients = list(unseen.values())[:2]
    manifest = tmp_path / "cases.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerow(
            ["both", "", *_files(shared_data, patients[0]["l"]), *_files(shared_data, patients[0]["r"])]
        )
        w.writerow(["left_only", "", *_files(shared_data, patients[1]["l"]), "", ""])
        w.writerow(["broken", "", str(tmp_path / "none.png"), str(tmp_path / "none.png"), "", ""])
    out = tmp_path / "results.csv"
    argv = [
        "predict",
        str(manifest),
        "--out",
        str(out),
        "--bundle",
        str(bundle),
        "--scenes",
        str(tmp_path / "s"),
    ]
    assert cli.main(argv) == 1  # one case failed, the others were predicted
    assert "2 of 3 cases predicted, 1 failed" in capsys.readouterr().out
    first = out.read_text()
    # a rerun reuses the finished rows (same bundle, same input files) and retries the failed one
    assert cli.main(argv) == 1
    assert "2 reused" in capsys.readouterr().out
    assert out.read_text() == first and not (tmp_path / "results.csv.journal").exists()
    with open(out, newline="") as f:
        rows = {r["case_id"]: r for r in csv.DictReader(f)}
    assert rows["both"]["model_used"].startswith("US_l + US_r") and rows["both"]["inputs_used"] == "US_l US_r"
    assert rows["both"]["score_US_r:dl"] != "" and rows["left_only"]["score_US_r:dl"] == ""
    assert rows["left_only"]["model_used"].startswith("US_l only")
    assert rows["broken"]["status"] == "error" and "input 'US_l'" in rows["broken"]["error"]
    # a one-input bundle refuses a multi-input manifest, saying which bundle it needs
    assert cli.main(["predict", str(manifest), "--out", str(tmp_path / "one.csv")]) == 2
    assert "multi-input bundle" in capsys.readouterr().err
    assert (
        cli.main(["predict", str(manifest), "--out", str(out), "--bundle", str(bundle), "--stability"]) == 2
    )
    assert "--stability: not offered with a multi-input bundle" in capsys.readouterr().err
    scene = scene_io.load_scene(tmp_path / "s" / "both.mrb")
    try:
        names = {scene.GetNthNode(i).GetName() for i in range(scene.GetNumberOfNodes())}
        assert {
            "Image US_l",
            "Image US_r",
            "DLRPredictor Grad-CAM US_l",
            "DLRPredictor Grad-CAM US_r",
        } <= names
    finally:
        scene.Clear(1)


def test_bundle_is_refused_when_anything_changes(two_view, tmp_path):
    from DLRPredictorLib import cli
    from DLRPredictorLib.base.errors import BundleError
    from DLRPredictorLib.bundle.multi_input import load_multi_input_bundle

    bundle = two_view[0]
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    assert load_multi_input_bundle(copy).digest == load_multi_input_bundle(bundle).digest
    # an input bundle changed, its own checksums recomputed: its digest no longer matches the pin
    write_listed_file(copy / "inputs" / "US_r", "notes.txt", b"changed")
    with pytest.raises(BundleError, match="not the expected one"):
        load_multi_input_bundle(copy)
    shutil.rmtree(copy)
    shutil.copytree(bundle, copy)
    (copy / "extra.json").write_text("{}")
    with pytest.raises(BundleError, match="does not name"):
        load_multi_input_bundle(copy)
    (copy / "extra.json").unlink()
    # signed: trusted with the key's public half among the trusted keys, refused once changed
    assert load_multi_input_bundle(copy).trust == "unsigned"
    key, public = _keys(tmp_path / "keys")
    assert cli.main(["sign", str(copy), "--key", str(key)]) == 0
    assert load_multi_input_bundle(copy).trust.startswith("signed by unknown key")
    trusted = load_multi_input_bundle(copy, trusted_keys=public.parent)
    assert trusted.trust.startswith("signed by trusted key") and trusted.trust_warnings == ()
    doc = json.loads((copy / "multi_input.json").read_text())
    doc["title"] = "changed after signing"
    (copy / "multi_input.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="signs another content"):
        load_multi_input_bundle(copy)
    (copy / "signature.json").unlink()
    doc = json.loads((copy / "multi_input.json").read_text())
    doc["models"][-1]["cutoff"] = 2.0
    (copy / "multi_input.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="cutoff must be a probability"):
        load_multi_input_bundle(copy)


def test_manifest_columns(tmp_path):
    from DLRPredictorLib.base.errors import ManifestError
    from DLRPredictorLib.inputs.multi_input import is_multi_input_manifest, read_multi_input_csv

    one = tmp_path / "one.csv"
    one.write_text("case_id,image,mask\na,a.png,a_mask.png\n")
    assert not is_multi_input_manifest(one)
    multi = tmp_path / "multi.csv"
    multi.write_text(
        "case_id,image:US,mask:US,image:MG,mask:MG,spacing_mm:MG,image:PA,mask:PA\n"
        "a,us.png,us_m.png,mg.png,mg_m.png,0.1,pa.png,pa_m.png\nb,us2.png,us2_m.png,,,,,\n"
    )
    assert is_multi_input_manifest(multi)
    warned: list[str] = []
    rows = read_multi_input_csv(multi, ["US", "MG"], required_inputs=["US"], warn=warned.append)
    assert list(rows[0].inputs) == ["US", "MG"] and list(rows[1].inputs) == ["US"]
    # Exact: the cell "0.1" parsed by float() is the literal 0.1.
    assert rows[0].inputs["MG"].spacing_mm == 0.1 and rows[0].inputs["US"].spacing_mm is None
    assert rows[0].inputs["MG"].resolved_image == tmp_path / "mg.png"
    assert any("'PA'" in w for w in warned)
    with pytest.raises(ManifestError, match="required input"):
        read_multi_input_csv(multi, ["US", "MG"], required_inputs=["MG"])
    with pytest.raises(ManifestError, match="image:XR"):
        read_multi_input_csv(multi, ["US", "XR"])
    half = tmp_path / "half.csv"
    half.write_text("case_id,image:US,mask:US\na,us.png,\n")
    with pytest.raises(ManifestError, match="but not its mask"):
        read_multi_input_csv(half)
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,image:U S,mask:U S\na,us.png,m.png\n")
    with pytest.raises(ManifestError, match="input name"):
        read_multi_input_csv(bad)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("split: {test_fraction: 0.2}\n", "split.test_fraction"),
        ("clinical: {variables: [{name: age, type: numeric}]}\n", "clinical"),
        ("input_fusion: late\n", "input_fusion"),
        ("harmonisation: {method: combat, batch_column: device}\n", "harmonisation"),
    ],
)
def test_config_refusals(tmp_path, extra, match):
    from DLRPredictorLib.base.errors import ConfigError
    from DLRPredictorLib.training.multi_input_config import load_multi_input_config

    path = tmp_path / "c.yaml"
    path.write_text("inputs:\n  - {name: US_l}\n  - {name: US_r}\n" + extra)
    with pytest.raises(ConfigError, match=match):
        load_multi_input_config(path)


_PROBE = r"""
import json, sys
from DLRPredictorLib.inputs import images, lesion
from DLRPredictorLib.inference.multi_input_predictor import load_multi_input_predictor

bundle, files, forbidden = sys.argv[1], json.loads(sys.argv[2]), tuple(json.loads(sys.argv[3]))
pred = load_multi_input_predictor(bundle)
inputs = {}
for name, (image, mask) in files.items():
    volume = images.read_image(image)
    inputs[name] = (volume, lesion.read_mask(mask, volume))
res = pred.predict(inputs, heatmap=True)
loaded = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
print(json.dumps({"model_used": res.model_used, "loaded": loaded}))
"""


def test_multi_input_prediction_imports_no_training_library(two_view, shared_data):
    from conftest import run_python_probe
    from test_import_cost import FORBIDDEN

    bundle, unseen, _ = two_view
    patient = next(iter(unseen.values()))
    files = {"US_l": _files(shared_data, patient["l"]), "US_r": _files(shared_data, patient["r"])}
    facts = run_python_probe(_PROBE, str(bundle), json.dumps(files), json.dumps(FORBIDDEN), timeout=300)
    assert facts["model_used"].startswith("US_l + US_r")
    assert facts["loaded"] == []


def test_module_parameter_node_holds_one_pair_per_input(two_view, shared_data, scene):
    from DLRPredictorLib import multi_input_module as mm
    from DLRPredictorLib.base.errors import InputError
    from DLRPredictorLib.scene import scene_io
    from DLRPredictorLib.scene.tables import read_key_value_table
    from test_module_support import ParameterNode

    bundle, unseen, _ = two_view
    patient = list(unseen.values())[2]
    node = ParameterNode(
        scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "DLRPredictor"), bundlePath=str(bundle)
    )
    names, required = ["US_l", "US_r"], ["US_l"]
    volumes = {}
    for first, (name, view) in zip((True, False), (("US_l", "l"), ("US_r", "r")), strict=True):
        volume, mask = _load(shared_data, patient[view])
        volumes[name] = scene_io.add_volume_node(scene, volume, f"view {view}")
        segmentation, segment = scene_io.add_segmentation_from_mask(
            scene, mask, volumes[name], f"lesion {view}"
        )
        mm.set_input_pair(node, name, volumes[name], segmentation, segment, first=first)
    assert mm.multi_input_problems(node, names, required) == []
    assert list(mm.input_pairs(node, names)) == names

    result = mm.predict_multi_input_parameter_node(node)
    table = dict(read_key_value_table(node.predictionTable))
    assert table["Model used"] == result.model_used and result.model_used.startswith("US_l + US_r")
    assert {f"Score US_r:{s}" for s in ("rad", "dl")} <= set(table)
    for name in names:  # each heatmap on its own input's grid
        heat = mm.output_node(node, name, "heatmap")
        image = volumes[name]
        assert heat.GetImageData().GetDimensions() == image.GetImageData().GetDimensions()
        assert heat.GetSpacing() == image.GetSpacing() and heat.GetOrigin() == image.GetOrigin()
        assert mm.output_node(node, name, "features").GetNumberOfRows() > 0
    assert node.heatmapVolume is mm.output_node(node, "US_l", "heatmap")

    mm.set_input_pair(node, "US_l", None, None, first=True)
    assert any("US_l is required" in p for p in mm.multi_input_problems(node, names, required))
    with pytest.raises(InputError, match="US_l is required"):
        mm.predict_multi_input_parameter_node(node)


def test_slicer_batch_script_writes_multi_input_scenes_through_the_given_scene(
    two_view, shared_data, tmp_path, scene
):
    import importlib.util

    from DLRPredictorLib.cohort.multi_input_batch import predict_multi_input_cohort
    from DLRPredictorLib.scene import scene_io

    script_path = Path(__file__).resolve().parents[2] / "Resources" / "Scripts" / "slicer_batch.py"
    spec = importlib.util.spec_from_file_location("slicer_batch_multi_input", script_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    bundle, unseen, _ = two_view
    patient = list(unseen.values())[3]
    manifest = tmp_path / "cases.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerow(["case_1", "", *_files(shared_data, patient["l"]), *_files(shared_data, patient["r"])])
    summary = predict_multi_input_cohort(
        manifest,
        tmp_path / "results.csv",
        bundle_path=bundle,
        scenes_dir=tmp_path / "scenes",
        heatmap_kind="cnn-head",
        write_scene=script._multi_input_scene_writer(scene),
    )
    assert (summary.n_cases, summary.n_error) == (1, 0)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0  # the cohort leaves no nodes
    saved = scene_io.load_scene(tmp_path / "scenes" / "case_1.mrb")
    try:
        kinds = [
            saved.GetNodesByName(f"DLRPredictor Grad-CAM {n}")
            .GetItemAsObject(0)
            .GetAttribute("DLRPredictor.HeatmapKind")
            for n in ("US_l", "US_r")
        ]
        assert kinds == ["cnn-head", "cnn-head"]
    finally:
        saved.Clear(1)


def test_early_fusion_across_inputs(two_view, shared_data, capsys):
    """One signature on both views' radiomics side by side, cross-fitted on the shared folds,
    trained through `dlrpredictor train` (a config listing inputs)."""
    from DLRPredictorLib import cli
    from DLRPredictorLib.inference.multi_input_predictor import load_multi_input_predictor
    from DLRPredictorLib.inference.pipeline import _signature_from

    _, unseen, root = two_view
    config = _radiomics_only_config(root, "early")
    # the radiomics of the two-view fixture's work folder are reused (same images, same parameters)
    argv = ["train", str(root / "train.csv"), "--config", str(config), "--out", str(root / "early")]
    assert cli.main([*argv, "--work", str(root / "work"), "--ledger", str(root / "l.jsonl")]) == 2
    assert "--ledger: not offered" in capsys.readouterr().err
    key, _public = _keys(root / "keys")
    assert cli.main([*argv, "--work", str(root / "work"), "--sign-key", str(key)]) == 0
    assert "(signed by unknown key" in capsys.readouterr().out.splitlines()[-1]
    bundle = root / "early"
    doc = json.loads((bundle / "multi_input.json").read_text())
    (model,) = [m for m in doc["models"] if m["inputs"] == ["US_l", "US_r"]]
    assert model["kind"] == "early" and 0.5 < model["training"]["oof_auc"] <= 1
    selected = model["signature"]["signature"]["selector"]["selected_names"]
    assert selected and all(c.split(":")[0] in ("US_l", "US_r") for c in selected)

    pred = load_multi_input_predictor(bundle)
    patient = next(iter(unseen.values()))
    left, right = _load(shared_data, patient["l"]), _load(shared_data, patient["r"])
    both = pred.predict({"US_l": left, "US_r": right}, heatmap=False)
    assert both.model_used == "US_l + US_r (early fusion of US_l:radiomics, US_r:radiomics)"
    assert both.cutoff == model["cutoff"]
    # the signature read straight from the files (not through the verified bundle) gives the same
    # probability: the same deterministic code on the same arrays
    with np.load(bundle / "multi_input.npz", allow_pickle=False) as z:
        signature = _signature_from("early/US_l+US_r", model["signature"], {k: z[k] for k in z.files})
    columns = [f"{n}:{f}" for n in ("US_l", "US_r") for f in both.per_input[n].features]
    values = np.array([[both.per_input[c.split(":")[0]].features[c.split(":", 1)[1]] for c in columns]])
    # The bundle's prediction against the signature applied by hand: two call paths, a tolerance.
    assert both.probability == pytest.approx(float(signature.predict_proba(values, columns)[0]), abs=1e-12)
    only = pred.predict({"US_l": left}, heatmap=False)
    assert only.model_used.startswith("US_l only: ")


def test_ensemble_fusion_across_inputs(two_view, shared_data):
    """Accuracy-weighted average of the views' Rad probabilities (weights learnt out of fold)."""
    from DLRPredictorLib.base.executor import serial_map
    from DLRPredictorLib.inference.multi_input_predictor import load_multi_input_predictor
    from DLRPredictorLib.training.multi_input_train import train_multi_input

    _, unseen, root = two_view
    config = _radiomics_only_config(root, "ensemble")
    bundle = train_multi_input(
        root / "train.csv",
        root / "ensemble",
        config,
        work_dir=root / "work",
        log=lambda s: None,
        map_fn=serial_map,
    )
    doc = json.loads((bundle / "multi_input.json").read_text())
    (model,) = [m for m in doc["models"] if m["inputs"] == ["US_l", "US_r"]]
    weights = np.array(model["fusion"]["weights"])
    assert model["members"] == ["US_l:rad", "US_r:rad"] and weights.sum() == pytest.approx(1.0, abs=1e-12)
    pred = load_multi_input_predictor(bundle)
    patient = list(unseen.values())[4]
    both = pred.predict({"US_l": _load(shared_data, patient["l"]), "US_r": _load(shared_data, patient["r"])})
    assert both.model_used == "US_l + US_r (ensemble of US_l:rad, US_r:rad)"
    # the weighted average computed by hand from the stored weights (an independent computation)
    P = np.array([both.signature_scores["US_l:rad"], both.signature_scores["US_r:rad"]])
    assert both.probability == pytest.approx(float(P @ weights), abs=1e-12)


def test_evaluate_a_labelled_multi_input_manifest(two_view, shared_data, tmp_path, capsys):
    """The report's AUC of the multi-input probability equals scikit-learn's on the same rows."""
    from DLRPredictorLib import cli
    from sklearn.metrics import roc_auc_score

    bundle, unseen, _ = two_view
    pathology = {p: v["l"]["Pathology"] for p, v in unseen.items()}
    chosen = [p for p in unseen if pathology[p] == "malignant"][:3] + [
        p for p in unseen if pathology[p] == "benign"
    ][:3]
    manifest = tmp_path / "labelled.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for k, p in enumerate(chosen):
            right = (
                _files(shared_data, unseen[p]["r"]) if k % 2 == 0 else ("", "")
            )  # some cases with one view
            w.writerow([f"case{k}", pathology[p], *_files(shared_data, unseen[p]["l"]), *right])
    report = tmp_path / "report"
    assert (
        cli.main(
            [
                "evaluate",
                str(manifest),
                "--report",
                str(report),
                "--bundle",
                str(bundle),
                "--group-column",
                "x",
            ]
        )
        == 2
    )
    assert "--group-column: not offered with a multi-input bundle" in capsys.readouterr().err
    assert cli.main(["evaluate", str(manifest), "--report", str(report), "--bundle", str(bundle)]) == 0
    with open(tmp_path / "report_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    y = [int(r["label"] == "malignant") for r in rows]
    p = [float(r["probability"]) for r in rows]
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n"] == 6
    assert metrics["scores"]["probability"]["auc"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_inputs_without_a_joint_model_fall_back_to_the_largest_trained_combination(
    two_view, shared_data, tmp_path
):
    """A bundle whose training had too few cases with both views has no pair model: a case with both
    is answered by the model of one of them, and a warning says the other was not used."""
    from DLRPredictorLib.base.errors import BundleError
    from DLRPredictorLib.bundle.multi_input import InputModel, load_multi_input_bundle
    from DLRPredictorLib.inference.multi_input_predictor import MultiInputPredictor

    bundle, unseen, _ = two_view
    copy = tmp_path / "no_pair"
    shutil.copytree(bundle, copy)
    doc = json.loads((copy / "multi_input.json").read_text())
    doc["models"] = [m for m in doc["models"] if len(m["inputs"]) == 1]  # as such a training writes it
    (copy / "multi_input.json").write_text(json.dumps(doc))
    verified = load_multi_input_bundle(copy)
    patient = next(iter(unseen.values()))
    res = MultiInputPredictor(verified).predict(
        {"US_l": _load(shared_data, patient["l"]), "US_r": _load(shared_data, patient["r"])}, heatmap=False
    )
    assert res.model_used.startswith("US_l only: ") and res.inputs_used == ["US_l"]
    assert any("US_r given but not used" in w for w in res.warnings)
    assert set(res.signature_scores) >= {"US_l:rad", "US_r:rad"}  # both inputs' scores are still listed

    # the rule: the largest trained combination of the inputs given (first declared among equals);
    # a missing required input (US_l here) or no model within the inputs given is refused
    verified.models = [InputModel(("US_l",), "input"), InputModel(("US_r",), "input")]
    assert verified.model_for(["US_r", "US_l"]).inputs == ("US_l",)
    with pytest.raises(BundleError, match="required input"):
        verified.model_for(["US_r"])
    verified.models = [InputModel(("US_l", "US_r"), "fusion")]
    assert verified.model_for(["US_r", "US_l"]).inputs == ("US_l", "US_r")
    with pytest.raises(BundleError, match=r"no model for the inputs US_l$"):
        verified.model_for(["US_l"])
