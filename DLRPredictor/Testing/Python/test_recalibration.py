"""The recalibration step: fitted like independent implementations, it calibrates a miscalibrated
score, travels in a bundle, is applied at prediction, and a corrupted block is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import write_listed_file
from DLRPredictorLib.base.errors import BundleError
from DLRPredictorLib.evaluation.calibration import calibration, hosmer_lemeshow
from DLRPredictorLib.models.recalibration import Recalibration, fit_isotonic, fit_platt
from DLRPredictorLib.training.config import TrainConfig
from DLRPredictorLib.training.recalibration_fit import before_after, fit_recalibration
from scipy.special import expit

#: A valid isotonic calibration block; the refusal tests change one field of it.
ISOTONIC = {
    "model": "dlr",
    "method": "isotonic",
    "x": [0.1, 0.8],
    "y": [0.2, 0.7],
    "x_min": 0.1,
    "x_max": 0.8,
}


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels drawn from a true logit z, and the over-confident score expit(3 z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.2, n)
    y = (rng.random(n) < expit(z)).astype(int)
    return expit(3.0 * z), y, np.arange(n)


def test_platt_step_matches_an_independent_logistic_fit():
    p, y, _ = _miscalibrated(1500, 1)
    step = fit_platt(p, y, "dlr")
    # evaluation.calibration's joint fit is a separate Newton-Raphson implementation of the same
    # model (logit P(y=1) = a + b logit(p)); both converge to the unique maximum-likelihood point.
    ref = calibration(y, p)
    assert step.params["slope"] == pytest.approx(ref.slope, abs=1e-5)
    assert step.params["intercept"] == pytest.approx(ref.intercept_joint, abs=1e-5)
    assert step.params["slope"] == pytest.approx(1 / 3, abs=0.06)  # the score's logit is 3x the truth


def test_isotonic_step_matches_sklearn_isotonic_regression():
    from sklearn.isotonic import IsotonicRegression

    p, y, _ = _miscalibrated(800, 2)
    step = fit_isotonic(p, y, "dlr")
    ref = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    # new points inside and outside the fitted range: np.interp (the step) against sklearn's
    # scipy interp1d on the same thresholds; both are linear interpolation, to rounding.
    new = np.concatenate([np.linspace(-0.1, 1.1, 301), np.random.default_rng(3).random(200)])
    assert np.max(np.abs(step.apply(new) - ref.predict(new))) < 1e-12


def test_a_threefold_overconfident_score_becomes_calibrated_on_new_cases():
    p, y, groups = _miscalibrated(3000, 4)
    step, how = fit_recalibration(TrainConfig(), "dlr", p, y, groups)  # calibration "auto"
    assert step is not None and how["chosen"] in ("platt", "isotonic")
    assert how["cv_brier"][how["chosen"]] < how["cv_brier"]["none"]
    p_new, y_new, _ = _miscalibrated(3000, 5)
    res = before_after(step, y_new, p_new)
    assert res["before"]["hosmer_lemeshow_p"] < 1e-6
    assert res["after"]["hosmer_lemeshow_p"] > 0.01
    assert res["before"]["slope"] == pytest.approx(1 / 3, abs=0.06)
    assert res["after"]["slope"] == pytest.approx(1.0, abs=0.15)
    assert res["after"]["brier"] < res["before"]["brier"]
    # Exact: the HL figures come from the evaluation module, not a second implementation here
    assert res["after"]["hosmer_lemeshow_p"] == hosmer_lemeshow(y_new, step.apply(p_new))[2]


def test_a_calibrated_score_keeps_none_or_an_identity_like_step():
    rng = np.random.default_rng(6)
    z = rng.normal(0.0, 1.5, 3000)
    y = (rng.random(3000) < expit(z)).astype(int)
    step, how = fit_recalibration(TrainConfig(), "dlr", expit(z), y, np.arange(3000))
    if step is not None and step.method == "platt":
        assert step.params["slope"] == pytest.approx(1.0, abs=0.1)
    assert min(how["cv_brier"].values()) >= how["cv_brier"]["none"] - 0.002


def test_the_spec_round_trips_as_plain_json():
    p, y, _ = _miscalibrated(500, 7)
    for step in (fit_platt(p, y, "dlr"), fit_isotonic(p, y, "dlr")):
        back = Recalibration.from_spec(json.loads(json.dumps(step.to_spec())))
        # JSON floats round-trip exactly (repr), and apply is the same code: identical
        assert np.array_equal(back.apply(p), step.apply(p))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"method": "beta"}, "'method' is 'beta'"),
        ({"slope": -1.0}, "not positive"),
        ({"slope": "1"}, "'slope' must be a finite number"),
        ({"intercept": None}, "'intercept' must be a finite number"),
    ],
)
def test_a_corrupted_platt_block_is_refused(change, words):
    spec = {"model": "dlr", "method": "platt", "slope": 0.5, "intercept": 0.1, **change}
    with pytest.raises(BundleError, match="calibration block is invalid") as info:
        Recalibration.from_spec(spec)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"y": [0.9, 0.1]}, "not non-decreasing"),
        ({"y": [0.2]}, "equal length"),
        ({"y": [0.2, 1.5]}, "in [0, 1]"),
        ({"x": [0.1, "a"]}, "list of numbers"),
        ({"x_min": 0.9, "x_max": 0.1}, "x_min must not exceed x_max"),
    ],
)
def test_a_corrupted_isotonic_block_is_refused(change, words):
    with pytest.raises(BundleError, match="calibration block is invalid") as info:
        Recalibration.from_spec({**ISOTONIC, **change})
    assert words in str(info.value)


def _with_calibration(tmp_path, tiny_bundle, block) -> object:
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    doc = json.loads((root / "pipeline.json").read_text(encoding="utf-8"))
    doc["calibration"] = block
    write_listed_file(root, "pipeline.json", json.dumps(doc).encode())
    return root


def test_a_bundle_with_a_step_predicts_the_recalibrated_probability(tmp_path, tiny_bundle, first_case):
    from DLRPredictorLib.cohort.rows import predict_cohort_row, result_columns, result_row
    from DLRPredictorLib.inference import predictor

    block = {"model": "dlr", "method": "platt", "slope": 0.5, "intercept": -0.3}
    pred = predictor.load_predictor(_with_calibration(tmp_path, tiny_bundle, block))
    assert pred.pipeline.calibration is not None
    job = {"case_id": first_case["case_id"], "image": first_case["image"], "mask": first_case["mask"]}
    res = predict_cohort_row(pred, {**job, "clinical": {}})  # no clinical values: DLR answers
    raw = res.signature_scores["dlr"]
    logit = np.log(raw / (1 - raw))
    # Exact: the model's own score, reported before the step.
    assert res.probability_uncalibrated == raw
    assert res.probability == pytest.approx(expit(-0.3 + 0.5 * logit), rel=1e-12)
    cut = pred.signature_cutoffs["dlr"]
    assert res.cutoff == pytest.approx(expit(-0.3 + 0.5 * np.log(cut / (1 - cut))), rel=1e-12)
    assert res.predicted_positive == (raw >= cut)  # a Platt step keeps every call
    assert "recalibrated (platt)" in res.model_used
    cols = result_columns(pred)
    assert cols[cols.index("probability") + 1] == "probability_uncalibrated"
    row = result_row(pred, job["case_id"], res)
    assert float(row["probability_uncalibrated"]) == raw and float(row["score_dlr"]) == raw


def test_a_corrupted_calibration_block_in_a_bundle_is_refused(tmp_path, tiny_bundle):
    from DLRPredictorLib.inference import predictor

    block = {**ISOTONIC, "x": [0.8, 0.1]}  # thresholds out of order
    with pytest.raises(BundleError, match=r"calibration block is invalid.*rebuild the bundle"):
        predictor.load_predictor(_with_calibration(tmp_path, tiny_bundle, block))
    block = {"model": "nomodel", "method": "platt", "slope": 1.0, "intercept": 0.0}
    with pytest.raises(BundleError, match="recalibrates model 'nomodel'"):
        predictor.load_predictor(_with_calibration(tmp_path / "b", tiny_bundle, block))
