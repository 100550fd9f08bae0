"""Classifiers, signatures, deep-feature PCA and fusion (ensemble, stacking) on synthetic tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib.base.errors import ConfigError, InputError
from DLRPredictorLib.models.classifiers import (
    CLASSIFIERS,
    fit_classifier,
    grid_search,
    make_classifier,
    proba_to_logit,
)
from DLRPredictorLib.models.fusion import EnsembleFusion, StackingFusion, out_of_fold_proba
from DLRPredictorLib.models.selection import SelectionConfig
from DLRPredictorLib.models.signatures import DeepFeatureReducer, Signature, early_fusion
from scipy.special import softmax
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

FAST = SelectionConfig(lasso_cs=5, cv=3, max_features=5)
RAD = [f"rad{i}" for i in range(8)]  # rad0, rad1 carry the signal
DL = [f"dl{i}" for i in range(6)]  # pure noise


@pytest.fixture(scope="module")
def table() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """90 cases of 45 patients (2 views each), signal in rad0/rad1, noise elsewhere."""
    rng = np.random.default_rng(0)
    n = 90
    groups = np.repeat(np.arange(45), 2)
    latent = rng.normal(size=45)[groups]
    y = (latent + rng.normal(size=n) * 0.3 > 0).astype(int)
    X = rng.normal(size=(n, len(RAD) + len(DL)))
    X[:, 0] = latent + rng.normal(size=n) * 0.5
    X[:, 1] = -latent + rng.normal(size=n) * 0.7
    return pd.DataFrame(X, columns=RAD + DL), y, groups


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_each_classifier_fits_and_predicts(
    name: str, table: tuple[pd.DataFrame, np.ndarray, np.ndarray]
) -> None:
    X, y, groups = table
    Xs = X[RAD[:3]].to_numpy()
    est = fit_classifier(name, Xs, y, cv=3, seed=0, groups=groups)
    proba = est.predict_proba(Xs)
    assert proba.shape == (len(y), 2)
    assert np.all((proba >= 0) & (proba <= 1))
    assert roc_auc_score(y, proba[:, 1]) > 0.7
    assert type(est) is type(make_classifier(name, 0))


def test_grid_search_picks_from_grid(table: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    X, y, groups = table
    grid = {"C": [0.001, 5.0]}
    res = grid_search("lr", X[RAD].to_numpy(), y, grid=grid, cv=3, seed=0, groups=groups)
    assert res.best_params["C"] in grid["C"]
    assert len(res.results) == 2
    assert res.best_score == pytest.approx(res.results["mean_auc"].max())
    # Exact: the estimator is built with the C the search chose.
    assert res.estimator.C == res.best_params["C"]


def test_knn_grid_clipped_to_fold_size(table: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    X, y, _ = table
    res = grid_search("knn", X[RAD[:2]].to_numpy()[:20], y[:20], grid={"n_neighbors": [3, 500]}, cv=2)
    assert max(p["n_neighbors"] for p in res.results["params"]) <= 10


def test_unknown_classifier() -> None:
    with pytest.raises(ConfigError, match="unknown classifier 'boost'"):
        make_classifier("boost")
    with pytest.raises(ConfigError):
        Signature("X", classifier="boost")


def test_signature_uses_its_columns_and_round_trips(
    table: tuple[pd.DataFrame, np.ndarray, np.ndarray],
) -> None:
    X, y, groups = table
    sig = Signature("Rad", RAD, "lr", selection=FAST, cv=3, seed=1).fit(X, y, groups)
    assert set(sig.selected_features) <= set(RAD)
    assert {"rad0", "rad1"} & set(sig.selected_features)
    p = sig.predict_proba(X)
    assert p.shape == (len(y),) and np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(sig.decision_logit(X), np.log(p / (1 - p)), rtol=1e-9)
    # Extra and reordered columns are ignored. The selected columns are the same numbers, but the
    # matrix built from another frame may be laid out differently, and BLAS then sums the
    # classifier's dot products in another order: last bits only (rtol 1e-12, about 4500 ulp).
    np.testing.assert_allclose(sig.predict_proba(X[DL + RAD[::-1]]), p, rtol=1e-12, atol=0)
    spec = json.loads(json.dumps(sig.to_spec()))
    again = Signature.from_spec(spec, sig.estimator)
    # Bit-identical: the same estimator and the selector's float64 statistics through JSON (shortest
    # repr, exact), applied by the same code to the same frame.
    np.testing.assert_array_equal(again.predict_proba(X), p)
    assert spec["classifier"] == "lr" and spec["columns"] == RAD
    with pytest.raises(InputError, match="missing"):
        sig.predict_proba(X[DL])


def test_signature_is_deterministic(table: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    X, y, groups = table
    a = Signature("Rad", RAD, "rf", selection=FAST, cv=3, seed=4).fit(X, y, groups).predict_proba(X)
    b = Signature("Rad", RAD, "rf", selection=FAST, cv=3, seed=4).fit(X, y, groups).predict_proba(X)
    # Bit-identical: the same seeded fit twice on the same data, every estimator with n_jobs=1.
    np.testing.assert_array_equal(a, b)


def test_early_fusion_concatenates_columns() -> None:
    sig = early_fusion(RAD, DL, classifier="svm", seed=3)
    assert sig.columns == RAD + DL and sig.classifier == "svm" and sig.name == "DLR"


def test_deep_feature_reducer() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(size=(40, 3))
    X = np.column_stack([base @ rng.normal(size=(3, 20)) + rng.normal(size=(40, 20)) * 0.1, np.ones(40)])
    red = DeepFeatureReducer(0.9).fit(X[:30])
    assert red.names[0] == "dl_pc01" and len(red.names) == len(red.components)
    assert red.explained_variance_ratio.sum() >= 0.9
    assert 2 <= len(red.names) <= 5
    # Independent reference: sklearn PCA on the training-standardised matrix.
    mean, std = X[:30].mean(axis=0), X[:30].std(axis=0)
    std[std == 0] = 1.0
    ref = PCA(n_components=len(red.names), svd_solver="full").fit((X[:30] - mean) / std)
    np.testing.assert_allclose(red.transform(X[30:]), ref.transform((X[30:] - mean) / std), atol=1e-9)
    again = DeepFeatureReducer.from_spec(json.loads(json.dumps(red.to_spec())))
    # Bit-identical: JSON keeps every float64 digit, both component matrices are C-ordered copies,
    # and the same transform runs on the same rows.
    np.testing.assert_array_equal(again.transform(X[30:]), red.transform(X[30:]))
    assert list(red.transform_frame(X[30:]).columns) == red.names
    assert len(DeepFeatureReducer(4).fit(X).names) == 4
    assert len(DeepFeatureReducer(3.0).fit(X).names) == 3  # YAML "3.0" means 3 components
    with pytest.raises(InputError, match="expects 21"):
        red.transform(X[:, :5])
    with pytest.raises(ConfigError):
        DeepFeatureReducer(1.5)


def test_out_of_fold_never_leaks_a_patient(table: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    X, y, groups = table
    oof = out_of_fold_proba(
        lambda: Signature("Rad", RAD, "lr", selection=FAST, cv=3), X, y, groups, cv=4, seed=0
    )
    assert not np.isnan(oof.proba).any()
    assert sorted(set(oof.fold.tolist())) == [0, 1, 2, 3]
    for k in range(4):
        val_groups = set(groups[oof.fold == k])
        train_groups = set(groups[oof.fold != k])
        assert not val_groups & train_groups
    assert roc_auc_score(y, oof.proba) > 0.7


def test_ensemble_weights_favour_accurate_member(
    table: tuple[pd.DataFrame, np.ndarray, np.ndarray],
) -> None:
    X, y, groups = table
    good = Signature("Rad", RAD[:2], "lr", selection=FAST, cv=3)
    bad = Signature("DL", DL, "lr", selection=FAST, cv=3)
    ens = EnsembleFusion([good, bad], temperature=0.1, cv=3, seed=0).fit(X, y, groups)
    assert ens.weights.sum() == pytest.approx(1.0)
    assert ens.weights[0] > ens.weights[1]
    # Weights recomputed here from out-of-fold predictions of the same folds.
    acc = [
        np.mean((out_of_fold_proba(m.clone, X, y, groups, cv=3, seed=0).proba >= 0.5) == y)
        for m in (good, bad)
    ]
    np.testing.assert_allclose(ens.accuracies, acc)
    np.testing.assert_allclose(ens.weights, softmax(np.array(acc) / 0.1))
    members = np.column_stack([m.predict_proba(X) for m in ens.members])
    np.testing.assert_allclose(ens.predict_proba(X), members @ ens.weights)
    spec = json.loads(json.dumps(ens.to_spec()))
    rebuilt = [Signature.from_spec(s, m.estimator) for s, m in zip(spec["members"], ens.members, strict=True)]
    # Bit-identical: the spec's floats survive JSON exactly and the same code applies them.
    np.testing.assert_array_equal(
        EnsembleFusion.from_spec(spec, rebuilt).predict_proba(X), ens.predict_proba(X)
    )


def test_stacking_uses_out_of_fold_probabilities(
    table: tuple[pd.DataFrame, np.ndarray, np.ndarray],
) -> None:
    X, y, groups = table
    members = [
        Signature("Rad", RAD, "lr", selection=FAST, cv=3),
        Signature("DL", DL, "knn", selection=FAST, cv=3),
    ]
    st = StackingFusion(members, cv=3, seed=5).fit(X, y, groups)
    assert st.oof is not None
    for i, m in enumerate(members):
        oof = out_of_fold_proba(m.clone, X, y, groups, cv=3, seed=5)
        np.testing.assert_allclose(st.oof[:, i], oof.proba)
        # The meta-learner was not trained on in-sample probabilities.
        assert not np.allclose(st.oof[:, i], st.members[i].predict_proba(X))
    assert st.coef[0] > abs(st.coef[1])
    p = st.predict_proba(X)
    assert np.all((p > 0) & (p < 1)) and roc_auc_score(y, p) > 0.7
    spec = json.loads(json.dumps(st.to_spec()))
    rebuilt = [Signature.from_spec(s, m.estimator) for s, m in zip(spec["members"], st.members, strict=True)]
    # Bit-identical: the spec's floats survive JSON exactly and the same code applies them.
    np.testing.assert_array_equal(StackingFusion.from_spec(spec, rebuilt).predict_proba(X), p)
    with pytest.raises(ConfigError, match="expects members"):
        StackingFusion.from_spec(spec, rebuilt[::-1])


def test_stacking_on_logits_is_a_weighted_sum_of_member_logits(
    table: tuple[pd.DataFrame, np.ndarray, np.ndarray],
) -> None:
    X, y, groups = table
    members = [
        Signature("Rad", RAD, "lr", selection=FAST, cv=3),
        Signature("DL", DL, "lr", selection=FAST, cv=3),
    ]
    st = StackingFusion(members, cv=3, seed=5, inputs="logit").fit(X, y, groups)
    meta = LogisticRegression(C=1.0, max_iter=5000).fit(proba_to_logit(st.oof), y)
    np.testing.assert_allclose(st.coef, meta.coef_.ravel(), rtol=1e-4)
    logits = np.column_stack([m.decision_logit(X) for m in st.members])
    p = st.predict_proba(X)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(st.intercept + logits @ st.coef))), rtol=1e-12)
    # A probability meta-learner reads other numbers: the two fusions differ.
    by_prob = StackingFusion(members, cv=3, seed=5).fit(X, y, groups)
    assert not np.allclose(by_prob.predict_proba(X), p)
    spec = json.loads(json.dumps(st.to_spec()))
    assert spec["inputs"] == "logit"
    rebuilt = [Signature.from_spec(s, m.estimator) for s, m in zip(spec["members"], st.members, strict=True)]
    # Bit-identical: the spec's floats survive JSON exactly and the same code applies them.
    np.testing.assert_array_equal(StackingFusion.from_spec(spec, rebuilt).predict_proba(X), p)
    # Specs written before the option existed stacked probabilities (same members, same code: exact).
    old = {k: v for k, v in by_prob.to_spec().items() if k != "inputs"}
    np.testing.assert_array_equal(
        StackingFusion.from_spec(old, by_prob.members).predict_proba(X), by_prob.predict_proba(X)
    )
    with pytest.raises(ConfigError, match="stacking inputs"):
        StackingFusion(members, inputs="rank")
