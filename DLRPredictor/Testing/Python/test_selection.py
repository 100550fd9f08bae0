"""Feature selection: known-signal recovery, correlation pruning, no leakage, specs and errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib.base.errors import ConfigError, InputError
from DLRPredictorLib.models.selection import FeatureSelector, SelectionConfig, stratified_folds
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

INFORMATIVE = [f"inf{i}" for i in range(5)]
BETA = np.array([1.5, -1.2, 1.0, 1.0, -0.8])


def make_data(seed: int = 0, n: int = 300, n_noise: int = 193) -> tuple[pd.DataFrame, np.ndarray]:
    """5 informative features, a noisy copy of inf0, an exact duplicate of inf1, and noise (200 total)."""
    rng = np.random.default_rng(seed)
    inf = rng.normal(size=(n, 5))
    y = (inf @ BETA + rng.normal(size=n) * 0.7 > 0).astype(int)
    cols = {name: inf[:, i] for i, name in enumerate(INFORMATIVE)}
    cols["copy0"] = inf[:, 0] + rng.normal(size=n) * 0.05
    cols["dup1"] = inf[:, 1].copy()
    for j in range(n_noise):
        cols[f"noise{j:03d}"] = rng.normal(size=n)
    return pd.DataFrame(cols), y


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    return make_data()


@pytest.fixture(scope="module")
def fitted(data: tuple[pd.DataFrame, np.ndarray]) -> FeatureSelector:
    X, y = data
    return FeatureSelector(SelectionConfig(seed=0)).fit(X.iloc[:200], y[:200])


def test_keeps_informative_and_drops_noise(fitted: FeatureSelector) -> None:
    sel = set(fitted.selected_names)
    groups = [{"inf0", "copy0"}, {"inf1", "dup1"}, {"inf2"}, {"inf3"}, {"inf4"}]
    recovered = sum(bool(g & sel) for g in groups)
    assert recovered >= 4, fitted.selected_names
    noise = [s for s in sel if s.startswith("noise")]
    assert len(noise) <= 19, f"kept {len(noise)} of 193 noise features"
    assert not {"inf0", "copy0"} <= sel and not {"inf1", "dup1"} <= sel


def test_correlation_pruning_keeps_smaller_p(
    data: tuple[pd.DataFrame, np.ndarray], fitted: FeatureSelector
) -> None:
    X, y = data
    Xtr, ytr = X.iloc[:200], y[:200]
    rep = fitted.report().set_index("feature")
    # Exact duplicate: equal p, the earlier column is kept and the duplicate removed.
    assert rep.loc["dup1", "removed_at"] == "correlation"
    assert rep.loc["dup1", "correlated_with"] == "inf1"
    # Noisy copy: the one with the smaller Welch p (computed here, independently) survives.
    p = {
        c: stats.ttest_ind(Xtr[c][ytr == 1], Xtr[c][ytr == 0], equal_var=False).pvalue
        for c in ("inf0", "copy0")
    }
    loser = max(p, key=p.get)
    winner = min(p, key=p.get)
    assert rep.loc[loser, "removed_at"] == "correlation"
    assert rep.loc[loser, "correlated_with"] == winner
    assert rep.loc[winner, "removed_at"] != "correlation"
    np.testing.assert_allclose(rep.loc["inf2", "p_value"], stats.ttest_ind(
        Xtr["inf2"][ytr == 1], Xtr["inf2"][ytr == 0], equal_var=False).pvalue, rtol=1e-10)  # fmt: skip


def _holdout_auc(X: pd.DataFrame, y: np.ndarray, leaky: bool = False) -> float:
    tr, te = np.arange(200), np.arange(200, 300)
    sel = FeatureSelector(SelectionConfig(seed=0))
    sel.fit(X, y) if leaky else sel.fit(X.iloc[tr], y[tr])
    clf = LogisticRegression(max_iter=1000).fit(sel.transform(X.iloc[tr]), y[tr])
    return roc_auc_score(y[te], clf.predict_proba(sel.transform(X.iloc[te]))[:, 1])


def test_holdout_auc_real_signal(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    assert _holdout_auc(X, y) > 0.85


def test_no_leakage_with_permuted_labels(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    """Selection fitted on the training split only: permuted labels give chance AUC on the test split.

    Tolerance: with 100 test cases one AUC has sd ~0.06 under the null; each of 5 permutations must
    lie in 0.30-0.70 and their mean in 0.40-0.60 (about 4 sd). The same selection fitted on all
    cases (the leak) is shown to inflate the AUC, so this test can detect leakage.
    """
    X, y = data
    rng = np.random.default_rng(123)
    perms = [rng.permutation(y) for _ in range(5)]
    honest = np.array([_holdout_auc(X, yp) for yp in perms])
    assert np.all((honest > 0.30) & (honest < 0.70)), honest
    assert 0.40 < honest.mean() < 0.60, honest
    leaky = np.array([_holdout_auc(X, yp, leaky=True) for yp in perms])
    assert leaky.mean() > honest.mean() + 0.1, (honest, leaky)


def test_transform_uses_training_statistics(
    data: tuple[pd.DataFrame, np.ndarray], fitted: FeatureSelector
) -> None:
    X, _ = data
    names = fitted.selected_names
    train = X.iloc[:200][names].to_numpy()
    expected = (X.iloc[200:][names].to_numpy() - train.mean(axis=0)) / train.std(axis=0)
    np.testing.assert_allclose(fitted.transform(X.iloc[200:]), expected, rtol=1e-12)
    # Column order of the input does not matter for a DataFrame. Exact: columns are picked by name
    # and z-scored elementwise (correctly rounded per element, whatever the layout).
    shuffled = X.iloc[200:, ::-1]
    np.testing.assert_array_equal(fitted.transform(shuffled), fitted.transform(X.iloc[200:]))


def test_report_and_step_summary(fitted: FeatureSelector) -> None:
    rep = fitted.report()
    assert len(rep) == 200
    assert list(rep.loc[rep["selected"], "feature"]) == fitted.selected_names
    assert rep.loc[rep["selected"], "removed_at"].isna().all()
    assert rep.loc[~rep["selected"], "removed_at"].notna().all()
    assert (rep.loc[rep["selected"], "lasso_coef"].abs() > 0).all()
    summary = fitted.step_summary()
    assert summary["features_in"].iloc[0] == 200
    assert summary["features_out"].iloc[-1] == len(fitted.selected_names)
    assert (summary["features_out"].iloc[:-1].to_numpy() == summary["features_in"].iloc[1:].to_numpy()).all()


def test_spec_round_trip_through_json(data: tuple[pd.DataFrame, np.ndarray], fitted: FeatureSelector) -> None:
    X, _ = data
    again = FeatureSelector.from_spec(json.loads(json.dumps(fitted.to_spec())))
    assert again.selected_names == fitted.selected_names
    # Bit-identical: mean and std survive JSON exactly, and the same elementwise code applies them.
    np.testing.assert_array_equal(again.transform(X.iloc[200:]), fitted.transform(X.iloc[200:]))
    pd.testing.assert_frame_equal(again.report(), fitted.report())
    with pytest.raises(ConfigError):
        FeatureSelector.from_spec({"kind": "Signature"})


def test_max_features_keeps_largest_coefficients(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    uncapped = FeatureSelector(SelectionConfig(max_features=None)).fit(X.iloc[:200], y[:200])
    capped = FeatureSelector(SelectionConfig(max_features=2)).fit(X.iloc[:200], y[:200])
    coef = uncapped.report().set_index("feature")["lasso_coef"].dropna().abs()
    top2 = sorted(coef.sort_values(ascending=False).index[:2])
    assert len(uncapped.selected_names) > 2
    assert sorted(capped.selected_names) == top2


@pytest.mark.parametrize(
    "config",
    [
        SelectionConfig(univariate="mannwhitney", correlation="spearman"),
        SelectionConfig(lasso="linear"),
        SelectionConfig(lasso_solver="saga"),
        SelectionConfig(univariate="none", correlation="none", lasso="logistic", standardize=False),
    ],
)
def test_variants_recover_signal(data: tuple[pd.DataFrame, np.ndarray], config: SelectionConfig) -> None:
    X, y = data
    sel = FeatureSelector(config).fit(X.iloc[:200], y[:200])
    assert len(set(sel.selected_names) & {"inf0", "copy0", "inf1", "dup1", "inf2", "inf3", "inf4"}) >= 4
    out = sel.transform(X.iloc[200:])
    assert out.shape == (100, len(sel.selected_names))
    if not config.standardize:
        # Exact: copied columns.
        np.testing.assert_array_equal(out, X.iloc[200:][sel.selected_names].to_numpy())


def test_pure_noise_still_selects_at_least_one() -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 30))
    y = np.r_[np.zeros(40), np.ones(40)].astype(int)
    sel = FeatureSelector(SelectionConfig(alpha=1e-6, fallback_k=3)).fit(X, y)
    rep = sel.report()
    assert 1 <= len(sel.selected_names) <= 3
    # Documented fallback: exactly the 3 smallest-p features pass the univariate step.
    passed = rep[rep["removed_at"] != "univariate"]
    assert sorted(passed["feature"]) == sorted(rep.nsmallest(3, "p_value")["feature"])


def test_zero_variance_dropped_and_array_names() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    X[:, 2] = 5.0
    sel = FeatureSelector().fit(X, y, feature_names=["a", "b", "c", "d"])
    rep = sel.report().set_index("feature")
    assert rep.loc["c", "removed_at"] == "zero_variance"
    assert "a" in sel.selected_names
    assert sel.transform(X).shape == (60, len(sel.selected_names))


def test_errors() -> None:
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(InputError, match=r"All 20 cases are negative \(0\); training needs both"):
        FeatureSelector().fit(X, np.zeros(20))
    with pytest.raises(InputError, match="0 \\(negative\\) or 1"):
        FeatureSelector().fit(X, np.arange(20))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="'f1' has missing"):
        FeatureSelector().fit(bad, np.r_[np.zeros(10), np.ones(10)])
    with pytest.raises(ConfigError, match="univariate"):
        SelectionConfig(univariate="chi2")
    with pytest.raises(ConfigError, match="unknown feature selection"):
        SelectionConfig.from_dict({"alpah": 0.1})
    with pytest.raises(InputError, match="not fitted"):
        FeatureSelector().transform(X)
    text = pd.DataFrame({"a": ["1", "x"] * 10, "b": np.arange(20.0)})
    with pytest.raises(InputError, match="non-numeric"):
        FeatureSelector().fit(text, np.r_[np.zeros(10), np.ones(10)])


def test_group_folds_keep_patients_whole() -> None:
    y = np.array([0, 1] * 30)
    groups = np.repeat(np.arange(20), 3)
    folds = stratified_folds(y, groups, 5, seed=1)
    assert len(folds) == 5
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])
    assert sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(60))


def test_l1_arguments_follow_the_installed_scikit_learn() -> None:
    import warnings as _w

    from DLRPredictorLib.models.selection import _l1_arguments
    from sklearn.linear_model import LogisticRegressionCV

    class OldLogisticRegressionCV:  # the constructor signature of scikit-learn < 1.8
        def __init__(self, Cs=10, penalty="l2", l1_ratios=None, solver="lbfgs"):
            pass

    assert _l1_arguments(OldLogisticRegressionCV) == {"penalty": "l1"}
    args = _l1_arguments(LogisticRegressionCV)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 12))
    y = (X[:, 0] + 0.3 * rng.normal(size=80) > 0).astype(int)
    with _w.catch_warnings():
        _w.simplefilter("error", FutureWarning)  # no deprecated spelling with this scikit-learn
        model = LogisticRegressionCV(Cs=[0.05], solver="liblinear", cv=3, scoring="roc_auc", **args).fit(X, y)
    assert int((model.coef_ != 0).sum()) < 12  # an L1 fit: some coefficients are exactly zero
