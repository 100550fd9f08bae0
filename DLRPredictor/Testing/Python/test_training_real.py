"""A small end-to-end training on real BrEaST-Lesions-USG images (skipped without ../shared/data).

40 cases (20 malignant, 20 benign) with age and BI-RADS; a tiny CNN and Original-image radiomics
keep it to a couple of minutes. The bundle must load, verify, predict and evaluate. Performance
is not asserted here (10 held-out images): the synthetic leakage check and the default bundle's
model card carry that.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from DLRPredictorLib.bundle import verify as bundle
from DLRPredictorLib.cohort import batch
from DLRPredictorLib.features import radiomics as rf
from DLRPredictorLib.inference import predictor
from DLRPredictorLib.training import trainer as training

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

N_PER_CLASS = 20
N_EVAL_PER_CLASS = 3
CONFIG = """
bundle_id: real-tiny
title: Tiny real-data bundle (BrEaST subset, test only)
seed: 0
split: {{test_fraction: 0.25, folds: 2}}
cnn: {{arch: resnet18, input_size: 64, epochs: 2, batch_size: 16, patience: 2, num_threads: 2}}
contours: {{variants: [exact]}}
selection: {{max_features: 8}}
model: {{grid_search: false, pca_components: 4}}
radiomics_parameters: {params}
licence: "BrEaST-Lesions-USG, CC BY 4.0"
citation: ["Pawlowska A. et al., Scientific Data 11, 148 (2024)"]
training_data: ["BrEaST-Lesions-USG: {n} cases"]
clinical:
  variables:
    - {{name: age, type: numeric, unit: years, minimum: 10, maximum: 110, label: Age}}
    - {{name: birads, type: categorical, label: BI-RADS, allowed: ["1", "2", "3", "4a", "4b", "4c", "5"],
       ordinal_values: [1, 2, 3, 4.2, 4.5, 4.8, 5]}}
