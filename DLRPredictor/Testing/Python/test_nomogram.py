"""Nomogram construction, agreement with the combined model, table, plot and spec round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib.base.errors import ClinicalValueError, ConfigError
from DLRPredictorLib.models.clinical_variables import (
    ClinicalVariable,
    clinical_feature_names,
    encode_clinical,
)
from DLRPredictorLib.models.combined import CombinedModel
from DLRPredictorLib.models.nomogram import Nomogram
from scipy.special import expit, logit

AGE = ClinicalVariable("age", "numeric", unit="years", minimum=10, maximum=110)
BIRADS_ORD = ClinicalVariable("birads", "categorical", allowed=("3", "4a", "4b", "4c", "5"), label="BI-RADS")
BIRADS_1HOT = ClinicalVariable(
    "birads", "categorical", allowed=("3", "4a", "4b", "4c", "5"), encoding="onehot", label="BI-RADS"
)


def test_hand_computed_points() -> None:
    # x1 in 0..1 with coef 2 (effect 2); x2 in 0..10 with coef -0.5 (effect 5, the largest).
    nom = Nomogram.from_logistic([2.0, -0.5], -1.0, {"x1": (0, 1), "x2": (0, 10)}, ["x1", "x2"])
    assert nom.points({"x1": 0, "x2": 10}) == pytest.approx({"x1": 0.0, "x2": 0.0})
    assert nom.points({"x1": 1, "x2": 0}) == pytest.approx({"x1": 40.0, "x2": 100.0})
    assert nom.points({"x1": 0.5, "x2": 4}) == pytest.approx({"x1": 20.0, "x2": 60.0})
    assert nom.max_total == pytest.approx(140.0)
    # Total 0 is x1=0, x2=10: LP = -1 + 0 - 5 = -6.
    assert nom.probability_from_total(0) == pytest.approx(expit(-6.0))
    assert nom.probability({"x1": 0.5, "x2": 4}) == pytest.approx(expit(-1.0 + 1.0 - 2.0))
    assert nom.total_from_probability(expit(-6.0)) == pytest.approx(0.0, abs=1e-9)


@pytest.fixture(scope="module")
def fitted() -> dict:
    rng = np.random.default_rng(1)
    n = 400
    age = rng.uniform(25, 85, n)
    birads = rng.choice(list(BIRADS_1HOT.allowed), n)
    score = rng.uniform(0.03, 0.97, n)
    effect = {"3": -1.0, "4a": 0.0, "4b": 0.5, "4c": 1.0, "5": 2.0}
    y = rng.uniform(size=n) < expit(-2.5 + 0.03 * age + np.array([effect[b] for b in birads]) + logit(score))
    rows = [{"age": a, "birads": b} for a, b in zip(age, birads, strict=True)]
    out = {"age": age, "birads": birads, "score": score, "y": y.astype(int), "rows": rows}
    for key, variables in (("onehot", [AGE, BIRADS_1HOT]), ("ordinal", [AGE, BIRADS_ORD])):
        X = encode_clinical(rows, variables)
        model = CombinedModel().fit(score, X, out["y"], clinical_feature_names(variables))
        out[key] = (model, variables, X)
    return out


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_nomogram_equals_combined_model(fitted: dict, encoding: str) -> None:
    model, variables, X = fitted[encoding]
    s = logit(fitted["score"])
    nom = Nomogram.from_combined(model, variables, score_range=(float(s.min()), float(s.max())))
    expected = model.predict_proba(fitted["score"], X)
    got = [
        nom.probability({"DLR score": s[i], "age": fitted["age"][i], "birads": fitted["birads"][i]})
        for i in range(len(s))
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    # The largest-effect predictor spans exactly 0..100 points over its range.
    effects = {ax.name: ax.effect_range for ax in nom.axes}
    largest = max(effects, key=effects.get)
    ax = next(a for a in nom.axes if a.name == largest)
    if ax.kind == "numeric":
        ends = [nom.points({**_any_values(nom), largest: v})[largest] for v in (ax.low, ax.high)]
    else:
        ends = [nom.points({**_any_values(nom), largest: lv})[largest] for lv in ax.levels]
    assert min(ends) == pytest.approx(0.0, abs=1e-9) and max(ends) == pytest.approx(100.0)
    for other in nom.axes:
        assert other.effect_range * nom.scale <= 100.0 + 1e-9


def _any_values(nom: Nomogram) -> dict:
    return {ax.name: (ax.low if ax.kind == "numeric" else ax.levels[0]) for ax in nom.axes}


def test_onehot_reference_level_scores_zero_points_relative(fitted: dict) -> None:
    model, variables, _ = fitted["onehot"]
    nom = Nomogram.from_combined(model, variables, score_range=(-3, 3))
    birads = next(a for a in nom.axes if a.name == "birads")
    assert birads.levels == BIRADS_1HOT.allowed
    coef = dict(zip(model.names, model.coefs, strict=True))
    lp = dict(zip(birads.levels, birads.level_lp, strict=True))
    assert lp["3"] == 0.0 and lp["5"] == pytest.approx(coef["birads=5"])
    assert birads.label == "BI-RADS"


def test_table_and_plot(fitted: dict, tmp_path: Path) -> None:
    model, variables, _ = fitted["onehot"]
    nom = Nomogram.from_combined(model, variables, score_range=(-3, 3))
    table = nom.table()
    assert set(table["axis"]) == {"DLR score", "age", "BI-RADS", "Probability"}
    prob = table[table["axis"] == "Probability"]
    assert np.all(np.diff(prob["points"].to_numpy()) > 0)
    for _, row in prob.iterrows():
        assert nom.probability_from_total(row["points"]) == pytest.approx(row["value"])
    age_rows = table[table["axis"] == "age"]
    for _, row in age_rows.iterrows():
        assert row["points"] == pytest.approx(nom.points({**_any_values(nom), "age": row["value"]})["age"])
    out = nom.plot(tmp_path / "nomogram.png", title="DLR nomogram")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_spec_round_trip(fitted: dict) -> None:
    model, variables, _ = fitted["onehot"]
    nom = Nomogram.from_combined(model, variables, score_range=(-3, 3))
    again = Nomogram.from_spec(json.loads(json.dumps(nom.to_spec())))
    values = {"DLR score": 0.7, "age": 52, "birads": "4b"}
    # Bit-identical: the spec's floats survive JSON exactly (shortest repr) and the same code uses them.
    assert again.points(values) == nom.points(values)
    assert again.probability(values) == nom.probability(values)
    with pytest.raises(ConfigError):
        Nomogram.from_spec({"kind": "CombinedModel"})


def test_errors(fitted: dict) -> None:
    model, variables, _ = fitted["onehot"]
    nom = Nomogram.from_combined(model, variables, score_range=(-3, 3))
    with pytest.raises(ClinicalValueError, match="BI-RADS '6' is not one of 3, 4a"):
        nom.points({"DLR score": 0.0, "age": 50, "birads": "6"})
    with pytest.raises(ClinicalValueError, match="needs a value for age"):
        nom.points({"DLR score": 0.0, "birads": "3"})
    with pytest.raises(ConfigError, match="score_range"):
        Nomogram.from_combined(model, variables)
    with pytest.raises(ConfigError, match="not encodings"):
        Nomogram.from_combined(model, [AGE], score_range=(-3, 3))
    with pytest.raises(ConfigError, match="no range"):
        Nomogram.from_logistic([1.0], 0.0, {}, ["x"])
    with pytest.raises(ConfigError, match="zero effect"):
        Nomogram.from_logistic([0.0], 0.0, {"x": (0, 1)}, ["x"])
