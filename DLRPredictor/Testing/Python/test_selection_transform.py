"""The quantile-normal feature transform of the Rad signature (selection.transform: quantile)."""

from __future__ import annotations

import numpy as np
import pytest
from DLRPredictorLib.base.errors import ConfigError
from DLRPredictorLib.models.selection import FeatureSelector, SelectionConfig, fit_quantiles, quantile_normal
from DLRPredictorLib.models.signature_linear import dl_signature_affine
from DLRPredictorLib.models.signatures import DeepFeatureReducer, Signature
from DLRPredictorLib.training.config import load_config
from DLRPredictorLib.training.crossfit import selection_settings


def skewed_features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-tailed, tied and plain columns with a label that depends on three of them."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.lognormal(sigma=1.5, size=n),
            rng.integers(0, 6, n).astype(float),  # ties: the mid-rank rule matters
            rng.normal(size=n),
            rng.standard_t(2, size=n),
            rng.normal(size=(n, 4)),
        ]
    )
    y = (np.log(X[:, 0]) + 0.5 * X[:, 1] - X[:, 2] + rng.normal(size=n) > 1.0).astype(int)
    return X, y


def test_quantile_normal_matches_scikit_learn() -> None:
    # An independent implementation: scikit-learn's QuantileTransformer (normal output, scipy's
    # ndtri) against ours (numpy interpolation, the standard library's inverse normal), on training
    # rows and on new rows partly outside the training range.
    from sklearn.preprocessing import QuantileTransformer

    X, _ = skewed_features(1500, 0)
    new, _ = skewed_features(400, 1)
    new = new * 1.8 - 0.5
    qt = QuantileTransformer(output_distribution="normal", n_quantiles=1000).fit(X)
    tables = fit_quantiles(X)
    assert tables.shape == (X.shape[1], 1000)
    for M in (X, new):
        np.testing.assert_allclose(quantile_normal(M, tables), qt.transform(M), rtol=0, atol=1e-9)


def test_fewer_rows_than_quantiles() -> None:
    from sklearn.preprocessing import QuantileTransformer

    X, _ = skewed_features(120, 2)
    qt = QuantileTransformer(output_distribution="normal", n_quantiles=120).fit(X)
    np.testing.assert_allclose(quantile_normal(X, fit_quantiles(X)), qt.transform(X), rtol=0, atol=1e-9)


def test_signature_invariant_to_monotone_rescaling() -> None:
    # With the transform, the signature sees ranks: a scanner that reports every feature on another
    # monotone scale gives the same model. An affine scale (x -> 3 x + 7) commutes with the linear
    # interpolation between quantiles, so new rows match too; the cube does on the training rows
    # (the quantile knots), while without the transform the fitted model changes.
    X, y = skewed_features(200, 3)
    test, _ = skewed_features(60, 4)
    names = [f"f{j}" for j in range(X.shape[1])]

    def fitted(transform: str, scale, rows: np.ndarray) -> np.ndarray:
        sel = SelectionConfig(
            univariate="none", correlation="none", max_features=None, transform=transform, lasso_cs=5, seed=1
        )
        sig = Signature("Rad", names, "lr", selection=sel, grid={}, cv=3, seed=1)
        return sig.fit(scale(X), y, feature_names=names).predict_proba(scale(rows), names)

    same = lambda m: m  # noqa: E731
    np.testing.assert_allclose(
        fitted("quantile", lambda m: 3.0 * m + 7.0, test), fitted("quantile", same, test), rtol=0, atol=1e-6
    )
    # The cube on the training rows (the quantile knots): identical selector output with the
    # transform, a different one without it (z-scores are not rank-invariant). Selectors alone: a
    # LASSO on cubed heavy tails without the transform takes minutes to converge.
    cube = lambda m: m**3  # noqa: E731
    for transform, invariant in (("quantile", True), ("none", False)):
        cfg = SelectionConfig(
            univariate="none", correlation="none", lasso="none", max_features=None, transform=transform
        )
        a = FeatureSelector(cfg).fit(cube(X), y).transform(cube(X))
        b = FeatureSelector(cfg).fit(X, y).transform(X)
        assert np.allclose(a, b, rtol=0, atol=1e-9) is invariant


def test_spec_round_trip_and_bad_tables() -> None:
    X, y = skewed_features(200, 5)
    config = SelectionConfig(correlation="none", transform="quantile", seed=0)
    sel = FeatureSelector(config).fit(X, y)
    spec = sel.to_spec()
    assert len(spec["quantiles"]) == len(sel.selected_names)
    again = FeatureSelector.from_spec(spec)
    # Same numbers through the same numpy code path: identical output.
    np.testing.assert_array_equal(again.transform(X), sel.transform(X))
    spec["quantiles"] = spec["quantiles"][:-1]
    with pytest.raises(ConfigError, match="quantile tables"):
        FeatureSelector.from_spec(spec)
    plain = FeatureSelector(SelectionConfig(correlation="none", seed=0)).fit(X, y).to_spec()
    assert "quantiles" not in plain  # specs of untransformed selectors are unchanged


def test_training_config_and_dl_signature(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("selection: {transform: quantile, test: none, correlation: none}\n", encoding="utf-8")
    sel = selection_settings(load_config(path))
    assert (sel.transform, sel.univariate, sel.correlation) == ("quantile", "none", "none")
    path.write_text("selection: {transform: rank}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="transform"):
        load_config(path)
    with pytest.raises(ConfigError, match="transform"):
        SelectionConfig(transform="log")
    # A transformed selector is not affine: the DL heatmap's composition refuses it.
    rng = np.random.default_rng(6)
    D = rng.normal(size=(120, 16))
    y = (D[:, 0] > 0).astype(int)
    reducer = DeepFeatureReducer(4).fit(D)
    Z = reducer.transform(D)
    for transform, affine in (("none", True), ("quantile", False)):
        sel_cfg = SelectionConfig(univariate="none", correlation="none", transform=transform, seed=0)
        sig = Signature("DL", reducer.names, "lr", selection=sel_cfg, cv=3).fit(
            Z, y, feature_names=reducer.names
        )
        assert (dl_signature_affine(reducer, sig) is not None) is affine