"""
COLUMNS = ["case_id", "image", "mask", "label", "patient_id", "spacing_mm", "age", "birads"]
#: Start of every patient id of the manifests: it must appear in no output file.
PATIENT_TOKEN = "pid-q7x3-"


def _write_manifest(path: Path, cases: list) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for c in cases:
            writer.writerow(
                {
                    "case_id": c.case_id,
                    "image": str(c.image),
                    "mask": str(c.mask),
                    "label": "malignant" if c.label else "benign",
                    "patient_id": PATIENT_TOKEN + c.case_id[len("breast") :],  # one image per patient
                    "spacing_mm": f"{c.spacing_mm:g}" if c.spacing_mm else "",
                    "age": "" if c.age is None else f"{c.age:g}",
                    "birads": c.birads or "",
                }
            )
    return path


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, breast_cases) -> dict[str, Path]:
    """Train a tiny bundle on 40 BrEaST cases; a manifest of 6 other cases for prediction."""
    root = tmp_path_factory.mktemp("real")
    # cases with an age, so that every held-out case has the clinical values the comparators need
    ordered = sorted((c for c in breast_cases if c.age is not None), key=lambda c: c.case_id)
    malignant = [c for c in ordered if c.label == 1]
    benign = [c for c in ordered if c.label == 0]
    train = malignant[:N_PER_CLASS] + benign[:N_PER_CLASS]
    other = (
        malignant[N_PER_CLASS : N_PER_CLASS + N_EVAL_PER_CLASS]
        + benign[N_PER_CLASS : N_PER_CLASS + N_EVAL_PER_CLASS]
    )
    params = yaml.safe_load(Path(rf.DEFAULT_PARAMETERS).read_text(encoding="utf-8"))
    params["imageType"] = {"Original": {}}  # fast: the full file is exercised by the default bundle
    light = root / "original_only.yaml"
    light.write_text(yaml.safe_dump(params), encoding="utf-8")
    config = root / "config.yaml"
    config.write_text(CONFIG.format(params=light.as_posix(), n=len(train)), encoding="utf-8")
    manifest = _write_manifest(root / "train.csv", train)
    out = training.train_from_manifest(
        manifest, root / "bundle", config, work_dir=root / "work", log=lambda line: None
    )
    return {
        "bundle": out,
        "config": config,
        "train": manifest,
        "other": _write_manifest(root / "other.csv", other),
        "root": root,
    }


def test_real_bundle_loads_and_verifies(real_run):
    verified = bundle.load_bundle(real_run["bundle"])
    manifest = verified.manifest
    assert {"cnn.safetensors", "pipeline.json", "pipeline.npz", "radiomics.yaml", "model_card.md"} <= set(
        verified.files
    )
    counts = manifest["training"]["counts"]
    assert counts["cases"] + counts["excluded"] == 2 * N_PER_CLASS
    assert counts["excluded"] == 0
    assert counts["train_positive"] + counts["test_positive"] == N_PER_CLASS
    assert 0.0 < manifest["cutoff"] < 1.0
    assert manifest["training"]["datasets"] == [f"BrEaST-Lesions-USG: {2 * N_PER_CLASS} cases"]
    assert "CC BY 4.0" in (real_run["bundle"] / "model_card.md").read_text(encoding="utf-8")
    pred = predictor.load_predictor(real_run["bundle"])
    assert {"rad", "dl", "dlr"} <= set(pred.signature_names)
    if "combined" in pred.signature_names:  # a clinical model was fitted: it declares its inputs
        assert [v.name for v in pred.clinical_variables] == ["age", "birads"]


@pytest.fixture(scope="module")
def evaluation(real_run) -> Path:
    return batch.evaluate_cohort(
        real_run["other"], real_run["root"] / "eval", bundle_path=real_run["bundle"]
    )


def test_real_bundle_predicts_and_evaluates_unseen_cases(real_run, evaluation):
    report = evaluation
    assert (report / "index.html").is_file() and (report / "metrics.csv").is_file()
    # evaluate_cohort runs batch.predict_cohort: its results CSV is checked here.
    results = pd.read_csv(report.with_name(report.name + "_predictions.csv"))
    assert len(results) == 2 * N_EVAL_PER_CLASS
    assert (results["status"] == "ok").all(), results["error"].tolist()
    manifest = json.loads((real_run["bundle"] / "manifest.json").read_text(encoding="utf-8"))
    image_only = f"score_{manifest['models']['image_only']}"
    scores = [c for c in results.columns if c.startswith("score_")]
    assert results["probability"].between(0.0, 1.0).all()  # never empty for an ok row
    assert results[image_only].notna().all()
    for column in scores:
        assert results[column].dropna().between(0.0, 1.0).all(), column
    if "score_combined" in results:
        # A case lacking a clinical value the nomogram needs is answered by the image-only model.
        missing = results["score_combined"].isna()
        # Exact: the probability is the answering model's score, the same number written twice
        # (beside its recalibration when the bundle has a step).
        answer = "probability_uncalibrated" if "probability_uncalibrated" in results else "probability"
        assert (results.loc[missing, answer] == results.loc[missing, image_only]).all()
        assert results.loc[missing, "model_used"].str.contains("image only").all()
        # Exact: the same number written twice, as above.
        assert (results.loc[~missing, "probability"] == results.loc[~missing, "score_combined"]).all()
    assert set(results["predicted_label"]) <= {"malignant", "benign"}
    assert results["bundle_id"].str.startswith("real-tiny@").all()
    # the frozen cutoffs, the image-only one on the scale of its recalibrated probability (the
    # same number when the bundle has no recalibration step)
    pipe = predictor.load_predictor(real_run["bundle"]).pipeline
    image_cut = pipe.calibrated_cutoff(manifest["models"]["image_only"])
    cutoffs = [*manifest["models"]["cutoffs"].values(), image_cut]
    assert results["cutoff"].isin(cutoffs).all()
    metrics = pd.read_csv(report / "metrics.csv")
    # The report compares every score on the same cases: rows lacking any score are left out.
    complete = int(results[["probability", *scores]].notna().all(axis=1).sum())
    assert complete >= 2 * N_EVAL_PER_CLASS - 2
    assert (metrics["n"] == complete).all()
    assert metrics["auc"].between(0.0, 1.0).all()


def test_real_bundle_in_process_prediction_matches_the_batch(real_run, evaluation):
    from DLRPredictorLib.inputs import images, lesion

    pred = predictor.load_predictor(real_run["bundle"])
    with open(real_run["other"], newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    volume = images.read_image(row["image"], spacing_mm=float(row["spacing_mm"]))
    mask = lesion.read_mask(row["mask"], volume)
    clinical = {k: row[k] for k in ("age", "birads") if row[k]}
    result = pred.predict(volume, mask, clinical, heatmap=False, case=row["case_id"])
    assert 0.0 <= result.probability <= 1.0
    assert result.label in ("malignant", "benign")
    results = pd.read_csv(evaluation.with_name(evaluation.name + "_predictions.csv")).set_index("case_id")
    assert results.loc[row["case_id"], "probability"] == pytest.approx(result.probability, abs=1e-6)


def _heldout_split(real_run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and held-out rows of the manifest, by the run's own patient-level split."""
    from DLRPredictorLib.training.config import load_config
    from DLRPredictorLib.training.splits import plan_splits

    rows = pd.read_csv(real_run["train"], dtype={"birads": str})
    labels = (rows["label"] == "malignant").to_numpy(int)
    plan = plan_splits(labels, rows["patient_id"].to_numpy(), load_config(real_run["config"]))
    return rows.iloc[plan.train], rows.iloc[plan.test]


