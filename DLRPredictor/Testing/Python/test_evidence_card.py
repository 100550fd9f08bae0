"""The model card's evidence lines (training/evidence_card.py) on constructed held-out sets.

The verdict of the "Beyond the reader" sentence must follow the data: cohorts are built where the
image score is clearly better than, clearly worse than, or the same ranking as BI-RADS, and the
sentence is checked against the test that the block itself holds (the statistics are checked
against independent references in test_clustered_stats.py and test_reader_comparison.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from DLRPredictorLib.evaluation.bootstrap import BootstrapSettings
from DLRPredictorLib.evaluation.report import evaluate_scores
from DLRPredictorLib.evaluation.subgroups import subgroup_rows
from DLRPredictorLib.training.evidence_card import evidence_card_lines, reader_sentence
from DLRPredictorLib.training.model_card import NAMES

N = 160
SETTINGS = BootstrapSettings(n_resamples=200, seed=3)
BENIGN, MALIGNANT = np.array(["2", "3", "4a"]), np.array(["4b", "4c", "5"])


def _cohort(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, two images per patient (ids that must not appear in the card), a random draw."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.integers(0, 2, N // 2), 2)
    patients = np.repeat([f"pid-secret-{k:03d}" for k in range(N // 2)], 2)
    return y, patients, rng.normal(size=N)


def _block(y, patients, scores, reader, clinical=None):
    return evaluate_scores(y, scores, clusters=patients, reader=reader, clinical=clinical, bootstrap=SETTINGS)


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_the_sentence_says_less_well_when_the_reader_separates_and_the_image_does_not():
    y, patients, noise = _cohort(0)
    reader = np.where(y == 1, MALIGNANT[np.arange(N) % 3], BENIGN[np.arange(N) % 3])  # perfect
    block = _block(y, patients, {"dlr": _logistic(0.3 * y + noise)}, reader)
    row = block["reader_comparison"]["rows"][0]
    assert row["p_holm"] < 0.05 and row["diff_vs_reader"] < 0
    text = reader_sentence(block, NAMES, "dlr")
    assert "discriminates less well than BI-RADS" in text
    assert f"p={row['p']:.3f}" in text and "below 0" in text  # the IDI's interval is below 0 here


def test_the_sentence_says_better_when_the_image_separates_and_the_reader_does_not():
    y, patients, noise = _cohort(1)
    rng = np.random.default_rng(7)
    reader = np.array(["2", "3", "4a", "4b", "4c", "5"])[rng.integers(0, 6, N)]  # unrelated to y
    block = _block(y, patients, {"dlr": _logistic(4.0 * (y - 0.5) + 0.5 * noise)}, reader)
    row = block["reader_comparison"]["rows"][0]
    assert row["p_holm"] < 0.05 and row["diff_vs_reader"] > 0
    assert "discriminates better than BI-RADS" in reader_sentence(block, NAMES, "dlr")


def test_the_sentence_says_not_significant_for_the_readers_own_ranking():
    y, patients, noise = _cohort(2)
    ordinal = np.where(y == 1, 4.0, 3.0) + np.round(noise)  # overlapping categories
    keys = np.array(["2", "3", "4a", "4b", "4c", "5"])
    reader = keys[np.clip(ordinal - 1, 0, 5).astype(int)]
    rank = {k: i for i, k in enumerate(keys)}
    image = _logistic(np.array([rank[k] for k in reader]) - 2.5)  # a monotone copy of BI-RADS
    clinical = _logistic(0.5 * noise)
    block = _block(
        y, patients, {"dlr": image, "combined": image, "clinical_only": clinical}, reader, "clinical_only"
    )
    row = {r["score"]: r for r in block["reader_comparison"]["rows"]}["dlr"]
    assert row["p"] == pytest.approx(1.0) and row["diff_vs_reader"] == pytest.approx(0.0, abs=1e-12)
    text = reader_sentence(block, NAMES, "dlr")
    assert "the difference is not significant" in text
    assert "discriminates better" not in text and "less well" not in text
    # the combined model against the clinical-only one is reported from the clustered tests
    assert "Adding the image score to the clinical predictors" in text


def test_card_lines_carry_the_intervals_per_group_table_and_no_patient_id():
    y, patients, noise = _cohort(3)
    reader = np.where(y == 1, MALIGNANT[np.arange(N) % 3], BENIGN[np.arange(N) % 3])
    scores = {"dlr": _logistic(1.0 * y + noise)}
    block = _block(y, patients, scores, reader)
    device = np.array(["A", "B"])[np.arange(N) // 2 % 2]
    entry = {"all": block, "all_subgroups": {"column": "device", "rows": subgroup_rows(y, scores, device)}}
    text = "\n".join(evidence_card_lines(entry, NAMES, "dlr"))
    res = block["scores"]["dlr"]
    cl, bs = res["auc_clustered"], res["auc_bootstrap"]
    assert f"{cl['ci_low']:.3f} to {cl['ci_high']:.3f}" in text
    assert f"{bs['ci_low']:.3f} to {bs['ci_high']:.3f}" in text
    assert f"{N} images of {N // 2} patients" in text
    assert "| DLR (image only) | A |" in text and "| DLR (image only) | B |" in text
    assert "pid-secret" not in text
