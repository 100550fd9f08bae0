"""Reports: files written, numbers equal to the statistics functions, atomic writing, CSV input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.evaluation import report, report_csv, report_figures
from DLRPredictorLib.evaluation.auc import auc_delong, delong_test
from DLRPredictorLib.evaluation.calibration import calibration, hosmer_lemeshow
from DLRPredictorLib.evaluation.cutoff_metrics import binary_metrics, youden_cutoff
from DLRPredictorLib.evaluation.decision_curve import decision_curve

EXPECTED_FILES = {
    "index.html",
    "roc.png",
    "calibration.png",
    "decision_curve.png",
    "metrics.csv",
    "delong.csv",
    "calibration.csv",
    "decision_curve.csv",
    "metrics.json",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cohort() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels, two probabilities and one raw (non-probability) score."""
    rng = np.random.default_rng(11)
    n = 120
    y = (rng.random(n) < 0.4).astype(int)
    dlr = 1 / (1 + np.exp(-(1.6 * y - 0.8 + rng.normal(size=n))))
    rad = 1 / (1 + np.exp(-(0.9 * y - 0.5 + rng.normal(size=n))))
    raw = 3.0 * y + 2.0 * rng.normal(size=n)
    return y, {"DLR": dlr, "Rad": rad, "raw": raw}


@pytest.fixture(scope="module")
def written(tmp_path_factory, cohort) -> Path:
    y, scores = cohort
    out = tmp_path_factory.mktemp("rep") / "report"
    path = report.write_report(
        out, y, scores, cutoffs={"Rad": 0.4}, title="Test <cohort>", notes=["note one"]
    )
    assert path == out.resolve()
    return path


