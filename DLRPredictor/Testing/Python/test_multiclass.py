"""K-class evaluation (evaluation.multiclass*) against independent computations: sklearn's
roc_auc_score (one-vs-rest macro, binarised micro), confusion_matrix, balanced_accuracy_score,
recall/precision per class, brier_score_loss, and the multinomial Brier written out directly.
Cases: random Dirichlet probabilities, and BUS-BRA histology (5 classes) scored by a multinomial
logistic regression on a few columns of bus_data.csv."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib import cli
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.evaluation.auc import auc_delong
from DLRPredictorLib.evaluation.multiclass import evaluate_multiclass
from DLRPredictorLib.evaluation.multiclass_csv import report_from_multiclass_csv
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.preprocessing import label_binarize

TOL = 1e-10  # two exact algorithms for the same quantities; only rounding differs
CLASSES = ["fibroadenoma", "idc", "cyst", "other"]
BUSBRA_CLASSES = ["fibroadenoma", "invasive ductal carcinoma", "cyst", "fibrocystic changes", "other"]


def _dirichlet_case(n: int = 240, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    p = rng.dirichlet(np.ones(len(CLASSES)), n)
    p[np.arange(n), y] += 0.25  # some signal, so the AUCs are not all near 0.5
    return y, p / p.sum(axis=1, keepdims=True)


def _check_against_sklearn(res: dict, y: np.ndarray, p: np.ndarray) -> None:
    k = p.shape[1]
    onehot = label_binarize(y, classes=list(range(k)))
    pred = p.argmax(axis=1)
    assert res["macro_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=TOL)
    assert res["micro_auc"] == pytest.approx(roc_auc_score(onehot, p, average="micro"), abs=TOL)
    per_class_auc = roc_auc_score(onehot, p, average=None)
    assert [r["auc"] for r in res["per_class"]] == pytest.approx(per_class_auc, abs=TOL)
    np.testing.assert_array_equal(res["confusion"], confusion_matrix(y, pred, labels=list(range(k))))
    assert res["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=TOL)
    assert res["accuracy"] == pytest.approx(np.mean(pred == y), abs=TOL)
    sens = recall_score(y, pred, average=None, labels=list(range(k)))
    ppv = precision_score(y, pred, average=None, labels=list(range(k)), zero_division=np.nan)
    assert [r["sensitivity"] for r in res["per_class"]] == pytest.approx(sens, abs=TOL)
    assert [r["ppv"] for r in res["per_class"]] == pytest.approx(ppv, abs=TOL, nan_ok=True)
    spec = [recall_score(y != j, pred != j) for j in range(k)]  # specificity = recall of "not j"
    assert [r["specificity"] for r in res["per_class"]] == pytest.approx(spec, abs=TOL)
    brier_k = [brier_score_loss(onehot[:, j], p[:, j]) for j in range(k)]
    assert [r["calibration"]["brier"] for r in res["per_class"]] == pytest.approx(brier_k, abs=TOL)
    direct = sum((p[i, j] - (y[i] == j)) ** 2 for i in range(y.size) for j in range(k)) / y.size
    assert res["multinomial_brier"] == pytest.approx(direct, abs=TOL)
    for r in res["per_class"]:
        assert r["auc_ci_low"] < r["auc"] < r["auc_ci_high"]
        assert r["sensitivity_ci_low"] <= r["sensitivity"] <= r["sensitivity_ci_high"]
    assert res["micro_auc_ci_low"] < res["micro_auc"] < res["micro_auc_ci_high"]


def test_dirichlet_probabilities_match_sklearn() -> None:
    y, p = _dirichlet_case()
    names = np.array(CLASSES)[y]
    res = evaluate_multiclass(names, p, CLASSES)
    _check_against_sklearn(res, y, p)
    assert res["decision_rule"].startswith("argmax")


def test_per_class_cutoffs_follow_the_stated_rule() -> None:
    y, p = _dirichlet_case(seed=5)
    cut = {"fibroadenoma": 0.5, "idc": 0.2, "cyst": 0.3, "other": 0.3}
    res = evaluate_multiclass(np.array(CLASSES)[y], p, CLASSES, cutoffs=cut)
    # the rule written out case by case: the class whose probability exceeds its cutoff by most
    c = [cut[n] for n in CLASSES]
    pred = np.array([max(range(4), key=lambda j, i=i: (p[i, j] - c[j], -j)) for i in range(y.size)])
    np.testing.assert_array_equal(res["confusion"], confusion_matrix(y, pred, labels=[0, 1, 2, 3]))
    assert res["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=TOL)
    # equal cutoffs are the argmax rule
    same = evaluate_multiclass(np.array(CLASSES)[y], p, CLASSES, cutoffs=dict.fromkeys(CLASSES, 0.3))
    np.testing.assert_array_equal(same["confusion"], confusion_matrix(y, p.argmax(axis=1)))


@pytest.fixture(scope="module")
def busbra_histology(shared_data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BUS-BRA histology in 5 classes, probabilities of a multinomial logistic regression on
    BI-RADS, device, width and height (fitted on all rows: the metrics, not the model, are tested)."""
    df = pd.read_csv(shared_data / "BUS-BRA" / "bus_data.csv")
    hist = df["Histology"].str.strip().str.lower()
    cls = hist.where(hist.isin(BUSBRA_CLASSES[:4]), "other")  # the smaller classes grouped
    y = cls.map({c: i for i, c in enumerate(BUSBRA_CLASSES)}).to_numpy()
    x = pd.get_dummies(df[["BIRADS", "Device"]].astype(str), dtype=float)
    x["width"] = df["Width"] / 100.0
    x["height"] = df["Height"] / 100.0
    model = LogisticRegression(max_iter=2000).fit(x.to_numpy(), y)
    return y, model.predict_proba(x.to_numpy()), df["Case"].to_numpy()


