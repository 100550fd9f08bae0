"""Per-group (scanner, site) AUCs in reports, and a leave-one-group-out training with the ICC screen."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from conftest import original_only_parameters
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.cohort.batch import _group_by_case
from DLRPredictorLib.evaluation.report_csv import report_from_predictions_csv
from DLRPredictorLib.evaluation.subgroups import MIN_PER_CLASS, subgroup_rows
from DLRPredictorLib.inputs.cohort_csv import CohortRow
from DLRPredictorLib.inputs.synthetic_cohort import write_cohort
from DLRPredictorLib.training import trainer as training
from sklearn.metrics import roc_auc_score


def _data(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 300
    device = rng.choice(["GE", "Philips", "Toshiba", "Siemens"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    y = rng.integers(0, 2, n)
    shift = pd.Series(device).map({"GE": 1.5, "Philips": 1.0, "Toshiba": 0.5, "Siemens": 0.0}).to_numpy()
    z = shift * y + rng.normal(size=n)
    return pd.DataFrame({"label": y, "score": 1 / (1 + np.exp(-z)), "device": device})


def test_per_group_auc_n_and_events_match_sklearn_and_pandas():
    df = _data()
    rows = subgroup_rows(df["label"], {"score": df["score"]}, df["device"])
    counts = df.groupby("device")["label"].agg(["size", "sum"])
    assert [r["group"] for r in rows] == [*sorted(counts.index), "all"]
    for r in rows:
        part = df if r["group"] == "all" else df[df["device"] == r["group"]]
        assert (r["n"], r["events"]) == (len(part), int(part["label"].sum()))
        assert r["auc"] == pytest.approx(roc_auc_score(part["label"], part["score"]), abs=1e-12)
        assert r["ci_low"] <= r["auc"] <= r["ci_high"]
    # the scores separate GE cases best and Siemens cases not at all (by construction)
    auc = {r["group"]: r["auc"] for r in rows}
    assert auc["GE"] > auc["Siemens"]


def test_a_one_class_group_has_no_auc_and_a_small_one_is_flagged():
    y = np.array([1, 0] * 15 + [1, 1, 1] + [1, 0, 0, 1])
    s = np.linspace(0, 1, y.size)
    g = np.array(["big"] * 30 + ["one"] * 3 + ["small"] * 4)
    rows = {r["group"]: r for r in subgroup_rows(y, {"s": s}, g)}
    assert rows["one"]["auc"] is None and "one class" in rows["one"]["note"]
    assert rows["small"]["auc"] is not None and str(MIN_PER_CLASS) in rows["small"]["note"]
    assert rows["big"]["note"] == ""
    with pytest.raises(InputError, match="group values"):
        subgroup_rows(y, {"s": s}, g[:-1])


def test_the_report_gets_a_per_group_table(tmp_path):
    df = _data(1)
    path = tmp_path / "pred.csv"
    df.to_csv(path, index=False)
    out = report_from_predictions_csv(path, "label", ["score"], tmp_path / "r", group_column="device")
    table = pd.read_csv(out / "subgroups.csv")
    assert set(table["device"]) == {"GE", "Philips", "Toshiba", "Siemens", "all"}
    ge = table[table["device"] == "GE"].iloc[0]
    part = df[df["device"] == "GE"]
    assert ge["auc"] == pytest.approx(roc_auc_score(part["label"], part["score"]), abs=1e-9)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["subgroups"]["column"] == "device"
    assert "Per device" in (out / "index.html").read_text(encoding="utf-8")
    with pytest.raises(InputError, match="Group column 'site' not found"):
        report_from_predictions_csv(path, "label", ["score"], tmp_path / "r2", group_column="site")


def test_evaluate_refuses_a_group_column_the_manifest_lacks():
    row = CohortRow(2, "c1", "a.png", "m.png", None, None, extra={"device": "GE"})
    assert _group_by_case([row], "device") == {"c1": "GE"}
    with pytest.raises(InputError, match="no column 'site'"):
        _group_by_case([row], "site")


LOGO_CONFIG = """
bundle_id: logo-test
title: Leave-one-site-out check (radiomics only)
seed: 0
split: {test_fraction: 0.25, fold_column: site}
cnn: {enabled: false}
contours: {variants: [exact, erode2, dilate2]}
selection: {max_features: 8, icc_min: 0.9}
model: {grid_search: false}
radiomics_parameters: original_only.yaml
"""


def test_leave_one_site_out_training_with_the_icc_screen(tmp_path):
    manifest = write_cohort(tmp_path / "cohort", n_cases=48, seed=5, signal=True)
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    sites = ("north", "south", "west")
    for r in rows:  # one site per patient
        r["site"] = sites[sum(map(ord, r["patient_id"])) % 3]
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "original_only.yaml").write_text(original_only_parameters())
    (tmp_path / "c.yaml").write_text(LOGO_CONFIG)
    work = tmp_path / "work"
    bundle = training.train_from_manifest(
        manifest, tmp_path / "b", tmp_path / "c.yaml", work_dir=work, log=lambda s: None
    )

    icc = pd.read_csv(work / "reports" / "icc.csv")
    assert set(icc["variants"]) == {"exact,erode2,dilate2"}
    np.testing.assert_array_equal(icc["kept"].to_numpy(), ~(icc["icc21"] < 0.9))
    assert 0 < int(icc["kept"].sum()) < len(icc)  # the screen dropped some, kept some
    rad = json.loads((bundle / "pipeline.json").read_text(encoding="utf-8"))["rad"]["signature"]
    # the final Rad signature chose among the kept features only
    assert rad["columns"] == rad["selector"]["input_names"] == icc.loc[icc["kept"], "feature"].tolist()

    logo = pd.read_csv(work / "reports" / "leave_one_group_out.csv")
    oof = pd.read_csv(work / "oof_scores.csv")
    oof = oof[oof["variant"] == "exact"]
    site_of = {r["case_id"]: r["site"] for r in rows}
    oof["site"] = oof["case_id"].map(site_of)
    for site, part in oof.groupby("site"):
        got = logo[(logo["score"] == "rad") & (logo["group"] == site)].iloc[0]
        assert got["n"] == len(part)
        if part["label"].nunique() == 2:
            assert got["auc"] == pytest.approx(roc_auc_score(part["label"], part["score_rad"]), abs=1e-9)
    card = (bundle / "model_card.md").read_text(encoding="utf-8")
    assert "## Robustness" in card and "Leave-one-site-out" in card and "ICC(2,1)" in card
    metrics = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["metrics"]
    assert metrics["robustness"]["icc"]["dropped"] == int((~icc["kept"]).sum())
    assert metrics["robustness"]["leave_one_group_out"]["column"] == "site"
