"""K-class endpoints end to end: `dlrpredictor train` with task.classes, the bundle, prediction, report.

- A three-class bundle (BUS-BRA histology: fibroadenoma, invasive ductal carcinoma, and every
  other histology grouped as "other") is trained through the CLI on a small patient sample of real
  images (radiomics of the Original image only, so that it takes seconds), and verified on load.
- Each held-out case is predicted through the predict path (images read, radiomics extracted, the
  numpy pipeline): the class probabilities sum to 1 and the predicted class is the frozen rule's
  (per-class cutoffs chosen on out-of-fold probabilities: argmax of p_k - c_k).
- The K-class report of those predictions (`dlrpredictor report --classes` on the results CSV) and
  the trainer's held-out report are checked against scikit-learn computed from the predictions:
  roc_auc_score (per class one-vs-rest, multi_class="ovr" macro, micro on label_binarize),
  confusion_matrix, accuracy_score, balanced_accuracy_score, brier_score_loss per class, and the
  multinomial Brier by its definition.
- The numpy decision rule equals the evaluation's, a spec round trip predicts identically, the
  cutoff search never loses balanced accuracy, and the predict path imports no scikit-learn.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib.base.errors import ConfigError, ManifestError
from DLRPredictorLib.inference.predictor import NO_MULTICLASS_HEATMAP

CLASSES = ["fibroadenoma", "invasive ductal carcinoma", "other"]
PATIENTS_PER_CLASS = 12  # about 20 images per class (most patients have two views)

CONFIG = """
bundle_id: histology-3class-test
title: BUS-BRA histology, three classes (test)
seed: 0
task:
  name: histology
  description: Fibroadenoma vs invasive ductal carcinoma vs other histology
  classes: [fibroadenoma, invasive ductal carcinoma, other]
  decision_rule: cutoffs
