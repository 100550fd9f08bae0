"""Clinical variables (validation, encoding), uni/multivariable logistic tables, combined model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from DLRPredictorLib.base.errors import ClinicalValueError, ConfigError, InputError
from DLRPredictorLib.models.clinical_logistic import (
    multivariable_logistic,
    select_predictors,
    univariable_logistic,
)
from DLRPredictorLib.models.clinical_variables import (
    ClinicalVariable,
    clinical_feature_names,
    encode_clinical,
    is_missing,
)
from DLRPredictorLib.models.combined import CombinedModel
from scipy.special import expit, logit

AGE = ClinicalVariable("age", "numeric", unit="years", minimum=10, maximum=110)
BIRADS = ClinicalVariable(
    "birads", "categorical", allowed=("1", "2", "3", "4", "4a", "4b", "4c", "5"), label="BI-RADS"
)
BIRADS_1HOT = ClinicalVariable(
    "birads", "categorical", allowed=("2", "3", "4", "5"), encoding="onehot", label="BI-RADS"
)
SCHEMA = Path(__file__).resolve().parents[2] / "Resources" / "Schemas" / "bundle.schema.json"


@pytest.mark.parametrize(
    ("row", "variables", "message"),
    [
        ({"age": 250}, [AGE], "age 250 is outside 10-110 years"),
        ({"age": "abc"}, [AGE], "age 'abc' is not a number"),
        ({"age": True}, [AGE], "is not a number"),
        ({"age": "inf"}, [AGE], "not a finite number"),
        ({"birads": "7"}, [BIRADS], "BI-RADS '7' is not one of 1, 2, 3, 4, 4a, 4b, 4c, 5"),
        ({"birads": 7}, [BIRADS], "BI-RADS '7' is not one of"),
        ({"age": 40, "weight": 70}, [AGE], "unknown clinical variable 'weight'.*accepts: age"),
        ({"case_id": "bus_0007"}, [AGE], r"age is missing \(case bus_0007\)"),
        ({"age": "not available"}, [AGE], "age is missing"),
    ],
)
def test_encoder_errors(row: dict, variables: list, message: str) -> None:
    with pytest.raises(ClinicalValueError, match=message):
        encode_clinical([row], variables)


def test_encoder_messages_name_the_row() -> None:
    with pytest.raises(ClinicalValueError, match=r"\(row 2\)"):
        encode_clinical([{"age": 50}, {"age": 5}], [AGE])
    only_min = ClinicalVariable("size", "numeric", unit="mm", minimum=0)
    with pytest.raises(ClinicalValueError, match="size -1 is below the minimum 0 mm"):
        encode_clinical([{"size": -1}], [only_min])


def test_encoding_values() -> None:
    rows = [
        {"case_id": "a", "age": "45", "birads": "4A"},
        {"case_id": "b", "age": 60.5, "birads": 5},
        {"case_id": "c", "age": 10, "birads": 2.0},
    ]
    ordinal = encode_clinical(rows, [AGE, BIRADS])
    # Exact (here and below): the encoding copies the given numbers or maps levels to small integers.
    np.testing.assert_array_equal(ordinal, [[45, 4], [60.5, 7], [10, 1]])
    assert clinical_feature_names([AGE, BIRADS_1HOT]) == ["age", "birads=3", "birads=4", "birads=5"]
    rows1 = [{"age": 45, "birads": "2"}, {"age": 45, "birads": "4"}]
    # Exact: integer-valued codes stored as float.
    np.testing.assert_array_equal(encode_clinical(rows1, [AGE, BIRADS_1HOT]), [[45, 0, 0, 0], [45, 0, 1, 0]])
    custom = ClinicalVariable("birads", "categorical", allowed=("3", "4", "5"), ordinal_values=(3, 4, 5))
    # Exact: an integer ordinal value stored as float.
    np.testing.assert_array_equal(encode_clinical([{"birads": "4"}], [custom]), [[4.0]])


def test_variable_spec_and_manifest_entry() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for var in (AGE, BIRADS, BIRADS_1HOT):
        again = ClinicalVariable.from_spec(json.loads(json.dumps(var.to_spec())))
        assert again == var
        assert again.encoded_names() == var.encoded_names()
    schema = json.loads(SCHEMA.read_text())
    sub = {"$defs": schema["$defs"], "$ref": "#/$defs/clinical_variable"}
    for var in (AGE, BIRADS_1HOT):
        jsonschema.validate(var.manifest_entry(), sub)
        assert ClinicalVariable.from_spec(var.manifest_entry()).allowed == var.allowed
    with pytest.raises(ConfigError, match="distinct"):
        ClinicalVariable("x", "categorical", allowed=("a", "A"))
    with pytest.raises(ConfigError, match="type"):
        ClinicalVariable("x", "text")
    with pytest.raises(ConfigError, match="unknown key"):
        ClinicalVariable.from_spec({"name": "x", "type": "numeric", "units": "mm"})


MISSING = [None, "", "  ", "NA", "n/a", "NaN", "None", "not available", " Unknown ", float("nan"), np.nan]


@pytest.mark.parametrize("value", MISSING)
def test_one_rule_says_what_is_not_given(value: object, tiny_bundle) -> None:
    """Training (encode_clinical) and prediction (the bundle pipeline's check of CSV, API or Slicer
    values) read "not given" alike: a cohort cell "unknown" for BI-RADS is missing everywhere.
    The pipeline is that of a bundle with a numeric and a categorical variable (age, BI-RADS)."""
    from DLRPredictorLib.inference import predictor

    assert is_missing(value)
    with pytest.raises(ClinicalValueError, match="BI-RADS is missing"):
        encode_clinical([{"birads": value}], [BIRADS])
    with pytest.raises(ClinicalValueError, match="age is missing"):
        encode_clinical([{"age": value}], [AGE])
    pipeline = predictor.load_predictor(tiny_bundle).pipeline
    # Exact: the text '57' parsed to a float, with no arithmetic.
    assert pipeline.check_clinical({"age": "57", "birads": value}) == {"age": 57.0}
    assert pipeline.check_clinical({"age": value, "birads": value}) == {}


@pytest.mark.parametrize("value", [0, 0.0, "0", "4a", "no", "-", "nan value", False, np.int64(3)])
def test_values_that_are_given(value: object) -> None:
    assert not is_missing(value)


def test_no_categorical_level_reads_as_missing() -> None:
    with pytest.raises(ConfigError, match="'unknown' means a missing value"):
        ClinicalVariable("margin", "categorical", allowed=("circumscribed", "unknown"))
    with pytest.raises(ConfigError, match="'None' means a missing value"):
        ClinicalVariable.from_spec({"name": "calc", "type": "categorical", "allowed": ["None", "micro"]})


def test_the_bundle_check_takes_numbers_and_text_alike(tiny_bundle) -> None:
    from DLRPredictorLib.inference import predictor

    pipeline = predictor.load_predictor(tiny_bundle).pipeline  # age and BI-RADS
    as_text = pipeline.check_clinical({"age": " 57 ", "birads": "4B"})
    assert as_text == pipeline.check_clinical({"age": 57, "birads": "4b"}) == {"age": 57.0, "birads": "4b"}
    # a number read from a spreadsheet: 4.0 is BI-RADS 4, as encode_clinical reads it
    assert pipeline.check_clinical({"birads": 4.0}) == {"birads": "4"}
    with pytest.raises(ClinicalValueError, match="Age 'abc' is not a number"):
        pipeline.check_clinical({"age": " abc "})


@pytest.fixture(scope="module")
def cohort() -> dict:
    rng = np.random.default_rng(0)
    n = 300
    age = rng.uniform(20, 90, n)
    birads = rng.choice(["2", "3", "4", "5"], n)
    size = rng.uniform(5, 40, n)  # no effect
    score = rng.uniform(0.02, 0.98, n)
    lp = -4 + 0.04 * age + np.array([{"2": 0, "3": 0.5, "4": 1, "5": 2}[b] for b in birads]) + logit(score)
    y = (rng.uniform(size=n) < expit(lp)).astype(int)
    size_var = ClinicalVariable("size", "numeric", unit="mm", minimum=0, maximum=100)
    variables = [AGE, BIRADS_1HOT, size_var]
    rows = [{"age": a, "birads": b, "size": s} for a, b, s in zip(age, birads, size, strict=True)]
    X = encode_clinical(rows, variables)
    return {"X": X, "y": y, "score": score, "names": clinical_feature_names(variables), "rows": rows,
            "variables": variables}  # fmt: skip


def test_univariable_matches_statsmodels(cohort: dict) -> None:
    X, y, names = cohort["X"], cohort["y"], cohort["names"]
    table = univariable_logistic(X, y, names)
    assert list(table["predictor"]) == names
    for j, name in enumerate(names):
        res = sm.Logit(y, sm.add_constant(X[:, j])).fit(disp=0)
        row = table.set_index("predictor").loc[name]
        assert row["odds_ratio"] == pytest.approx(np.exp(res.params[1]), rel=1e-8)
        assert row["ci_lower"] == pytest.approx(np.exp(res.conf_int()[1, 0]), rel=1e-8)
        assert row["ci_upper"] == pytest.approx(np.exp(res.conf_int()[1, 1]), rel=1e-8)
        assert row["p_value"] == pytest.approx(res.pvalues[1], rel=1e-6)
    assert table.set_index("predictor").loc["age", "p_value"] < 0.05


def test_multivariable_matches_statsmodels(cohort: dict) -> None:
    X, y, names = cohort["X"], cohort["y"], cohort["names"]
    table = multivariable_logistic(X, y, names)
    res = sm.Logit(y, sm.add_constant(X)).fit(disp=0)
    np.testing.assert_allclose(table["odds_ratio"], np.exp(res.params[1:]), rtol=1e-8)
    np.testing.assert_allclose(table["ci_lower"], np.exp(res.conf_int()[1:, 0]), rtol=1e-8)
    np.testing.assert_allclose(table["p_value"], res.pvalues[1:], rtol=1e-6)
    with pytest.raises(InputError, match="collinear"):
        multivariable_logistic(np.column_stack([X[:, :1], X[:, :1]]), y, ["a", "b"])


def test_select_predictors(cohort: dict) -> None:
    table = univariable_logistic(cohort["X"], cohort["y"], cohort["names"])
    kept = select_predictors(table, alpha=0.05)
    expected = [n for n, p in zip(table["predictor"], table["p_value"], strict=True) if p < 0.05]
    assert kept == expected and "age" in kept and "size" not in kept
    smallest = table.loc[table["p_value"].idxmin(), "predictor"]
    assert select_predictors(table, alpha=1e-300) == [smallest]
    assert len(select_predictors(table, alpha=1e-300, min_keep=2)) == 2


def test_constant_predictor_is_reported_not_fatal(cohort: dict) -> None:
    X = np.column_stack([cohort["X"][:, 0], np.ones(len(cohort["y"]))])
    table = univariable_logistic(X, cohort["y"], ["age", "const"])
    assert table.loc[1, "note"] == "constant" and np.isnan(table.loc[1, "odds_ratio"])


def test_combined_model(cohort: dict) -> None:
    X, y, score, names = cohort["X"], cohort["y"], cohort["score"], cohort["names"]
    model = CombinedModel().fit(score, X, y, names)
    assert model.fit_method == "statsmodels"
    ref = sm.Logit(y, sm.add_constant(np.column_stack([logit(score), X]))).fit(disp=0)
    np.testing.assert_allclose([model.intercept, model.coef_score, *model.coefs], ref.params, rtol=1e-7)
    contrib = model.contributions(score, X)
    assert list(contrib.columns) == ["intercept", "DLR score", *names, "logit"]
    terms = contrib.drop(columns="logit").to_numpy()
    np.testing.assert_allclose(terms.sum(axis=1), contrib["logit"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.predict_proba(score, X), ref.predict(), rtol=1e-7)
    # Two implementations of the logistic function (numpy's 1 / (1 + exp(-x)) and scipy's expit) on
    # the same logits: their exp kernels differ in the last bits (seen: 1 ulp on 5 of 300 values).
    np.testing.assert_array_max_ulp(
        model.predict_proba(score, X), expit(contrib["logit"].to_numpy()), maxulp=8
    )
    np.testing.assert_allclose(contrib["age"], model.coefs[0] * X[:, 0])
    again = CombinedModel.from_spec(json.loads(json.dumps(model.to_spec())))
    # Bit-identical: JSON keeps every float64 digit (shortest repr), and the same code runs on them.
    np.testing.assert_array_equal(again.predict_proba(score, X), model.predict_proba(score, X))
    assert again.table is not None and list(again.table["predictor"]) == ["DLR score", *names]


def test_combined_model_logit_scale_and_clinical_only(cohort: dict) -> None:
    X, y, score, names = cohort["X"], cohort["y"], cohort["score"], cohort["names"]
    prob = CombinedModel().fit(score, X, y, names)
    lg = CombinedModel(score_scale="logit").fit(logit(score), X, y, names)
    np.testing.assert_allclose(lg.predict_proba(logit(score), X), prob.predict_proba(score, X), rtol=1e-9)
    clin = CombinedModel(score_name=None).fit(None, X, y, names)
    ref = sm.Logit(y, sm.add_constant(X)).fit(disp=0)
    np.testing.assert_allclose([clin.intercept, *clin.coefs], ref.params, rtol=1e-7)
    assert "DLR score" not in clin.contributions(None, X).columns


def test_combined_model_separation_falls_back() -> None:
    score = np.r_[np.full(20, 0.1), np.full(20, 0.9)]
    y = np.r_[np.zeros(20), np.ones(20)].astype(int)
    model = CombinedModel().fit(score, np.zeros((40, 0)), y, [])
    assert model.fit_method == "sklearn_large_c"
    assert np.isfinite(model.coef_score) and model.coef_score > 0
    p = model.predict_proba(score, np.zeros((40, 0)))
    assert p[:20].max() < 0.5 < p[20:].min()
    with pytest.raises(InputError, match="3 scores for 40 cases"):
        model.predict_proba(score[:3], np.zeros((40, 0)))
