"""A K-class DLR bundle: a network with K outputs, the K-class DL signature and the fused DLR.

- A three-class bundle (BUS-BRA histology, the sample of ``test_multiclass_training``) is trained
  through `dlrpredictor train` with the network on (ResNet-18 at 32 px, one epoch, two folds: seconds) and
  stacking fusion, and verified on load: it declares Rad, DL and DLR, the DLR answering.
- Every case is predicted through the predict path: each signature's class probabilities sum to
  1, the answer is the DLR's, and the DLR equals scikit-learn's multinomial LogisticRegression
  carrying the bundle's meta-model coefficients, applied to the Rad and DL columns (two
  implementations of the softmax, 1e-12).
- The report of the DLR (CLI) and train's held-out reports of Rad, DL and DLR are checked against
  scikit-learn computed from the predictions (``test_multiclass_training._check_against_sklearn``).
- The network's K-class monitor equals sklearn's macro one-vs-rest AUC; the predict path imports
  neither torch nor scikit-learn; K-class settings that are not offered are refused.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib.base.errors import ConfigError

# The sample, the manifest writer, the held-out ids and the report check are the radiomics-only
# K-class test's own: both bundles are trained on the same patients and checked the same way.
from test_multiclass_training import (
    CLASSES,
    _check_against_sklearn,
    _heldout_ids,
    _heldout_manifest,
    _histology_manifest,
)

SIGNATURES = ("rad", "dl", "dlr")
CONFIG = """
bundle_id: histology-3class-dlr-test
title: BUS-BRA histology, three classes, DLR (test)
seed: 0
task:
  name: histology
  description: Fibroadenoma vs invasive ductal carcinoma vs other histology
  classes: [fibroadenoma, invasive ductal carcinoma, other]