def _no_leftovers(parent: Path) -> None:
    assert [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


def test_writes_every_file(written):
    assert {p.name for p in written.iterdir()} == EXPECTED_FILES
    for name in ("roc.png", "calibration.png", "decision_curve.png"):
        assert (written / name).read_bytes()[:8] == PNG_MAGIC
    _no_leftovers(written.parent)


def test_metrics_csv_equals_stats_functions(written, cohort):
    y, scores = cohort
    table = pd.read_csv(written / "metrics.csv").set_index("score")
    assert list(table.index) == ["DLR", "Rad", "raw"]
    for name, s in scores.items():
        auc = auc_delong(y, s)
        row = table.loc[name]
        assert row["auc"] == pytest.approx(auc.auc, rel=1e-12)
        assert row["auc_se"] == pytest.approx(auc.se, rel=1e-12)
        assert row["auc_ci_low"] == pytest.approx(auc.ci_low, rel=1e-12)
        assert row["auc_ci_high"] == pytest.approx(auc.ci_high, rel=1e-12)
        assert row["n"] == y.size
        assert row["n_positive"] == y.sum()
    for name, cutoff in (("DLR", 0.5), ("Rad", 0.4)):
        m = binary_metrics(y, scores[name], cutoff)
        row = table.loc[name]
        assert row["cutoff"] == cutoff  # the given 0.5 / 0.4, written and parsed back: exact
        for key in ("tp", "fp", "tn", "fn"):
            assert row[key] == m[key]
        for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
            for suffix in ("", "_ci_low", "_ci_high"):
                assert row[key + suffix] == pytest.approx(m[key + suffix], rel=1e-12)
        cal = calibration(y, scores[name])
        assert row["calibration_slope"] == pytest.approx(cal.slope, rel=1e-12)
        assert row["calibration_intercept"] == pytest.approx(cal.intercept, rel=1e-12)
        assert row["brier"] == pytest.approx(cal.brier, rel=1e-12)
        hl_stat, hl_dof, hl_p = hosmer_lemeshow(y, scores[name])
        assert row["hl_statistic"] == pytest.approx(hl_stat, rel=1e-12)
        # Exact: an integer count of degrees of freedom.
        assert row["hl_dof"] == hl_dof
        assert row["hl_p"] == pytest.approx(hl_p, rel=1e-12)
    # A raw score without a cutoff gets no cutoff metrics and no calibration.
    assert np.isnan(table.loc["raw", "cutoff"])
    assert np.isnan(table.loc["raw", "sensitivity"])
    assert np.isnan(table.loc["raw", "brier"])


def test_cutoff_sources_are_labelled(written):
    table = pd.read_csv(written / "metrics.csv").set_index("score")
    assert table.loc["DLR", "cutoff_source"] == "default 0.5 (no cutoff given)"
    assert table.loc["Rad", "cutoff_source"] == "pre-specified"
    assert "not a probability" in table.loc["raw", "cutoff_source"]
    assert "optimistic" not in " ".join(table["cutoff_source"])


def test_delong_and_curves_csv_equal_stats(written, cohort):
    y, scores = cohort
    delong = pd.read_csv(written / "delong.csv")
    assert list(zip(delong["score_a"], delong["score_b"], strict=True)) == [
        ("DLR", "Rad"),
        ("DLR", "raw"),
        ("Rad", "raw"),
    ]
    for _, row in delong.iterrows():
        t = delong_test(y, scores[row["score_a"]], scores[row["score_b"]])
        assert row["z"] == pytest.approx(t.z, rel=1e-12)
        assert row["p"] == pytest.approx(t.p, rel=1e-12)
    dc = pd.read_csv(written / "decision_curve.csv")
    assert set(dc["score"]) == {"DLR", "Rad"}
    ref = decision_curve(y, scores["DLR"])
    got = dc[dc["score"] == "DLR"].reset_index(drop=True)
    np.testing.assert_allclose(got["net_benefit"], ref["net_benefit"], rtol=1e-12)
    np.testing.assert_allclose(got["treat_all"], ref["treat_all"], rtol=1e-12)
    cal = pd.read_csv(written / "calibration.csv")
    ref_cal = calibration(y, scores["Rad"])
    got_cal = cal[cal["score"] == "Rad"]
    np.testing.assert_array_equal(got_cal["n"], ref_cal.counts)
    np.testing.assert_allclose(got_cal["observed"], ref_cal.observed, rtol=1e-12)


def test_json_is_strict_and_complete(written):
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    data = json.loads((written / "metrics.json").read_text(), parse_constant=refuse)
    assert data["title"] == "Test <cohort>"
    assert data["notes"][0] == "note one"
    assert set(data["scores"]) == {"DLR", "Rad", "raw"}
    assert data["scores"]["raw"]["calibration"] is None
    assert len(data["delong"]) == 3


def test_html_references_existing_pngs_and_escapes_text(written, cohort):
    page = (written / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert set(sources) == {"roc.png", "calibration.png", "decision_curve.png"}
    for src in sources:
        assert (written / src).is_file()
    auc = auc_delong(cohort[0], cohort[1]["DLR"])
    assert f"{auc.auc:.3f} [{auc.ci_low:.3f}-{auc.ci_high:.3f}]" in page
    assert "Test &lt;cohort&gt;" in page
    assert "<cohort>" not in page
    assert "http" not in page  # self-contained: nothing fetched from elsewhere


def test_optimistic_cutoff_only_on_request_and_labelled(tmp_path, cohort):
    y, scores = cohort
    res = report.evaluate_scores(y, {"raw": scores["raw"]}, optimistic_youden=True)
    # Exact: youden_cutoff returns one of the scores, chosen by integer counts, and it is the same call.
    assert res["scores"]["raw"]["cutoff"] == youden_cutoff(y, scores["raw"])
    assert res["scores"]["raw"]["cutoff_source"].startswith("optimistic")
    assert any("optimistic" in n for n in res["notes"])
    plain = report.evaluate_scores(y, {"raw": scores["raw"]})
    assert plain["scores"]["raw"]["cutoff"] is None


def test_cutoff_for_unknown_score_is_refused(cohort):
    y, scores = cohort
    with pytest.raises(InputError, match="unknown score"):
        report.evaluate_scores(y, scores, {"DRL": 0.5})


def test_failure_midway_leaves_no_report(tmp_path, cohort, monkeypatch):
    y, scores = cohort

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_figures, "plot_decision", broken)
    target = tmp_path / "new" / "report"
    with pytest.raises(RuntimeError, match="disk full"):
        report.write_report(target, y, scores)
    assert not target.exists()
    assert not (tmp_path / "new").exists()  # the parent this call created is removed too
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_previous_report_intact(tmp_path, cohort, monkeypatch):
    y, scores = cohort
    target = report.write_report(tmp_path / "rep", y, {"DLR": scores["DLR"]})
    before = (target / "metrics.csv").read_text()
    monkeypatch.setattr(report_figures, "plot_roc", lambda *_a, **_k: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        report.write_report(target, y, scores)
    assert (target / "metrics.csv").read_text() == before
    _no_leftovers(tmp_path)


def test_failed_swap_restores_previous_report(tmp_path, cohort, monkeypatch):
    y, scores = cohort
    target = report.write_report(tmp_path / "rep", y, {"DLR": scores["DLR"]})
    before = (target / "metrics.csv").read_text()
    real_rename = Path.rename

    def rename(self: Path, dest: Path) -> Path:
        if self.name.startswith(".rep.tmp-"):  # the new report moving into place
            raise OSError("rename refused")
        return real_rename(self, dest)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="rename refused"):
        report.write_report(target, y, scores)
    monkeypatch.undo()
    assert (target / "metrics.csv").read_text() == before
    _no_leftovers(tmp_path)


def test_refuses_folder_that_is_not_a_report(tmp_path, cohort):
    y, scores = cohort
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a DLRPredictor report"):
        report.write_report(tmp_path, y, scores)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


# ------------------------------------------------------------------------------- from a CSV


@pytest.fixture
def predictions_csv(tmp_path, cohort) -> Path:
    """A results-style CSV: string labels, an error row with junk, a missing score, a cutoff."""
    y, scores = cohort
    df = pd.DataFrame(
        {
            "case_id": [f"c{i:03d}" for i in range(y.size)],
            "status": "ok",
            "error": "",
            "pathology": np.where(y == 1, "malignant", "benign"),
            "probability": [f"{v:.6f}" for v in scores["DLR"]],
            "Rad": [f"{v:.6f}" for v in scores["Rad"]],
            "cutoff": "0.42",
        }
    )
    df.loc[[3, 9], "status"] = "error"
    df.loc[[3, 9], "probability"] = "boom"  # junk in error rows must not matter
    df.loc[17, "Rad"] = ""  # missing score
    df.loc[21, "pathology"] = ""  # missing label
    path = tmp_path / "results.csv"
    df.to_csv(path, index=False)
    return path


def test_csv_report_excludes_errors_and_incomplete_rows(tmp_path, predictions_csv, cohort):
    y, scores = cohort
    out = report_csv.report_from_predictions_csv(
        predictions_csv, "pathology", ["probability", "Rad"], tmp_path / "rep", positive_label="malignant"
    )
    data = json.loads((out / "metrics.json").read_text())
    assert data["title"] == "Evaluation of results.csv"
    keep = np.setdiff1d(np.arange(y.size), [3, 9, 17, 21])
    assert data["n"] == keep.size
    assert data["n_positive"] == int(y[keep].sum())
    notes = " ".join(data["notes"])
    assert "2 rows with status=error excluded" in notes
    assert "2 rows with a missing label or score dropped" in notes
    probability = np.round(scores["DLR"][keep], 6)
    assert data["scores"]["probability"]["auc"]["auc"] == pytest.approx(
        auc_delong(y[keep], probability).auc, rel=1e-12
    )
    # The file's frozen cutoff is used for 'probability', 0.5 (labelled) for the other score.
    assert data["scores"]["probability"]["cutoff"] == 0.42  # the file's number, passed on: exact
    assert data["scores"]["Rad"]["cutoff_source"] == "default 0.5 (no cutoff given)"


def test_cli_report_given_cutoff_wins_over_the_cutoff_column(tmp_path, cohort, capsys):
    from DLRPredictorLib import cli

    y, scores = cohort
    probability = np.round(scores["DLR"], 6)
    row_cutoffs = np.where(np.arange(y.size) % 2 == 0, 0.42, 0.3)  # a mixed cohort: two models
    path = tmp_path / "results.csv"
    pd.DataFrame(
        {
            "case_id": [f"c{i:03d}" for i in range(y.size)],
            "pathology": np.where(y == 1, "malignant", "benign"),
            "probability": [f"{v:.6f}" for v in probability],
            "cutoff": row_cutoffs,
        }
    ).to_csv(path, index=False)
    given = 0.6
    code = cli.main(
        ["report", str(path), "--label", "pathology", "--positive", "malignant", "--scores", "probability",
         "--cutoffs", f"probability={given}", "--report", str(tmp_path / "rep")]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    row = pd.read_csv(tmp_path / "rep" / "metrics.csv").set_index("score").loc["probability"]
    # Independent count at the given cutoff (positive when score >= cutoff), every row alike.
    called = probability >= given
    tp, fn = int((called & (y == 1)).sum()), int((~called & (y == 1)).sum())
    tn, fp = int((~called & (y == 0)).sum()), int((called & (y == 0)).sum())
    assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (tp, fp, tn, fn)
    assert row["sensitivity"] == pytest.approx(tp / (tp + fn), rel=1e-12)
    assert row["specificity"] == pytest.approx(tn / (tn + fp), rel=1e-12)
    per_row = probability >= row_cutoffs  # what the file's 'cutoff' column would have given
    assert int((per_row & (y == 1)).sum()) != tp  # so the check above tells the two apart
    # Exact: the float parsed back from the literal 0.6 the test passed in.
    assert row["cutoff"] == given and row["cutoff_source"] == report.SOURCE_GIVEN
    data = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert data["scores"]["probability"]["cutoff_source"] == "pre-specified"
    notes = " ".join(data["notes"])
    assert "'cutoff' column" not in notes and "no cutoff given" not in notes


def test_csv_score_column_empty_in_every_row(tmp_path, predictions_csv):
    # A cohort without clinical data has no combined score anywhere (dlrpredictor evaluate).
    df = pd.read_csv(predictions_csv, dtype=str, keep_default_na=False)
    df["combined"] = ""
    path = tmp_path / "no_clinical.csv"
    df.to_csv(path, index=False)
    columns = ["probability", "Rad", "combined"]
    with pytest.raises(InputError, match=r"No rows of no_clinical\.csv have both a label and every score"):
        report_csv.report_from_predictions_csv(
            path, "pathology", columns, tmp_path / "r1", positive_label="malignant"
        )
    out = report_csv.report_from_predictions_csv(
        path,
        "pathology",
        columns,
        tmp_path / "r2",
        positive_label="malignant",
        cutoffs={"probability": 0.42, "combined": 0.3},
        skip_empty_scores=True,
    )
    data = json.loads((out / "metrics.json").read_text())
    assert sorted(data["scores"]) == ["Rad", "probability"]
    assert "['combined'] have no value in any row and are not evaluated" in " ".join(data["notes"])
    # Only wholly empty columns are skipped: a partly missing score still drops its rows.
    assert "2 rows with a missing label or score dropped" in " ".join(data["notes"])


def test_csv_missing_columns_are_named(tmp_path, predictions_csv):
    with pytest.raises(InputError) as info:
        report_csv.report_from_predictions_csv(
            predictions_csv, "label", ["probability", "DL"], tmp_path / "r"
        )
    msg = str(info.value)
    assert "['label', 'DL']" in msg
    assert "pathology" in msg  # the available columns are listed
    assert not (tmp_path / "r").exists()


def test_csv_non_numeric_score_leaves_no_report(tmp_path, predictions_csv):
    df = pd.read_csv(predictions_csv, dtype=str, keep_default_na=False)
    df.loc[5, "Rad"] = "high"
    df.to_csv(predictions_csv, index=False)
    with pytest.raises(InputError, match=r"'Rad'.*'high' on row 7"):
        report_csv.report_from_predictions_csv(
            predictions_csv, "pathology", ["Rad"], tmp_path / "r", positive_label="malignant"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_csv_string_labels_need_positive_label(tmp_path, predictions_csv):
    with pytest.raises(InputError, match=r"0/1 values.*positive"):
        report_csv.report_from_predictions_csv(predictions_csv, "pathology", ["Rad"], tmp_path / "r")
    with pytest.raises(InputError, match="'cancer' does not occur"):
        report_csv.report_from_predictions_csv(
            predictions_csv, "pathology", ["Rad"], tmp_path / "r", positive_label="cancer"
        )


def test_csv_numeric_labels(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"y": [0, 1, 0, 1, 1, 0, 1, 0], "s": [0.1, 0.9, 0.4, 0.6, 0.35, 0.2, 0.8, 0.7]}).to_csv(
        path, index=False
    )
    out = report_csv.report_from_predictions_csv(path, "y", ["s"], tmp_path / "r", title="Cohort B")
    assert json.loads((out / "metrics.json").read_text())["title"] == "Cohort B"
    table = pd.read_csv(out / "metrics.csv")
    # positive when s >= 0.5: .9,.6,.8 (true), .7 (false); .35 missed -> TP 3, FP 1, FN 1, TN 3.
    # AUC: positives .9 and .8 beat all 4 negatives, .6 beats 3 (.1,.4,.2), .35 beats 2 -> 13/16.
    assert table.loc[0, ["tp", "fp", "fn", "tn"]].tolist() == [3, 1, 1, 3]
    assert table.loc[0, "auc"] == pytest.approx(13 / 16)
