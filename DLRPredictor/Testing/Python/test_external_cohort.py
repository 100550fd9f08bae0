"""Cross-dataset protocol: `split.external_dataset` holds a whole dataset out of training and
selection and reports it apart from the within-dataset held-out split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import original_only_parameters
from DLRPredictorLib.base.errors import ConfigError, InputError
from DLRPredictorLib.training.config import SplitConfig, TrainConfig, validate
from DLRPredictorLib.training.splits import plan_external


def _config(**split) -> TrainConfig:
    return TrainConfig(split=SplitConfig(test_fraction=0.25, folds=2, **split))


def test_the_external_dataset_is_held_out_whole_and_only_the_rest_is_split():
    n = 60
    groups = np.array([f"p{i // 2}" for i in range(n)])  # two images per patient
    labels = np.array([int(i // 2) % 2 for i in range(n)])
    datasets = np.array(["B" if (i // 2) % 5 == 0 else "A" for i in range(n)])
    plan = plan_external(labels, groups, datasets, _config(external_dataset="B"))
    ext = np.flatnonzero(datasets == "B")
    assert set(ext) <= set(plan.test)  # the whole external cohort is held out
    assert not set(plan.train) & set(ext)  # none of it trains
    fold_cases = {int(plan.train[j]) for f in plan.folds for j in f}
    assert fold_cases == set(plan.train.tolist())  # folds are positions into the training split
    within = np.setdiff1d(plan.test, ext)
    assert len(within) > 0 and set(datasets[within]) == {"A"}
    assert not set(groups[plan.train]) & set(groups[plan.test])  # patients stay on one side


def test_an_unknown_or_overlapping_external_dataset_is_refused():
    groups = np.array(["p1", "p2", "p3", "p4", "p1"])
    labels = np.array([0, 1, 0, 1, 0])
    with pytest.raises(
        InputError, match=r"'C': no case of the manifest belongs to it \(dataset values: A, B\)"
    ):
        plan_external(labels, groups, np.array(["A", "A", "B", "B", "A"]), _config(external_dataset="C"))
    with pytest.raises(InputError, match="1 patient\\(s\\) have cases in it and in another dataset"):
        plan_external(labels, groups, np.array(["A", "A", "B", "B", "B"]), _config(external_dataset="B"))
    with pytest.raises(ConfigError, match=r"must name a value of the manifest's dataset column"):
        validate(_config(external_dataset=" "))


def test_a_test_manifest_gives_the_within_dataset_split_beside_the_external_cohort():
    # Training manifest: A-cases 0-5 and the external B-cases 6-7; test manifest: A-cases 8-9.
    datasets = np.array(["A"] * 6 + ["B"] * 2 + ["A"] * 2)
    groups = np.array([f"p{i}" for i in range(10)])
    labels = np.array([0, 1] * 5)
    plan = plan_external(labels, groups, datasets, _config(external_dataset="B"), n_external=2)
    assert plan.test.tolist() == [6, 7, 8, 9]  # the external cohort whole and the test manifest's cases
    assert plan.train.tolist() == [0, 1, 2, 3, 4, 5]  # no random test split is drawn from the rest


@pytest.fixture(scope="module")
def external_run(tmp_path_factory, synthetic_cohort) -> tuple[Path, Path, set[str]]:
    """A radiomics-only bundle trained with one dataset held out as an external cohort."""
    from DLRPredictorLib.training import trainer

    root = tmp_path_factory.mktemp("external")
    rows = list(csv.DictReader(open(synthetic_cohort, encoding="utf-8")))
    base = Path(synthetic_cohort).parent
    ext_ids = set()
    for r in rows:
        r["image"], r["mask"] = str(base / r["image"]), str(base / r["mask"])
        r["dataset"] = "Ext" if int(r["patient_id"][3:]) % 4 == 0 else "Main"
        if r["dataset"] == "Ext":
            ext_ids.add(r["case_id"])
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "original_only.yaml").write_text(original_only_parameters())
    cfg = root / "ext.yaml"
    cfg.write_text(
        "bundle_id: ext-test\nseed: 0\nradiomics_parameters: original_only.yaml\n"
        "split: {test_fraction: 0.25, folds: 2, external_dataset: Ext}\n"
        "cnn: {enabled: false}\ncontours: {variants: [exact]}\nselection: {max_features: 8}\n"
        "model: {grid_search: false}\n"
    )
    bundle = trainer.train_from_manifest(
        manifest, root / "bundle", cfg, work_dir=root / "work", log=lambda _: None
    )
    return bundle, root / "work", ext_ids


def test_a_bundle_reports_the_external_cohort_apart_and_never_trained_on_it(external_run):
    bundle, work, ext_ids = external_run
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest["training"]["counts"]
    assert manifest["training"]["split"]["external_dataset"] == "Ext"
    assert counts["external_cases"] == len(ext_ids) > 0
    heldout = manifest["metrics"]["heldout"]
    assert heldout["exact:external:Ext"]["n"] == len(ext_ids)
    assert heldout["exact"]["n"] == counts["test_cases"] - len(ext_ids)  # within-dataset split only
    # every training row of the fitted steps (the out-of-fold scores) comes from the other dataset
    oof = pd.read_csv(work / "oof_scores.csv")
    assert not set(oof["case_id"].astype(str)) & ext_ids
    card = (bundle / "model_card.md").read_text(encoding="utf-8")
    assert "### exact contours, external cohort Ext (no case of it in training or selection)" in card
    assert "### exact contours, within-dataset held-out split" in card
    assert f"every case of dataset **Ext** ({len(ext_ids)} images" in card