def test_heldout_evidence_in_card_and_report(real_run):
    """Clustered and bootstrap intervals, the reader comparison and the clinical-only and
    BI-RADS-only rows: in the model card and the held-out report, their AUCs equal to sklearn's
    on an independent refit of the comparators."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    card = (real_run["bundle"] / "model_card.md").read_text(encoding="utf-8")
    assert "clustered CI (Obuchowski)" in card and "Holm-adjusted" in card
    assert "| BI-RADS only |" in card and "| Clinical only (no image score) |" in card
    assert "**Beyond the reader:**" in card
    entry = json.loads((real_run["root"] / "work" / "reports" / "heldout_full.json").read_text())["exact"]
    train, test = _heldout_split(real_run)
    assert entry["n"] == len(test) and entry["all"]["clusters"]["n_clusters"] == len(test)
    for res in entry["all"]["scores"].values():
        # one image per patient: Obuchowski's variance is DeLong's (an identity of the estimator)
        assert res["auc_clustered"]["se"] == pytest.approx(res["auc"]["se"], rel=1e-9)
        assert res["auc_bootstrap"]["ci_low"] <= res["auc"]["auc"] <= res["auc_bootstrap"]["ci_high"]
    block = entry["clinical_subset"]
    y = (test["label"] == "malignant").to_numpy(int)
    pipe = predictor.load_predictor(real_run["bundle"]).pipeline
    order = {"1": 1, "2": 2, "3": 3, "4a": 4.2, "4b": 4.5, "4c": 4.8, "5": 5}  # the config's ordinal_values

    def design(rows: pd.DataFrame, names: list[str]) -> np.ndarray:
        cols = {"age": rows["age"].to_numpy(float), "birads": rows["birads"].map(order).to_numpy(float)}
        return np.column_stack([cols[n] for n in names])

    # BI-RADS alone: a monotone model of the ordinal, so its AUC is the reader's rank AUC
    birads_auc = roc_auc_score(y, test["birads"].map(order))
    assert block["scores"]["birads_only"]["auc"]["auc"] == pytest.approx(birads_auc, abs=1e-12)
    assert block["reader_comparison"]["reader"]["auc"] == pytest.approx(birads_auc, abs=1e-12)
    # clinical only: the combined model's predictors without the image score, refitted here
    # (sklearn, nearly unpenalised; statsmodels in the code): the same ranking of the held-out cases
    names = list(pipe.combined.names)
    y_train = (train["label"] == "malignant").to_numpy(int)
    lr = LogisticRegression(C=1e8, max_iter=100000).fit(design(train, names), y_train)
    clinical_auc = roc_auc_score(y, lr.predict_proba(design(test, names))[:, 1])
    assert block["scores"]["clinical_only"]["auc"]["auc"] == pytest.approx(clinical_auc, abs=1e-12)
    rows = {r["score"]: r for r in block["reader_comparison"]["rows"]}
    assert rows["clinical_only"]["role"] == "clinical-only"
    for name in (pipe.image_only_model, "combined"):
        assert {"nri_categorical", "nri_continuous", "idi"} <= set(rows[name])
        assert f"{rows[name]['auc']:.3f}" in card
    assert f"{clinical_auc:.3f}" in card and f"{birads_auc:.3f}" in card
    reports = real_run["root"] / "work" / "reports"
    assert (reports / "heldout_exact_clinical" / "reader_comparison.csv").is_file()


def test_no_patient_id_in_any_output(real_run, evaluation):
    """Patient ids group the statistics only: no file the run or the evaluation wrote holds one."""
    inputs = {real_run["train"], real_run["other"]}
    files = [p for p in real_run["root"].rglob("*") if p.is_file() and p not in inputs]
    assert len(files) > 20
    for path in files:
        assert PATIENT_TOKEN.encode() not in path.read_bytes(), path
