"""The readers as comparator (BI-RADS) and the report's patient-level sections: values against
sklearn, statsmodels and hand counts; files, stable columns and no patient id in any output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.evaluation import report
from DLRPredictorLib.evaluation.bootstrap import BootstrapSettings
from DLRPredictorLib.evaluation.reader import compare_with_reader, parse_birads, policy_net_benefit
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

SETTINGS = BootstrapSettings(n_resamples=300, seed=9)
#: metrics.csv columns before the patient-level statistics: they must stay, in this order.
ORIGINAL_METRICS_COLUMNS = [
    "score", "is_probability", "n", "n_positive", "n_negative", "auc", "auc_se", "auc_ci_low",
    "auc_ci_high", "cutoff", "cutoff_source", "tp", "fp", "tn", "fn", "accuracy", "accuracy_ci_low",
    "accuracy_ci_high", "sensitivity", "sensitivity_ci_low", "sensitivity_ci_high", "specificity",
    "specificity_ci_low", "specificity_ci_high", "ppv", "ppv_ci_low", "ppv_ci_high", "npv",
    "npv_ci_low", "npv_ci_high", "brier", "calibration_slope", "calibration_intercept",
    "calibration_intercept_joint", "hl_statistic", "hl_dof", "hl_p",
]  # fmt: skip


@pytest.fixture(scope="module")
def cohort() -> dict[str, np.ndarray]:
    """90 patients with 1-2 images, a BI-RADS per image, an image model and a combined model."""
    rng = np.random.default_rng(31)
    sizes = rng.integers(1, 3, size=90)
    pid = np.repeat(np.arange(90), sizes)
    y = (rng.random(90) < 0.4)[pid].astype(int)
    latent = rng.normal(size=90)[pid]
    levels = np.array(["2", "3", "4a", "4b", "4c", "5"])
    birads = levels[
        np.clip(np.round(1.8 * y + 1.2 + 0.8 * latent + 0.6 * rng.normal(size=y.size)), 0, 5).astype(int)
    ]
    image = 1 / (1 + np.exp(-(1.5 * y - 0.7 + latent + 0.5 * rng.normal(size=y.size))))
    combined = 1 / (1 + np.exp(-(2.2 * y - 1.0 + 0.8 * latent + 0.4 * rng.normal(size=y.size))))
    return {"y": y, "pid": pid, "birads": birads, "image": image, "combined": combined}


def test_birads_values_are_parsed_and_bad_ones_named():
    present, ordinal, risk = parse_birads(["4A", " 5 ", 3.0, "", "0", "4", None, "BI-RADS 4c"])
    assert present.tolist() == [True, True, True, False, False, True, False, True]
    # Exact: table lookups, no arithmetic.
    assert ordinal[[0, 1, 2, 5, 7]].tolist() == [4.25, 5.0, 3.0, 4.5, 4.75]
    assert risk[[0, 1, 2]].tolist() == [0.06, 0.975, 0.01]
    with pytest.raises(InputError, match=r"\['7'\] are not BI-RADS categories"):
        parse_birads(["4a", "7"])


def test_reader_row_auc_policy_and_tests(cohort):
    y, b = cohort["y"], cohort["birads"]
    scores = {"image": cohort["image"], "combined": cohort["combined"]}
    comp = compare_with_reader(y, b, scores, clusters=None, settings=SETTINGS)
    _, ordinal, _ = parse_birads(b)
    assert comp["reader"]["auc"] == pytest.approx(roc_auc_score(y, ordinal), rel=1e-12)
    # The policy "biopsy every BI-RADS >= 4" counted by hand.
    called = np.isin(b, ["4a", "4b", "4c", "5"])
    tp, fp = int((called & (y == 1)).sum()), int((called & (y == 0)).sum())
    assert comp["reader"]["policy"]["sensitivity"] == pytest.approx(tp / y.sum(), rel=1e-12)
    assert comp["reader"]["policy"]["specificity"] == pytest.approx(1 - fp / (y == 0).sum(), rel=1e-12)
    pt = np.array(comp["policy"]["threshold"])
    np.testing.assert_allclose(
        comp["policy"]["net_benefit"], tp / y.size - fp / y.size * pt / (1 - pt), rtol=1e-12
    )
    rows = {r["score"]: r for r in comp["rows"]}
    for name, s in scores.items():
        assert rows[name]["auc"] == pytest.approx(roc_auc_score(y, s), rel=1e-12)
        assert rows[name]["diff_vs_reader"] == pytest.approx(
            roc_auc_score(y, s) - roc_auc_score(y, ordinal), rel=1e-9
        )
    _, holm, _, _ = multipletests([rows["image"]["p"], rows["combined"]["p"]], method="holm")
    assert [rows["image"]["p_holm"], rows["combined"]["p_holm"]] == pytest.approx(list(holm), rel=1e-12)
    assert "No clinical-only model" in " ".join(comp["notes"])


def test_a_monotone_copy_of_the_reader_shows_no_difference(cohort):
    y, b = cohort["y"], cohort["birads"]
    _, _, risk = parse_birads(b)
    comp = compare_with_reader(y, b, {"copy": risk}, clusters=cohort["pid"], settings=SETTINGS)
    (row,) = comp["rows"]
    assert row["diff_vs_reader"] == pytest.approx(0.0, abs=1e-12)
    assert row["p"] == 1.0 and row["p_delong"] == 1.0
    for kind in ("nri_categorical", "nri_continuous", "idi"):
        # Exact: identical scores on both sides give differences of exactly 0.
        assert row[kind]["value"] == 0.0


def test_cases_without_a_reader_value_are_left_out_of_the_comparison_only(cohort):
    b = cohort["birads"].astype(object).copy()
    b[:7] = ""
    comp = compare_with_reader(cohort["y"], b, {"image": cohort["image"]}, settings=SETTINGS)
    assert comp["n"] == cohort["y"].size - 7 and comp["n_missing"] == 7


def test_a_small_reader_subset_is_flagged(cohort):
    b = cohort["birads"].astype(object).copy()
    b[12:] = ""  # a reader value for the first 12 cases only
    res = report.evaluate_scores(cohort["y"], {"image": cohort["image"]}, reader=b, bootstrap=SETTINGS)
    n_pos = int(cohort["y"][:12].sum())
    expected = f"Only {n_pos} positive and {12 - n_pos} negative cases with a BI-RADS value"
    assert any(w.startswith(expected) for w in res["warnings"]), res["warnings"]


def test_policy_net_benefit_hand_example():
    y = np.array([1, 1, 0, 0, 0])
    ordinal = np.array([5.0, 3.0, 4.25, 2.0, 4.5])  # called: cases 0, 2, 4 -> TP 1, FP 2
    np.testing.assert_allclose(policy_net_benefit(y, ordinal, np.array([0.2])), [1 / 5 - 2 / 5 * 0.25])


# ------------------------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def written(tmp_path_factory, cohort) -> Path:
    out = tmp_path_factory.mktemp("rep") / "report"
    ids = np.array([f"patient-secret-{p:04d}" for p in cohort["pid"]], dtype=object)
    return report.write_report(
        out,
        cohort["y"],
        {"image": cohort["image"], "combined": cohort["combined"]},
        clusters=ids,
        reader=cohort["birads"],
        reader_name="birads",
        bootstrap=SETTINGS,
    )


def test_report_files_columns_and_no_patient_id(written):
    names = {p.name for p in written.iterdir()}
    assert {"delong_clustered.csv", "reader_comparison.csv", "metrics.csv", "delong.csv"} <= names
    for path in written.iterdir():
        if path.suffix in (".csv", ".json", ".html"):
            assert "patient-secret" not in path.read_text(encoding="utf-8"), path.name
    metrics = pd.read_csv(written / "metrics.csv")
    assert list(metrics.columns[: len(ORIGINAL_METRICS_COLUMNS)]) == ORIGINAL_METRICS_COLUMNS
    for col in ("auc_clustered_ci_low", "auc_boot_ci_high", "sensitivity_boot_ci_low", "npv_boot_ci_high"):
        assert metrics[col].notna().all(), col
    delong = pd.read_csv(written / "delong.csv")
    assert list(delong.columns[:8]) == ["score_a", "score_b", "auc_a", "auc_b", "diff", "se_diff", "z", "p"]
    curves = pd.read_csv(written / "decision_curve.csv")
    assert curves[["net_benefit_ci_low", "net_benefit_ci_high", "reader_policy"]].notna().all().all()
    assert (curves["net_benefit_ci_low"] <= curves["net_benefit"] + 1e-12).all()
    data = json.loads((written / "metrics.json").read_text())
    assert data["clusters"]["n_clusters"] == 90
    # Exact: the settings given, written and read back.
    assert data["bootstrap"] == {"n_resamples": 300, "seed": 9, "level": 0.95, "unit": "patient"}
    page = (written / "index.html").read_text(encoding="utf-8")
    assert "Readers as comparator (birads)" in page and "Paired clustered comparisons" in page
    reader = pd.read_csv(written / "reader_comparison.csv")
    assert reader["score"].tolist() == ["birads", "image", "combined"]


def test_two_rows_give_no_auc_interval_but_a_warning():
    res = report.evaluate_scores([1, 0], {"s": [0.9, 0.1]}, bootstrap=SETTINGS)
    auc = res["scores"]["s"]["auc"]
    assert auc["auc"] == 1.0 and math.isnan(auc["ci_low"]) and math.isnan(auc["ci_high"])
    assert any("no AUC confidence interval" in w for w in res["warnings"])


def test_few_events_are_flagged():
    rng = np.random.default_rng(2)
    y = np.array([1] * 4 + [0] * 40)
    res = report.evaluate_scores(y, {"s": rng.random(44)}, bootstrap=SETTINGS)
    text = " ".join(res["warnings"])
    assert "Only 4 positive and 40 negative cases" in text and "sensitivity (4)" in text


def test_cli_report_with_patient_and_reader_columns(tmp_path, cohort, capsys):
    from DLRPredictorLib import cli

    y = cohort["y"]
    path = tmp_path / "results.csv"
    pd.DataFrame(
        {
            "case_id": [f"c{i:03d}" for i in range(y.size)],
            "label": y,
            "probability": cohort["combined"],
            "score_dlr": cohort["image"],
            "clinical": 1 / (1 + np.exp(-(cohort["combined"] * 3 - 1.5))),
            "patient": [f"pat{p}" for p in cohort["pid"]],
            "birads": cohort["birads"],
        }
    ).to_csv(path, index=False)
    code = cli.main(
        ["report", str(path), "--label", "label", "--scores", "probability,score_dlr", "--report",
         str(tmp_path / "rep"), "--cluster-column", "patient", "--reader-column", "birads",
         "--clinical-column", "clinical", "--bootstrap", "200", "--seed", "3"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    reader = pd.read_csv(tmp_path / "rep" / "reader_comparison.csv").set_index("score")
    assert reader.loc["clinical", "role"] == "clinical-only"
    assert reader.loc["score_dlr", "test"] == "clustered (Obuchowski)"
    data = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert data["bootstrap"]["n_resamples"] == 200 and data["bootstrap"]["seed"] == 3
    code = cli.main(
        ["report", str(path), "--label", "label", "--scores", "probability", "--report",
         str(tmp_path / "rep2"), "--cluster-column", "nope"]
    )  # fmt: skip
    assert code == 2 and "--cluster-column: column 'nope' not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------- dlrpredictor evaluate


def test_manifest_values_read_patient_ids_and_other_columns():
    from DLRPredictorLib.cohort.batch import _manifest_values
    from DLRPredictorLib.inputs.cohort_csv import CohortRow

    row = CohortRow(2, "c1", "a.png", "m.png", None, None, patient_id="p7", extra={"birads": "4a"})
    got = _manifest_values([row], {"--cluster-column": "patient_id", "--reader-column": "birads"})
    assert got == {"patient_id": {"c1": "p7"}, "birads": {"c1": "4a"}}
    with pytest.raises(InputError, match="--reader-column: the cohort CSV has no column 'bi_rads'"):
        _manifest_values([row], {"--reader-column": "bi_rads"})


def test_evaluate_with_patient_and_reader_columns(tmp_path, tiny_bundle, synthetic_cohort):
    """Two images per patient in the manifest: the report clusters by patient and compares the
    scores with BI-RADS; no patient id reaches the predictions CSV or the report."""
    import csv

    from DLRPredictorLib.cohort import batch
    from DLRPredictorLib.inputs.cohort_csv import read_cohort_csv

    rows = read_cohort_csv(synthetic_cohort, clinical_names=None, label_values={"malignant": 1, "benign": 0})
    rows = sorted(rows, key=lambda r: r.label)[:6] + sorted(rows, key=lambda r: -r.label)[:6]
    path = tmp_path / "cohort.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", "image", "mask", "spacing_mm", "label", "patient_id", "reading"])
        for i, r in enumerate(rows):
            reading = ("2", "3", "4a")[i % 3] if r.label == 0 else ("4b", "4c", "5")[i % 3]
            spacing = "" if r.spacing_mm is None else repr(r.spacing_mm)
            writer.writerow(
                [
                    r.case_id,
                    r.resolved_image,
                    r.resolved_mask,
                    spacing,
                    r.label_raw,
                    f"secret-{i // 2}",
                    reading,
                ]
            )
    out = batch.evaluate_cohort(
        path,
        tmp_path / "rep",
        tiny_bundle,
        jobs=1,
        cluster_column="patient_id",
        reader_column="reading",
        bootstrap=SETTINGS,
    )
    data = json.loads((out / "metrics.json").read_text())
    assert data["clusters"]["n_clusters"] == 6
    assert data["reader_comparison"]["n"] == 12 and data["reader_comparison"]["reader_name"] == "reading"
    assert (out / "delong_clustered.csv").is_file() and (out / "reader_comparison.csv").is_file()
    written = [*out.iterdir(), tmp_path / "rep_predictions.csv"]
    for p in written:
        if p.suffix in (".csv", ".json", ".html"):
            assert "secret-" not in p.read_text(encoding="utf-8"), p.name
    warnings = " ".join(data["warnings"])  # 12 images of 6 patients are few
    assert "Only 6 positive and 6 negative cases" in warnings
    assert "Only 3 positive and 3 negative patients" in warnings
