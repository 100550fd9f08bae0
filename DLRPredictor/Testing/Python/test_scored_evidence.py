"""Model-card evidence of a bundle scored outside `train` (scripts/card_evidence.py): the held-out
entry built from scored cases, the comparator models, the decision-curve sentence against the
readers' policy and the nomogram's calibration statement."""

from __future__ import annotations

import numpy as np
import pytest
from DLRPredictorLib.evaluation.bootstrap import BootstrapSettings
from DLRPredictorLib.models.clinical_variables import ClinicalVariable
from DLRPredictorLib.training.data import TrainingCase
from DLRPredictorLib.training.evidence_card import (
    evidence_card_lines,
    nomogram_calibration_lines,
    policy_decision_line,
)
from DLRPredictorLib.training.heldout_evidence import fit_comparator_models, scored_evidence_entry
from DLRPredictorLib.training.model_card import NAMES
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

SETTINGS = BootstrapSettings(n_resamples=200, seed=2)
VARIABLES = [
    ClinicalVariable(name="age", type="numeric", minimum=10, maximum=110),
    ClinicalVariable(
        name="birads",
        type="categorical",
        allowed=["2", "3", "4a", "4b", "4c", "5"],
        ordinal_values=[2, 3, 4.2, 4.5, 4.8, 5],
    ),
]
CATEGORIES = np.array(["2", "3", "4a", "4b", "4c", "5"])
ORDINAL = dict(zip(CATEGORIES.tolist(), [2, 3, 4.2, 4.5, 4.8, 5], strict=True))


def _design(cases: list[TrainingCase]) -> np.ndarray:
    """age and the ordinal BI-RADS of each case, as an independent encoding."""
    return np.array([[float(c.clinical["age"]), ORDINAL[c.clinical["birads"]]] for c in cases])


def _cases(n: int, seed: int, with_age: np.ndarray | None = None) -> list[TrainingCase]:
    """Cases with a label, two images per patient, BI-RADS related to the label, age for some,
    and a scanner column; no images (only these values are read)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.integers(0, 2, n // 2), 2)
    birads = CATEGORIES[np.clip(np.round(1.5 + 2.5 * y + rng.normal(size=n)), 0, 5).astype(int)]
    age = rng.normal(50 + 8 * y, 10).round()
    has_age = np.ones(n, bool) if with_age is None else with_age
    out = []
    for i in range(n):
        clinical = {"birads": str(birads[i]), "age": str(age[i]) if has_age[i] else ""}
        extra = {"device": ("A", "B")[i % 4 // 2]}
        out.append(TrainingCase(f"c{i}", f"secret-patient-{i // 2}", int(y[i]), clinical, {}, "", extra))
    return out


def test_comparators_equal_an_unpenalised_sklearn_fit():
    train = _cases(200, 0)
    y = np.array([c.label for c in train])
    comp = fit_comparator_models(VARIABLES, ["age", "birads"], train, y)
    X = _design(train)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(X, y)
    test = _cases(40, 1)
    Xt = _design(test)
    got = comp.score(test)
    np.testing.assert_allclose(got["clinical_only"], ref.predict_proba(Xt)[:, 1], atol=1e-6)
    ref_b = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(X[:, 1:], y)
    np.testing.assert_allclose(got["birads_only"], ref_b.predict_proba(Xt[:, 1:])[:, 1], atol=1e-6)


def test_scored_entry_has_the_whole_set_the_clinical_subset_and_the_scanner_table():
    has_age = np.arange(120) % 3 != 0  # a third without age: not in the clinical subset
    cases = _cases(120, 4, has_age)
    y = np.array([c.label for c in cases])
    rng = np.random.default_rng(5)
    dlr = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(size=y.size))))
    combined = np.where(has_age, 1 / (1 + np.exp(-(3 * y - 1.5 + rng.normal(size=y.size)))), np.nan)
    entry = scored_evidence_entry(
        cases, {"dlr": dlr}, {"dlr": 0.5, "combined": 0.5}, clinical_scores={"combined": combined},
        bootstrap=SETTINGS,
    )  # fmt: skip
    assert (entry["n"], entry["n_positive"], entry["n_clinical"]) == (120, int(y.sum()), int(has_age.sum()))
    assert entry["all"]["scores"]["dlr"]["auc"]["auc"] == pytest.approx(roc_auc_score(y, dlr), abs=1e-12)
    assert entry["all"]["clusters"]["n_clusters"] == 60  # two images per patient
    sub = entry["clinical_subset"]["scores"]["combined"]["auc"]["auc"]
    assert sub == pytest.approx(roc_auc_score(y[has_age], combined[has_age]), abs=1e-12)
    devices = {r["group"] for r in entry["all_subgroups"]["rows"]}
    assert devices == {"A", "B", "all"}
    text = "\n".join(evidence_card_lines(entry, NAMES, "dlr"))
    assert "Per device" in text and "Beyond the reader" in text and "policy" in text
    assert "secret-patient" not in text


def test_policy_decision_line_matches_direct_net_benefit():
    cases = _cases(100, 6)
    y = np.array([c.label for c in cases])
    dlr = np.clip(0.2 + 0.5 * y + np.random.default_rng(1).normal(0, 0.2, y.size), 0.01, 0.99)
    entry = scored_evidence_entry(cases, {"dlr": dlr}, {"dlr": 0.5}, bootstrap=SETTINGS)
    line = policy_decision_line(entry["all"], NAMES, ["dlr"])
    four_plus = np.array([c.clinical["birads"] not in ("2", "3") for c in cases])
    for t in (0.1, 0.2, 0.3, 0.5):
        w = t / (1 - t)
        policy = ((four_plus & (y == 1)).sum() - (four_plus & (y == 0)).sum() * w) / y.size
        model = (((dlr >= t) & (y == 1)).sum() - ((dlr >= t) & (y == 0)).sum() * w) / y.size
        treat_all = (y.sum() - (1 - y).sum() * w) / y.size
        assert (
            f"{t:.2f}: DLR (image only) {model:.3f}; policy {policy:.3f}; biopsy all {treat_all:.3f}" in line
        )


def test_the_nomogram_statement_says_it_is_not_recalibrated_and_why():
    (line,) = nomogram_calibration_lines(NAMES)
    assert line.startswith("- The Combined nomogram is not recalibrated.")
    assert "identity" in line and "nested cross-validation" in line