split: {test_fraction: 0.3, folds: 2}
cnn: {arch: resnet18, input_size: 32, epochs: 1, batch_size: 16, patience: 1, num_threads: 2}
contours: {variants: [exact]}
selection: {max_features: 6}
model: {fusion: stacking, pca_components: 4}
radiomics_parameters: original_only.yaml
"""


@pytest.fixture(scope="module")
def trained(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    """The three-class DLR bundle trained through `dlrpredictor train`, and its files."""
    from conftest import original_only_parameters
    from DLRPredictorLib import cli

    tmp = tmp_path_factory.mktemp("multiclass_dlr")
    manifest = _histology_manifest(shared_data, tmp / "histology.csv")
    (tmp / "original_only.yaml").write_text(original_only_parameters())
    (tmp / "c.yaml").write_text(CONFIG)
    args = ["train", str(manifest), "--config", str(tmp / "c.yaml"), "--out", str(tmp / "b")]
    assert cli.main([*args, "--work", str(tmp / "w")]) == 0
    return {"tmp": tmp, "manifest": manifest, "bundle": tmp / "b", "work": tmp / "w"}


def test_the_bundle_declares_rad_dl_and_the_dlr_answering(trained: dict[str, Path]) -> None:
    from DLRPredictorLib.inference.predictor import load_predictor

    pred = load_predictor(trained["bundle"])  # verified: schema, checksums, pipeline vs manifest
    models = pred.manifest["models"]
    assert models["default"] == models["image_only"] == "dlr"
    assert models["signatures"] == list(SIGNATURES) and models["fusion"] == "stacking"
    assert pred.pipeline.uses_cnn and pred.deep_model().num_classes == len(CLASSES)
    assert pred.signature_names == [f"{s}:{c}" for s in SIGNATURES for c in CLASSES]
    assert "cnn.safetensors" in pred.manifest["files"]
    by_sig = pred.manifest["metrics"]["by_signature"]
    assert set(by_sig) == {"oof", "exact", "ellipse"} and all(
        set(v) == set(SIGNATURES) for v in by_sig.values()
    )
    card = (trained["bundle"] / "model_card.md").read_text(encoding="utf-8")
    assert "multinomial logistic meta-model" in card and "No nomogram is offered" in card


def test_predictions_fusion_and_reports_match_independent_computations(trained: dict[str, Path]) -> None:
    from DLRPredictorLib import cli
    from DLRPredictorLib.cohort.batch import predict_cohort_in_process
    from sklearn.linear_model import LogisticRegression

    tmp, work = trained["tmp"], trained["work"]
    with open(trained["manifest"], newline="") as f:
        rows = list(csv.DictReader(f))
    results = tmp / "results.csv"
    predict_cohort_in_process(trained["manifest"], results, trained["bundle"], show_progress=False)
    with open(results, newline="") as f:
        out = list(csv.DictReader(f))
    assert all(r["status"] == "ok" for r in out), [r["error"] for r in out if r["status"] != "ok"]
    assert {r["model_used"] for r in out} == {"DLR (K-class, stacking, argmax)"}
    P = {s: np.array([[float(r[f"score_{s}:{c}"]) for c in CLASSES] for r in out]) for s in SIGNATURES}
    for s in SIGNATURES:
        np.testing.assert_allclose(P[s].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    answer = np.array([[float(r[f"probability:{c}"]) for c in CLASSES] for r in out])
    np.testing.assert_array_equal(answer, P["dlr"])  # the DLR answers: the same numbers, written twice
    assert [r["predicted_label"] for r in out] == [CLASSES[i] for i in answer.argmax(axis=1)]

    # the stacking DLR, recomputed by sklearn from the Rad and DL columns and the bundle's meta-model
    fusion = json.loads((trained["bundle"] / "pipeline.json").read_text())["deep"]["fusion"]
    meta = LogisticRegression()
    meta.classes_ = np.arange(len(CLASSES))
    meta.coef_, meta.intercept_ = np.array(fusion["coef"]), np.array(fusion["intercept"])
    X = np.log(np.maximum(np.hstack([P["rad"], P["dl"]]), 1e-12))
    np.testing.assert_allclose(meta.predict_proba(X), P["dlr"], rtol=0, atol=1e-12)
    assert not np.allclose(P["dlr"], P["rad"], atol=1e-3) and not np.allclose(P["dlr"], P["dl"], atol=1e-3)

    # the CLI report of the DLR against sklearn, and train's held-out reports of every signature
    args = ["report", str(results), "--classes", ",".join(CLASSES), "--report", str(tmp / "rep")]
    assert cli.main(args) == 0
    y = np.array([CLASSES.index(r["label"]) for r in rows])
    no_cut = np.zeros(len(CLASSES))
    _check_against_sklearn(tmp / "rep", y, answer, no_cut)
    test_ids = set(_heldout_ids(trained))
    held = np.array([r["case_id"] in test_ids for r in out])
    assert 0 < held.sum() < len(out)
    reports = work / "reports"
    # Train scored these cases with the network's pooled features computed there; prediction
    # computed them again (float32, other thread counts: another summation order), which moves the
    # DL and DLR probabilities by about 1e-10: hence 1e-6 for those reports, the usual for Rad.
    jobs = [
        ("dlr", "multiclass_exact", 1e-6),
        ("rad", "multiclass_exact_rad", 0.0),
        ("dl", "multiclass_exact_dl", 1e-6),
    ]
    for s, folder, slack in jobs:
        _check_against_sklearn(reports / folder, y[held], P[s][held], no_cut, slack)


def test_the_predict_path_imports_no_torch_or_sklearn(trained: dict[str, Path]) -> None:
    """A fresh interpreter loads the DLR bundle and predicts a case with the numpy CNN engine."""
    from conftest import probe_first_prediction

    out = probe_first_prediction(trained["bundle"], trained["manifest"], heatmap=True)
    assert out["heavy"] == [] and out["model"].startswith("DLR") and out["heatmap"] is False
    for s in SIGNATURES:
        assert sum(out["scores"][f"{s}:{c}"] for c in CLASSES) == pytest.approx(1.0, abs=1e-12)


def test_a_k_class_network_trains_with_k_outputs_and_its_monitor_is_macro_ovr_auc() -> None:
    """train_cnn with num_classes 3 on synthetic crops; its validation AUC against sklearn."""
    from DLRPredictorLib.training.cnn import macro_ovr_auc, train_cnn
    from DLRPredictorLib.training.cnn_config import CnnTrainConfig
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    crops = rng.normal(size=(36, 32, 32)).astype(np.float32) + y[:, None, None] * 0.5
    cfg = CnnTrainConfig(
        input_size=32, epochs=1, batch_size=12, num_threads=1, num_classes=3, val_fraction=0.34
    )
    result = train_cnn(crops, y, cfg)
    assert result.model().num_classes == 3 and result.state_dict["fc.weight"].shape[0] == 3
    prob = rng.dirichlet(np.ones(3), size=60)
    labels = rng.integers(0, 3, size=60)
    assert macro_ovr_auc(labels, prob) == pytest.approx(
        roc_auc_score(labels, prob, multi_class="ovr"), abs=1e-12
    )
    assert "num_classes" not in CnnTrainConfig().resume_key()  # two-class checkpoints resume as before
    with pytest.raises(ConfigError, match="num_classes"):
        CnnTrainConfig(num_classes=1).validate()


def test_k_class_settings_not_offered_are_refused(tmp_path: Path) -> None:
    from DLRPredictorLib.training.config import load_config
    from DLRPredictorLib.training.multiclass_fit import check_multiclass_config

    (tmp_path / "early.yaml").write_text("task: {classes: [a, b, c]}\nmodel: {fusion: early}\n")
    with pytest.raises(ConfigError, match="early fusion is not offered"):
        check_multiclass_config(load_config(tmp_path / "early.yaml"))
    (tmp_path / "svm.yaml").write_text("task: {classes: [a, b, c]}\nmodel: {dl_classifier: svm}\n")
    with pytest.raises(ConfigError, match="dl_classifier: lr"):
        check_multiclass_config(load_config(tmp_path / "svm.yaml"))
    (tmp_path / "dlr.yaml").write_text("task: {classes: [a, b, c]}\n")  # defaults: network on, stacking
    check_multiclass_config(load_config(tmp_path / "dlr.yaml"))


def test_evaluate_reports_the_dlr_and_each_signature(trained: dict[str, Path]) -> None:
    """`dlrpredictor evaluate` of the held-out cases: the DLR's report and, beside it, the Rad and DL
    signatures' (``REPORT_rad``, ``REPORT_dl``), each against sklearn on its own columns of the
    predictions CSV; Rad equals train's held-out Rad report (same radiomics, same numpy steps)."""
    from DLRPredictorLib import cli

    tmp, work = trained["tmp"], trained["work"]
    heldout, rows = _heldout_manifest(trained)
    args = ["evaluate", str(heldout), "--bundle", str(trained["bundle"]), "--report", str(tmp / "ev")]
    assert cli.main([*args, "--jobs", "1", "--ledger", str(tmp / "ev_ledger.jsonl")]) == 0
    with open(tmp / "ev_predictions.csv", newline="") as f:
        out = list(csv.DictReader(f))
    y = np.array([CLASSES.index(r["label"]) for r in out])
    no_cut = np.zeros(len(CLASSES))
    for s, folder in (("dlr", "ev"), ("rad", "ev_rad"), ("dl", "ev_dl")):
        P = np.array([[float(r[f"score_{s}:{c}"]) for c in CLASSES] for r in out])
        _check_against_sklearn(tmp / folder, y, P, no_cut)
    ev = json.loads((tmp / "ev_rad" / "metrics.json").read_text())
    held = json.loads((work / "reports" / "multiclass_exact_rad" / "metrics.json").read_text())
    assert ev["confusion"] == held["confusion"] and ev["n"] == held["n"] == len(rows)
    assert ev["macro_auc"] == pytest.approx(held["macro_auc"], abs=1e-12)