split: {test_fraction: 0.3, folds: 3}
cnn: {enabled: false}
contours: {variants: [exact]}
selection: {max_features: 6}
radiomics_parameters: original_only.yaml
"""


def _histology_manifest(root: Path, out: Path) -> Path:
    """A manifest of the first PATIENTS_PER_CLASS patients of each class (all their images)."""
    with open(root / "BUS-BRA" / "bus_data.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    group = {h: h for h in CLASSES[:2]}
    chosen: dict[str, list[str]] = {c: [] for c in CLASSES}
    lines = []
    for r in rows:
        cls = group.get(r["Histology"], "other")
        patient = r["Case"]
        if patient not in chosen[cls]:
            if len(chosen[cls]) == PATIENTS_PER_CLASS:
                continue
            chosen[cls].append(patient)
        image = root / "BUS-BRA" / "Images" / f"{r['ID']}.png"
        mask = root / "BUS-BRA" / "Masks" / f"mask_{r['ID'][4:]}.png"
        lines.append({"case_id": r["ID"], "image": image, "mask": mask, "label": cls, "patient_id": patient})
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)
    return out


@pytest.fixture(scope="module")
def trained(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    """The three-class bundle trained through `dlrpredictor train`, and its files."""
    from conftest import original_only_parameters
    from DLRPredictorLib import cli

    tmp = tmp_path_factory.mktemp("multiclass")
    manifest = _histology_manifest(shared_data, tmp / "histology.csv")
    (tmp / "original_only.yaml").write_text(original_only_parameters())
    (tmp / "c.yaml").write_text(CONFIG)
    rc = cli.main(
        [
            "train",
            str(manifest),
            "--config",
            str(tmp / "c.yaml"),
            "--out",
            str(tmp / "b"),
            "--work",
            str(tmp / "w"),
        ]
    )
    assert rc == 0
    return {"tmp": tmp, "manifest": manifest, "bundle": tmp / "b", "work": tmp / "w"}


def test_the_bundle_declares_its_classes_and_rule(trained: dict[str, Path]) -> None:
    from DLRPredictorLib.inference.predictor import load_predictor

    pred = load_predictor(trained["bundle"])  # verified: schema, checksums, pipeline vs manifest
    manifest = pred.manifest
    assert manifest["task"]["classes"] == CLASSES
    rule = manifest["task"]["decision_rule"]
    assert rule["rule"] == "cutoffs" and list(rule["cutoffs"]) == CLASSES and rule["cutoffs"][CLASSES[0]] == 0
    assert "cutoff" not in manifest and "positive_class" not in manifest["task"]
    assert pred.classes == CLASSES and pred.signature_names == []
    assert np.isnan(pred.cutoff) and pred.positive_class == " / ".join(CLASSES)
    card = (trained["bundle"] / "model_card.md").read_text(encoding="utf-8")
    assert "No nomogram is offered" in card and "one-vs-rest" in card and "multinomial" in card
    files = sorted(p.name for p in trained["bundle"].iterdir())
    assert not any(n.endswith((".npz", ".safetensors", ".pkl")) for n in files)  # plain JSON steps only


def test_predictions_and_report_match_an_independent_computation(trained: dict[str, Path]) -> None:
    """Predict the held-out cases through the predict path; the report's every metric against sklearn."""
    from DLRPredictorLib import cli
    from DLRPredictorLib.cohort.batch import predict_cohort_in_process

    tmp, work = trained["tmp"], trained["work"]
    full = json.loads((work / "reports" / "multiclass_full.json").read_text())
    with open(trained["manifest"], newline="") as f:
        rows = list(csv.DictReader(f))
    # the held-out split's cases, as the trainer's held-out report lists them by count per class
    manifest = json.loads((trained["bundle"] / "manifest.json").read_text())
    counts = manifest["training"]["counts"]
    assert sum(counts["test_per_class"].values()) == full["exact"]["n"] == counts["test_cases"]
    # predict every case of the manifest; the held-out ones are those the report counted
    results = tmp / "results.csv"
    predict_cohort_in_process(trained["manifest"], results, trained["bundle"], show_progress=False)
    with open(results, newline="") as f:
        out = list(csv.DictReader(f))
    assert [r["case_id"] for r in out] == [r["case_id"] for r in rows]
    assert all(r["status"] == "ok" for r in out), [r["error"] for r in out if r["status"] != "ok"]
    P = np.array([[float(r[f"probability:{c}"]) for c in CLASSES] for r in out])
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    cut = _cutoffs(trained)
    k = (P - cut).argmax(axis=1)  # the frozen rule, written out
    assert [r["predicted_label"] for r in out] == [CLASSES[i] for i in k]
    # Exact: the same numbers in other columns of the results file, and the bundle's frozen
    # cutoffs, as repr() text.
    np.testing.assert_array_equal([float(r["probability"]) for r in out], P[np.arange(len(k)), k])
    np.testing.assert_array_equal([float(r["cutoff"]) for r in out], cut[k])
    assert all(r["label"] == x["label"] for r, x in zip(out, rows, strict=True))

    # the CLI report of the whole results CSV against sklearn
    cutoffs = ",".join(f"{c}={float(v)!r}" for c, v in zip(CLASSES, cut, strict=True))
    args = ["report", str(results), "--classes", ",".join(CLASSES), "--cutoffs", cutoffs]
    rc = cli.main([*args, "--report", str(tmp / "rep")])
    assert rc == 0
    y = np.array([CLASSES.index(r["label"]) for r in rows])
    _check_against_sklearn(tmp / "rep", y, P, cut)

    # the trainer's held-out report: the same predictions (cached radiomics of the same images)
    pred_by_id = {r["case_id"]: p for r, p in zip(out, P, strict=True)}
    test_ids = _heldout_ids(trained)
    Pt = np.array([pred_by_id[i] for i in test_ids])
    yt = np.array([CLASSES.index(next(r["label"] for r in rows if r["case_id"] == i)) for i in test_ids])
    _check_against_sklearn(work / "reports" / "multiclass_exact", yt, Pt, cut)


