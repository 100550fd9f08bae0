"""`dlrpredictor evaluate` records each scoring of a labelled cohort in the held-out ledger: with
--ledger always, and without it when the cohort is the bundle's own test set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib.cli import main
from DLRPredictorLib.evaluation.bootstrap import BootstrapSettings
from DLRPredictorLib.inputs.cohort_csv import read_cohort_csv
from DLRPredictorLib.training import ledger as L
from sklearn.metrics import roc_auc_score

SETTINGS = BootstrapSettings(n_resamples=100, seed=1)


def _labelled_cohort(folder: Path, synthetic_cohort: Path, per_class: int) -> Path:
    """The first ``per_class`` cases of each class of the synthetic cohort, their own manifest."""
    rows = read_cohort_csv(synthetic_cohort, clinical_names=None, label_values={"malignant": 1, "benign": 0})
    rows = [r for r in rows if r.label == 0][:per_class] + [r for r in rows if r.label == 1][:per_class]
    path = folder / "cohort.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", "image", "mask", "spacing_mm", "label"])
        for r in rows:
            spacing = "" if r.spacing_mm is None else repr(r.spacing_mm)
            writer.writerow([r.case_id, r.resolved_image, r.resolved_mask, spacing, r.label_raw])
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, synthetic_cohort) -> Path:
    """Ten labelled cases of the synthetic cohort (five of each class)."""
    return _labelled_cohort(tmp_path_factory.mktemp("ledger_cohort"), synthetic_cohort, 5)


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory, synthetic_cohort) -> Path:
    """Four labelled cases (two of each class): for the checks that do not depend on the size."""
    return _labelled_cohort(tmp_path_factory.mktemp("ledger_small"), synthetic_cohort, 2)


@pytest.fixture(scope="module")
def first_scoring(tmp_path_factory, cohort, tiny_bundle) -> Path:
    """One `evaluate --ledger` of the ten cases (report "first", ledger.jsonl), run once for the
    module; a test that adds to the ledger works on its own copy of it."""
    root = tmp_path_factory.mktemp("first_scoring")
    _evaluate(cohort, root / "first", tiny_bundle, "--ledger", str(root / "ledger.jsonl"))
    return root


def _train_style_digest(cohort: Path) -> str:
    """The test-set digest as `train` computes it: cases read by training.data.load_case."""
    from DLRPredictorLib.training.data import load_case

    rows = read_cohort_csv(cohort, clinical_names=None, label_values={"malignant": 1, "benign": 0})
    cases = [load_case(r, r.label, ["exact"], True, 0) for r in rows]
    return L.test_set_digest((c.case_id, c.variants["exact"].image) for c in cases)


def _evaluate(cohort: Path, report: Path, bundle: Path, *extra: str) -> None:
    argv = ["evaluate", str(cohort), "--report", str(report), "--bundle", str(bundle), "--jobs", "1"]
    assert main([*argv, "--bootstrap", "100", *extra]) == 0


def test_evaluate_with_a_ledger_records_every_scoring(tmp_path, cohort, tiny_bundle, first_scoring, capsys):
    import shutil

    from DLRPredictorLib.bundle.verify import load_bundle

    ledger = tmp_path / "shared" / "ledger.jsonl"
    ledger.parent.mkdir()
    shutil.copyfile(first_scoring / "ledger.jsonl", ledger)  # the first scoring's ledger, as it wrote it
    (entry,) = L.read_ledger(ledger)
    assert entry["source"] == "evaluate" and entry["repeat"] == 1
    assert entry["config_digest"] == load_bundle(tiny_bundle).digest
    assert entry["test_set_digest"] == _train_style_digest(cohort)  # the same key as train's entries
    assert entry["n_test"] == 10
    with open(first_scoring / "first_predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    y = np.array([int(r["label"]) for r in rows])
    for name, auc in entry["aucs"]["evaluate"].items():
        column = "probability" if name == "probability" else f"score_{name}"
        assert auc == pytest.approx(roc_auc_score(y, [float(r[column]) for r in rows]), abs=1e-6)
    assert "dlr" in entry["aucs"]["evaluate"]
    # Scored again (a new report): a repeat of the same model on the same test set.
    _evaluate(cohort, tmp_path / "second", tiny_bundle, "--ledger", str(ledger))
    record = json.loads((tmp_path / "second" / "heldout_ledger.json").read_text(encoding="utf-8"))
    assert (record["evaluations"], record["configurations"]) == (2, 1)
    assert record["repeated"] == [entry["config_digest"]] and record["entries"][1]["repeat"] == 2
    assert "scored 2 time(s) by 1 configuration(s)" in capsys.readouterr().err
    text = ledger.read_text(encoding="utf-8")
    assert not any(r["case_id"] in text for r in rows)  # ids are hashed, never written


def test_without_a_ledger_another_cohort_is_not_recorded(tmp_path, small_cohort, tiny_bundle):
    _evaluate(small_cohort, tmp_path / "rep", tiny_bundle)
    assert not (tmp_path / L.LEDGER_NAME).exists()
    assert not (tmp_path / "rep" / "heldout_ledger.json").exists()


def test_the_bundles_own_test_set_is_recorded_without_a_ledger(tmp_path, small_cohort, tiny_bundle, capsys):
    # A copy of the tiny bundle whose manifest's ledger names this cohort as its test set (the
    # block stays consistent, so the bundle verifies), rewritten with fresh checksums.
    from DLRPredictorLib.bundle.write import write_bundle

    manifest = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))
    own = manifest["heldout_ledger"]
    own["test_set_digest"] = _train_style_digest(small_cohort)
    for e in own["entries"]:
        e["test_set_digest"] = own["test_set_digest"]
    files = {name: (tiny_bundle / name).read_bytes() for name in manifest["files"]}
    bundle = write_bundle(tmp_path / "bundle", manifest, files)
    _evaluate(small_cohort, tmp_path / "reports" / "rep", bundle)
    err = capsys.readouterr().err
    assert "the bundle's own held-out test set" in err and "pass the training run's ledger" in err
    (entry,) = L.read_ledger(tmp_path / "reports" / L.LEDGER_NAME)
    assert entry["test_set_digest"] == own["test_set_digest"] and entry["source"] == "evaluate"


def test_card_evidence_script_writes_sections_a_bundle_accepts(
    tmp_path, cohort, synthetic_cohort, tiny_bundle, first_scoring
):
    """scripts/card_evidence.py on an evaluate run: the card gets the patient/reader sections, the
    calibration section and the machine-kept ledger, and amend_model_card.py takes it."""
    import importlib.util
    import shutil

    from DLRPredictorLib.bundle.verify import load_bundle

    root = Path(__file__).resolve().parents[3] / "scripts"
    modules = {}
    for name in ("card_evidence", "amend_model_card"):
        spec = importlib.util.spec_from_file_location(name, root / f"{name}.py")
        modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    ledger = tmp_path / "ledger.jsonl"
    shutil.copyfile(first_scoring / "ledger.jsonl", ledger)  # the evaluate run's own ledger
    card = tmp_path / "card.md"
    args = ["--bundle", str(tiny_bundle), "--test", str(cohort), "--train", str(synthetic_cohort)]
    args += ["--predictions", str(first_scoring / "first_predictions.csv"), "--ledger", str(ledger)]
    args += ["--card", str(card), "--calibration-note", "No step.", "--bootstrap", "100"]
    assert modules["card_evidence"].main(args) == 0
    text = card.read_text(encoding="utf-8")
    ev = modules["card_evidence"]
    for title in (ev.EVIDENCE_TITLE, ev.CALIBRATION_TITLE, ev.LEDGER_TITLE):
        assert text.count(title + "\n") == 1
    assert "clustered CI (Obuchowski)" in text and "| BI-RADS only |" in text and "No step." in text
    assert text.index(ev.LEDGER_TITLE) < text.index("## Limitations")
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    assert modules["amend_model_card"].main([str(copy), str(card)]) == 0
    assert load_bundle(copy).manifest["files"]["model_card.md"]["bytes"] == len(card.read_bytes())
    # Run again on the amended bundle: the sections are replaced, not repeated.
    args[1] = str(copy)
    assert modules["card_evidence"].main(args) == 0
    assert card.read_text(encoding="utf-8").count(ev.EVIDENCE_TITLE + "\n") == 1