def test_fusion_ensemble_stacking_terms_and_spec() -> None:
    """Ensemble = the members' mean; stacking's per-class terms add up to its softmax inputs; a spec
    round trip predicts bit-identically (same code path); an inconsistent spec is refused."""
    from DLRPredictorLib.models.multiclass_fusion import MulticlassFusion, fit_multiclass_fusion

    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, size=240)
    members = [rng.dirichlet(np.ones(3), size=240) * 0.5 + np.eye(3)[y] * 0.5 for _ in range(2)]
    classes, names = ["a", "b", "c"], ["rad", "dl"]
    ens = fit_multiclass_fusion("ensemble", members, y, classes, names)
    np.testing.assert_allclose(ens.predict_proba(members), (members[0] + members[1]) / 2, rtol=0, atol=1e-15)
    stk = fit_multiclass_fusion("stacking", members, y, classes, names, groups=np.arange(240), cv=3)
    P = stk.predict_proba(members)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    scores = np.array(
        [[sum(v for _, v in stk.terms([m[i] for m in members], k)) for k in range(3)] for i in range(5)]
    )
    soft = np.exp(scores - scores.max(axis=1, keepdims=True))
    np.testing.assert_allclose(soft / soft.sum(axis=1, keepdims=True), P[:5], rtol=0, atol=1e-12)
    again = MulticlassFusion.from_spec(json.loads(json.dumps(stk.to_spec())))
    # Exact: the spec round trip rebuilds the same numbers and predict_proba runs the same code path.
    np.testing.assert_array_equal(again.predict_proba(members), P)
    with pytest.raises(ConfigError, match="inconsistent"):
        MulticlassFusion.from_spec({**stk.to_spec(), "coef": [[0.0] * 6] * 2})