def _heldout_ids(trained: dict[str, Path]) -> list[str]:
    """The held-out case ids, from the bundle's recorded split (same seed, same plan)."""
    from DLRPredictorLib.training.config import load_config
    from DLRPredictorLib.training.splits import plan_splits

    with open(trained["manifest"], newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([CLASSES.index(r["label"]) for r in rows])
    groups = np.array([r["patient_id"] for r in rows])
    plan = plan_splits(labels, groups, load_config(trained["tmp"] / "c.yaml"))
    return [rows[i]["case_id"] for i in plan.test]


def _heldout_manifest(trained: dict[str, Path]) -> tuple[Path, list[dict[str, str]]]:
    """A manifest of the held-out cases only (tmp/heldout.csv), and its rows."""
    test_ids = set(_heldout_ids(trained))
    with open(trained["manifest"], newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["case_id"] in test_ids]
        columns = list(reader.fieldnames or [])
    heldout = trained["tmp"] / "heldout.csv"
    with open(heldout, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return heldout, rows


def _cutoffs(trained: dict[str, Path]) -> np.ndarray:
    """The bundle's frozen per-class cutoffs, in class order."""
    rule = json.loads((trained["bundle"] / "manifest.json").read_text())["task"]["decision_rule"]
    return np.array([rule["cutoffs"][c] for c in CLASSES])


def _check_against_sklearn(
    folder: Path, y: np.ndarray, P: np.ndarray, cut: np.ndarray, slack: float = 0.0
) -> None:
    """Every metric of a K-class report folder (JSON and CSV tables) against scikit-learn or the
    definition (1e-9 for AUCs: DeLong's and sklearn's trapezoid are two computations of one number).

    ``slack``: a wider tolerance when ``P`` are not the report's own probabilities but those of a
    second computation of them (e.g. a network's float32 features summed in another order)."""
    import pandas as pd
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        brier_score_loss,
        confusion_matrix,
        roc_auc_score,
    )
    from sklearn.preprocessing import label_binarize

    fine, coarse = max(1e-12, slack), max(1e-9, slack)
    rep = json.loads((folder / "metrics.json").read_text())
    assert rep["classes"] == CLASSES and rep["n"] == len(y)
    pred = (P - cut).argmax(axis=1)
    cm = confusion_matrix(y, pred, labels=[0, 1, 2])
    np.testing.assert_array_equal(rep["confusion"], cm)  # integer counts: exact
    table = pd.read_csv(folder / "confusion_matrix.csv", index_col=0)
    # Exact: integer counts.
    np.testing.assert_array_equal(table.to_numpy(), cm)
    assert list(table.columns) == CLASSES
    per_class = pd.read_csv(folder / "multiclass_metrics.csv")
    summary = pd.read_csv(folder / "multiclass_summary.csv").set_index("metric")["value"]
    assert summary["macro_auc"] == pytest.approx(roc_auc_score(y, P, multi_class="ovr"), abs=coarse)
    assert rep["macro_auc"] == pytest.approx(
        roc_auc_score(y, P, multi_class="ovr", average="macro"), abs=coarse
    )
    assert rep["micro_auc"] == pytest.approx(
        roc_auc_score(label_binarize(y, classes=[0, 1, 2]), P, average="micro"), abs=coarse
    )
    assert rep["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=fine)
    assert rep["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=fine)
    onehot = np.eye(3)[y]
    assert rep["multinomial_brier"] == pytest.approx(np.mean(np.sum((P - onehot) ** 2, axis=1)), abs=fine)
    for k, row in enumerate(rep["per_class"]):
        yk = (y == k).astype(int)
        assert row["class"] == CLASSES[k]
        assert row["auc"] == pytest.approx(roc_auc_score(yk, P[:, k]), abs=coarse)
        assert per_class.loc[k, "auc"] == pytest.approx(roc_auc_score(yk, P[:, k]), abs=coarse)
        assert per_class.loc[k, "brier"] == pytest.approx(brier_score_loss(yk, P[:, k]), abs=fine)
        tp = int(((pred == k) & (yk == 1)).sum())
        assert row["sensitivity"] == pytest.approx(tp / yk.sum(), abs=fine)
        tn = int(((pred != k) & (yk == 0)).sum())
        assert row["specificity"] == pytest.approx(tn / (len(yk) - yk.sum()), abs=fine)
        assert row["calibration"]["brier"] == pytest.approx(brier_score_loss(yk, P[:, k]), abs=fine)


def test_the_predict_path_imports_no_sklearn(trained: dict[str, Path]) -> None:
    """A fresh interpreter loads the K-class bundle and predicts a case without sklearn, torch, scipy."""
    from conftest import probe_first_prediction

    out = probe_first_prediction(trained["bundle"], trained["manifest"], heatmap=False)
    assert out["heavy"] == []
    assert sum(out["classes"].values()) == pytest.approx(1.0, abs=1e-12) and out["label"] in CLASSES


def test_decision_rule_and_spec_round_trip() -> None:
    """numpy rule == evaluation's rule; a spec round trip predicts bit-identically (same code path)."""
    from DLRPredictorLib.evaluation.multiclass import decide as evaluation_decide
    from DLRPredictorLib.models.multiclass_signature import MulticlassSignature, decide
    from DLRPredictorLib.training.multiclass_fit import balanced_accuracy, choose_cutoffs

    rng = np.random.default_rng(3)
    P = rng.dirichlet(np.ones(4), size=300)
    cut = rng.uniform(-0.2, 0.2, size=4)
    # Exact: the decisions are class indices (integers), not floats.
    np.testing.assert_array_equal(decide(P), evaluation_decide(P))
    np.testing.assert_array_equal(decide(P, cut), evaluation_decide(P, list(cut)))

    sig = MulticlassSignature(
        classes=["a", "b", "c"],
        columns=["x", "y"],
        mean=np.array([1.0, -2.0]),
        std=np.array([2.0, 0.5]),
        coef=rng.normal(size=(3, 2)),
        intercept=rng.normal(size=3),
    )
    X = rng.normal(size=(20, 2))
    again = MulticlassSignature.from_spec(json.loads(json.dumps(sig.to_spec())))
    # Exact: JSON round-trips floats exactly and both apply the same numpy code path.
    np.testing.assert_array_equal(again.predict_proba(X), sig.predict_proba(X))
    np.testing.assert_allclose(sig.predict_proba(X).sum(axis=1), 1.0, atol=1e-12)
    with pytest.raises(ConfigError):
        MulticlassSignature.from_spec({**sig.to_spec(), "coef": [[1.0, 2.0]]})

    # A model that under-calls class 2: per-class cutoffs recover balanced accuracy out of fold.
    y = rng.integers(0, 3, size=600)
    logits = np.eye(3)[y] * 2.0 + rng.normal(size=(600, 3))
    logits[:, 2] -= 1.5
    Q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    cuts, ba = choose_cutoffs(y, Q)
    assert cuts[0] == 0.0  # exact: the first class's cutoff is fixed at 0 (the others are relative to it)
    assert ba == pytest.approx(balanced_accuracy(y, decide(Q, cuts), 3), abs=1e-12)
    assert ba > balanced_accuracy(y, decide(Q), 3) + 0.02


def test_config_and_manifest_errors(tmp_path: Path) -> None:
    """Two classes or clinical variables with task.classes, an undeclared label: refused clearly
    (the settings a K-class network refuses: test_multiclass_dlr)."""
    from DLRPredictorLib.training.config import load_config
    from DLRPredictorLib.training.multiclass_fit import check_multiclass_config, class_label

    (tmp_path / "two.yaml").write_text("task: {classes: [a, b]}\n")
    with pytest.raises(ConfigError, match="at least three distinct"):
        load_config(tmp_path / "two.yaml")
    (tmp_path / "dup.yaml").write_text("task: {classes: [a, B, b]}\n")
    with pytest.raises(ConfigError, match="at least three distinct"):
        load_config(tmp_path / "dup.yaml")
    (tmp_path / "rule.yaml").write_text("task: {classes: [a, b, c], decision_rule: vote}\n")
    with pytest.raises(ConfigError, match="decision_rule"):
        load_config(tmp_path / "rule.yaml")
    (tmp_path / "clin.yaml").write_text(
        "task: {classes: [a, b, c]}\ncnn: {enabled: false}\n"
        "clinical: {variables: [{name: age, type: numeric}]}\n"
    )
    with pytest.raises(ConfigError, match="no nomogram"):
        check_multiclass_config(load_config(tmp_path / "clin.yaml"))
    assert class_label(" B ", ["a", "b", "c"], "row 2") == 1
    assert class_label("", ["a", "b", "c"], "row 2") is None
    with pytest.raises(ManifestError, match="label 'd' is not one of the declared classes"):
        class_label("d", ["a", "b", "c"], "row 2")


def test_the_scene_table_lists_every_class(trained: dict[str, Path], scene) -> None:
    """api.predict_nodes with a K-class bundle: the prediction table holds each class's probability,
    equal to the array API's for the same image, and the predicted class."""
    from DLRPredictorLib import api
    from DLRPredictorLib.inputs import images, lesion
    from DLRPredictorLib.scene import scene_io

    with open(trained["manifest"], newline="") as f:
        first = next(csv.DictReader(f))
    volume = images.read_image(first["image"])
    mask = lesion.read_mask(first["mask"], volume)
    node = scene_io.add_volume_node(scene, volume, "Image")
    seg, segment_id = scene_io.add_segmentation_from_mask(scene, mask, node, "Lesion segmentation", "Lesion")
    res = api.predict_nodes(node, seg, segment_id, bundle_path=trained["bundle"])
    ref = api.predict_arrays(
        volume.array[0], mask[0], bundle_path=trained["bundle"], heatmap=False, stability=True
    )
    assert res.class_probabilities == pytest.approx(ref.class_probabilities, abs=1e-12)
    items = dict(scene_io.read_key_value_table(scene.GetNodeByID(res.prediction_table_node_id)))
    # Exact: the table holds this result's own numbers as repr() text.
    assert {c: float(items[f"Probability ({c})"]) for c in CLASSES} == res.class_probabilities
    cut = dict(zip(CLASSES, _cutoffs(trained), strict=True))
    assert (
        items["Predicted class"]
        == res.label
        == max(CLASSES, key=lambda c: res.class_probabilities[c] - cut[c])
    )
    assert res.heatmap_node_id is None  # a K-class bundle has no network, so no heatmap
    assert NO_MULTICLASS_HEATMAP in res.warnings  # asked for by default: said, not silently dropped
    assert NO_MULTICLASS_HEATMAP not in ref.warnings  # heatmap=False asked for none
    # contour stability: the probability of the as-drawn class under each eroded / dilated outline
    stab = ref.stability
    assert stab is not None and stab.perturbations[0] == "as drawn" and len(stab.perturbations) > 1
    # Exact: the as-drawn entry is the prediction's own number.
    assert stab.probabilities[0] == ref.class_probabilities[ref.label]
    assert stab.spread == pytest.approx(max(stab.probabilities) - min(stab.probabilities), abs=0)


def test_evaluate_reproduces_the_heldout_report_and_is_ledgered(trained: dict[str, Path]) -> None:
    """`dlrpredictor evaluate` on the bundle's held-out cases: the K-class report equals the trainer's
    held-out report (same frozen steps on the same images; 1e-12 for sums in another order), and the
    scoring is the test set's second entry in the training ledger."""
    from DLRPredictorLib import cli

    tmp, work = trained["tmp"], trained["work"]
    heldout, rows = _heldout_manifest(trained)
    ledger = work / "heldout_ledger.jsonl"
    args = ["evaluate", str(heldout), "--bundle", str(trained["bundle"]), "--report", str(tmp / "ev")]
    assert cli.main([*args, "--jobs", "1", "--ledger", str(ledger)]) == 0
    ev = json.loads((tmp / "ev" / "metrics.json").read_text())
    held = json.loads((work / "reports" / "multiclass_exact" / "metrics.json").read_text())
    assert ev["confusion"] == held["confusion"] and ev["n"] == held["n"] == len(rows)
    for key in ("macro_auc", "micro_auc", "accuracy", "balanced_accuracy", "multinomial_brier"):
        assert ev[key] == pytest.approx(held[key], abs=1e-12)
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [e.get("source", "train") for e in entries] == ["train", "evaluate"]
    assert entries[0]["test_set_digest"] == entries[1]["test_set_digest"]
    assert entries[1]["aucs"]["evaluate"]["macro_auc"] == pytest.approx(held["macro_auc"], abs=1e-6)
    assert entries[0]["aucs"]["exact"]["macro_auc"] == pytest.approx(held["macro_auc"], abs=1e-6)