def test_busbra_histology_matches_sklearn(busbra_histology: tuple[np.ndarray, ...]) -> None:
    y, p, patients = busbra_histology
    assert np.bincount(y).min() >= 50  # every class present, as grouped
    res = evaluate_multiclass(np.array(BUSBRA_CLASSES, dtype=object)[y], p, BUSBRA_CLASSES, clusters=patients)
    _check_against_sklearn(res, y, p)
    # two images per patient mostly: the clustered interval exists and differs from DeLong's
    first = res["per_class"][0]
    assert np.isfinite(first["auc_clustered_se"]) and first["auc_clustered_se"] != first["auc_se"]
    # with every case its own cluster, Obuchowski's SE reduces to DeLong's
    own = evaluate_multiclass(y, p, BUSBRA_CLASSES, clusters=np.arange(y.size))
    for r in own["per_class"]:
        assert r["auc_clustered_se"] == pytest.approx(r["auc_se"], rel=1e-9)
    assert res["per_class"][1]["auc_se"] == pytest.approx(auc_delong(y == 1, p[:, 1]).se, rel=1e-12)


def test_bad_input_is_refused_clearly() -> None:
    y, p = _dirichlet_case(n=50)
    names = np.array(CLASSES)[y]
    bad = p.copy()
    bad[7] *= 1.1
    with pytest.raises(InputError, match="do not sum to 1"):
        evaluate_multiclass(names, bad, CLASSES)
    with pytest.raises(InputError, match="not one of the declared classes"):
        evaluate_multiclass([*names[:-1], "lipoma"], p, CLASSES)
    with pytest.raises(InputError, match="repeated"):
        evaluate_multiclass(names, p, ["a", "A", "b", "c"])
    with pytest.raises(InputError, match="missing"):
        evaluate_multiclass(names, p, CLASSES, cutoffs={"idc": 0.3})
    with pytest.raises(InputError, match="shape"):
        evaluate_multiclass(names, p[:, :3], CLASSES)


def _write_predictions(path: Path, y: np.ndarray, p: np.ndarray) -> None:
    cols = {f"probability:{c}": np.round(p[:, j], 6) for j, c in enumerate(CLASSES)}
    ids = {"case_id": [f"c{i}" for i in range(y.size)], "patient": [f"pt{i // 2:04d}" for i in range(y.size)]}
    pd.DataFrame({**ids, "label": np.array(CLASSES)[y], **cols}).to_csv(path, index=False)


def test_report_csv_numbers_equal_sklearn(tmp_path: Path) -> None:
    y, p = _dirichlet_case(n=180, seed=11)
    _write_predictions(tmp_path / "pred.csv", y, p)
    out = tmp_path / "report"
    args = ["report", str(tmp_path / "pred.csv"), "--classes", ",".join(CLASSES), "--report", str(out)]
    assert cli.main([*args, "--cluster-column", "patient"]) == 0
    p6 = np.round(p, 6)  # the values the CSV holds
    onehot = label_binarize(y, classes=[0, 1, 2, 3])
    summary = pd.read_csv(out / "multiclass_summary.csv").set_index("metric")["value"]
    assert summary["macro_auc"] == pytest.approx(roc_auc_score(y, p6, multi_class="ovr"), abs=1e-9)
    assert summary["micro_auc"] == pytest.approx(roc_auc_score(onehot, p6, average="micro"), abs=1e-9)
    pred = p6.argmax(axis=1)
    assert summary["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-9)
    assert summary["multinomial_brier"] == pytest.approx(
        np.mean(np.sum((p6 - onehot) ** 2, axis=1)), abs=1e-9
    )
    per_class = pd.read_csv(out / "multiclass_metrics.csv")
    assert per_class["class"].tolist() == CLASSES
    assert per_class["auc"].to_numpy() == pytest.approx(roc_auc_score(onehot, p6, average=None), abs=1e-9)
    assert per_class["sensitivity"].to_numpy() == pytest.approx(recall_score(y, pred, average=None), abs=1e-9)
    conf = pd.read_csv(out / "confusion_matrix.csv", index_col=0)
    assert list(conf.columns) == CLASSES
    np.testing.assert_array_equal(conf.to_numpy(), confusion_matrix(y, pred))
    for name in ("index.html", "roc_per_class.png", "confusion_matrix.png", "calibration_per_class.png"):
        assert (out / name).stat().st_size > 0
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["classes"] == CLASSES
    assert per_class["auc_clustered_se"].notna().all()  # two cases per patient: clustered intervals
    for written in out.iterdir():  # neither case nor patient ids are written
        if written.suffix != ".png":
            text = written.read_text()
            assert "pt0001" not in text and "c17" not in text, written.name


def test_report_csv_refuses_bad_rows_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    y, p = _dirichlet_case(n=40)
    p[4, 0] += 0.2  # row 6 of the file (header is row 1)
    _write_predictions(tmp_path / "pred.csv", y, p)
    with pytest.raises(InputError, match="row 6: the class probabilities sum to"):
        report_from_multiclass_csv(tmp_path / "pred.csv", CLASSES, tmp_path / "r1")
    assert not (tmp_path / "r1").exists()
    with pytest.raises(InputError, match="probability:lipoma"):
        report_from_multiclass_csv(tmp_path / "pred.csv", [*CLASSES, "lipoma"], tmp_path / "r2")
    # a binary report still needs its --label and --scores
    assert cli.main(["report", str(tmp_path / "pred.csv"), "--report", str(tmp_path / "r3")]) == 2
    assert "--scores" in capsys.readouterr().err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["pred.csv"]
