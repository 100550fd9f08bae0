"""Round trips of fitted estimators through models.persistence's JSON + npz files (no pickle anywhere).

Every reference value comes from the original fitted estimator (sklearn, XGBoost, LightGBM) or from
a small independent computation in this file, never from the code under test.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from DLRPredictorLib.base.errors import BundleError, ConfigError, InputError
from DLRPredictorLib.models.persistence import (
    SafeModel,
    SafeTransformer,
    dump_model,
    lightgbm_objective,
    load_model,
    load_model_files,
    read_npz,
    save_model,
)
from lightgbm import LGBMClassifier
from lightgbm import early_stopping as lgbm_early_stopping
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier
from xgboost import XGBClassifier

# sklearn 1.9 deprecates SVC(probability=True); bundles made with it must still load exactly.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

X_ALL, Y_ALL = make_classification(
    n_samples=320, n_features=6, n_informative=4, n_redundant=1, random_state=7
)
X_TRAIN, Y_TRAIN = X_ALL[:220], Y_ALL[:220]
X_TEST = X_ALL[220:]
CLIP = 1e-7


def _svc(**kw: Any) -> SVC:
    return SVC(probability=True, random_state=0, **kw)


def _xgb_early() -> XGBClassifier:
    return XGBClassifier(n_estimators=200, max_depth=2, learning_rate=0.3, early_stopping_rounds=3)


def _lgbm_early() -> LGBMClassifier:
    return LGBMClassifier(n_estimators=200, learning_rate=0.3, verbose=-1)


def _fit(name: str, est: Any) -> Any:
    if name == "xgb_early_stop":
        return est.fit(X_TRAIN[:160], Y_TRAIN[:160], eval_set=[(X_TRAIN[160:], Y_TRAIN[160:])], verbose=False)
    if name == "lgbm_early_stop":
        return est.fit(
            X_TRAIN[:160],
            Y_TRAIN[:160],
            eval_set=[(X_TRAIN[160:], Y_TRAIN[160:])],
            callbacks=[lgbm_early_stopping(3, verbose=False)],
        )
    return est.fit(X_TRAIN, Y_TRAIN)


# name -> (factory, expected contribution_scale, reference for decision_logit, proba tolerance)
CASES: dict[str, tuple[Callable[[], Any], str | None, str, float]] = {
    "logistic_l2": (lambda: LogisticRegression(C=0.5), "logit", "decision_function", 1e-10),
    "logistic_l1": (
        lambda: LogisticRegression(l1_ratio=1.0, solver="liblinear", C=0.3),
        "logit",
        "decision_function",
        1e-10,
    ),
    "logistic_elasticnet": (
        lambda: LogisticRegression(l1_ratio=0.5, solver="saga", max_iter=5000),
        "logit",
        "decision_function",
        1e-10,
    ),
    "svc_linear": (lambda: _svc(kernel="linear"), "logit", "platt", 1e-10),
    "svc_rbf": (lambda: _svc(kernel="rbf", gamma="scale"), None, "platt", 1e-10),
    "random_forest": (
        lambda: RandomForestClassifier(30, max_depth=6, random_state=0),
        "probability",
        "proba",
        1e-10,
    ),
    "extra_trees": (lambda: ExtraTreesClassifier(30, random_state=0), "probability", "proba", 1e-10),
    "decision_tree": (
        lambda: DecisionTreeClassifier(max_depth=5, random_state=0),
        "probability",
        "proba",
        1e-10,
    ),
    "knn_uniform_p2": (lambda: KNeighborsClassifier(5), None, "proba", 1e-10),
    "knn_distance_p1": (lambda: KNeighborsClassifier(7, weights="distance", p=1), None, "proba", 1e-10),
    "xgb": (lambda: XGBClassifier(n_estimators=30, max_depth=3), "logit", "xgb_margin", 1e-6),
    "xgb_early_stop": (_xgb_early, "logit", "xgb_margin", 1e-6),
    "lgbm": (lambda: LGBMClassifier(n_estimators=30, verbose=-1), "logit", "lgbm_raw", 1e-6),
    "lgbm_early_stop": (_lgbm_early, "logit", "lgbm_raw", 1e-6),
    "pipeline_scaler_logistic": (
        lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        "logit",
        "decision_function",
        1e-10,
    ),
    "pipeline_pca_logistic": (
        lambda: make_pipeline(StandardScaler(), PCA(4, whiten=True), LogisticRegression()),
        "logit",
        "decision_function",
        1e-10,
    ),
    "pipeline_scaler_forest": (
        lambda: make_pipeline(StandardScaler(), RandomForestClassifier(20, random_state=0)),
        "probability",
        "proba",
        1e-10,
    ),
    "pipeline_pca_forest": (
        lambda: make_pipeline(PCA(3), RandomForestClassifier(20, random_state=0)),
        None,
        "proba",
        1e-10,
    ),
    "calibrated_sigmoid_linear_svc": (
        lambda: CalibratedClassifierCV(make_pipeline(StandardScaler(), SVC(kernel="linear")), ensemble=False),
        "logit",
        "proba",
        1e-10,
    ),
    "calibrated_isotonic_forest": (
        lambda: CalibratedClassifierCV(RandomForestClassifier(20, random_state=0), method="isotonic", cv=3),
        None,
        "proba",
        1e-10,
    ),
    "calibrated_sigmoid_ensemble_rbf": (lambda: CalibratedClassifierCV(SVC(), cv=3), None, "proba", 1e-10),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Any, SafeModel]:
    """(name, original fitted estimator, model reloaded from files on disk)."""
    name = request.param
    est = _fit(name, CASES[name][0]())
    prefix = tmp_path_factory.mktemp("models") / name
    save_model(prefix, est)
    model = load_model_files(prefix)
    assert isinstance(model, SafeModel)
    return name, est, model


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, CLIP, 1 - CLIP)
    return np.log(p / (1 - p))


def _reference_logit(name: str, est: Any) -> np.ndarray:
    kind = CASES[name][2]
    if kind == "decision_function":
        return est.decision_function(X_TEST)
    if kind == "platt":  # log-odds of class 1 from libsvm's Platt parameters
        return -est.probA_[0] * est.decision_function(X_TEST) + est.probB_[0]
    if kind == "xgb_margin":
        return est.predict(X_TEST, output_margin=True)
    if kind == "lgbm_raw":
        return est.predict(X_TEST, raw_score=True)
    return _logit(est.predict_proba(X_TEST)[:, 1])


def test_predict_proba_matches_original(case: tuple[str, Any, SafeModel]) -> None:
    name, est, model = case
    got = model.predict_proba(X_TEST)
    assert got.shape == (len(X_TEST), 2)
    np.testing.assert_allclose(got, est.predict_proba(X_TEST), rtol=0, atol=CASES[name][3])
    assert list(model.classes) == list(est.classes_)


def test_decision_logit_matches_original(case: tuple[str, Any, SafeModel]) -> None:
    name, est, model = case
    atol = 1e-5 if name.startswith("xgb") else 1e-8
    np.testing.assert_allclose(model.decision_logit(X_TEST), _reference_logit(name, est), rtol=0, atol=atol)


def test_contributions_add_up(case: tuple[str, Any, SafeModel]) -> None:
    name, est, model = case
    expected_scale = CASES[name][1]
    assert model.contribution_scale == expected_scale
    contrib = model.contributions(X_TEST)
    if expected_scale is None:
        assert contrib is None
        return
    assert contrib.shape == (len(X_TEST), X_TEST.shape[1] + 1)
    if expected_scale == "logit":
        target, atol = _reference_logit(name, est), (1e-5 if name.startswith("xgb") else 1e-9)
    else:
        target, atol = est.predict_proba(X_TEST)[:, 1], 1e-10
    np.testing.assert_allclose(contrib.sum(axis=1), target, rtol=0, atol=atol)


def test_early_stopped_xgboost_keeps_its_best_iteration() -> None:
    # (LightGBM's sklearn wrapper already truncates its booster to the best iteration at fit time.)
    est = _fit("xgb_early_stop", _xgb_early())
    assert est.best_iteration + 1 < est.get_booster().num_boosted_rounds()
    all_trees = est.get_booster().inplace_predict(X_TEST, iteration_range=(0, 0))
    got = load_model(*dump_model(est)).predict_proba(X_TEST)[:, 1]
    np.testing.assert_allclose(got, est.predict_proba(X_TEST)[:, 1], rtol=0, atol=1e-6)
    assert np.abs(got - all_trees).max() > 1e-3  # so the iteration limit really matters


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_svc_decision_function_and_platt_gap(kernel: str) -> None:
    est = _svc(kernel=kernel).fit(X_TRAIN, Y_TRAIN)
    model = load_model(*dump_model(est))
    np.testing.assert_allclose(
        model.decision_function(X_TEST), est.decision_function(X_TEST), rtol=0, atol=1e-10
    )
    # libsvm's pairwise-coupling solver stops within about 0.005 of the Platt probability
    gap = np.abs(1 / (1 + np.exp(-model.decision_logit(X_TEST))) - est.predict_proba(X_TEST)[:, 1])
    assert 0 < gap.max() < 0.006


def test_logistic_contributions_are_coef_times_x() -> None:
    est = LogisticRegression().fit(X_TRAIN, Y_TRAIN)
    contrib = load_model(*dump_model(est)).contributions(X_TEST)
    np.testing.assert_allclose(contrib[:, :-1], est.coef_[0] * X_TEST, rtol=0, atol=1e-14)
    np.testing.assert_allclose(contrib[:, -1], est.intercept_[0], rtol=0, atol=1e-14)


def test_scaled_logistic_contributions_are_relative_to_training_mean() -> None:
    est = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_TRAIN, Y_TRAIN)
    scaler, lr = est[0], est[-1]
    contrib = load_model(*dump_model(est)).contributions(X_TEST)
    np.testing.assert_allclose(contrib[:, :-1], lr.coef_[0] * scaler.transform(X_TEST), rtol=0, atol=1e-12)
    np.testing.assert_allclose(contrib[:, -1], lr.intercept_[0], rtol=0, atol=1e-12)


def _saabas_reference(forest: RandomForestClassifier, x: np.ndarray) -> np.ndarray:
    """Plain-loop Saabas decomposition of P(class 1) for one row, averaged over trees."""
    out = np.zeros(x.size + 1)
    for tree in forest.estimators_:
        t = tree.tree_
        frac = t.value[:, 0, 1] / t.value[:, 0, :].sum(axis=1)
        node = 0
        out[-1] += frac[0]
        while t.children_left[node] != -1:
            go_left = np.float32(x[t.feature[node]]) <= t.threshold[node]
            child = t.children_left[node] if go_left else t.children_right[node]
            out[t.feature[node]] += frac[child] - frac[node]
            node = child
    return out / len(forest.estimators_)


def test_forest_contributions_match_plain_saabas() -> None:
    est = RandomForestClassifier(15, max_depth=5, random_state=1).fit(X_TRAIN, Y_TRAIN)
    contrib = load_model(*dump_model(est)).contributions(X_TEST[:5])
    for row in range(5):
        np.testing.assert_allclose(contrib[row], _saabas_reference(est, X_TEST[row]), rtol=0, atol=1e-12)


def test_trees_compare_features_in_float32_like_sklearn() -> None:
    stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X_TRAIN, Y_TRAIN)
    feature, threshold = stump.tree_.feature[0], stump.tree_.threshold[0]
    # a value on the other side of the threshold in float64 than after sklearn's float32 cast
    as_float32 = float(np.float32(threshold))
    value = np.nextafter(threshold, np.inf if as_float32 <= threshold else -np.inf)
    assert (value <= threshold) != (float(np.float32(value)) <= threshold)
    x = X_TEST[:1].copy()
    x[0, feature] = value
    got = load_model(*dump_model(stump)).predict_proba(x)
    np.testing.assert_allclose(got, stump.predict_proba(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "est", [StandardScaler(), PCA(3), PCA(4, whiten=True), make_pipeline(StandardScaler(), PCA(2))]
)
def test_transformers_round_trip(est: Any, tmp_path: Path) -> None:
    est.fit(X_TRAIN)
    save_model(tmp_path / "t", est)
    model = load_model_files(tmp_path / "t")
    assert isinstance(model, SafeTransformer)
    np.testing.assert_allclose(model.transform(X_TEST), est.transform(X_TEST), rtol=0, atol=1e-10)


def _tie_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    train = rng.integers(0, 4, (200, 3)).astype(float)  # a coarse grid: many exact distance ties
    queries = rng.integers(0, 4, (60, 3)) + rng.choice([0.0, 0.5], (60, 3))
    return train, rng.integers(0, 2, 200), queries


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("k", [4, 7])
def test_knn_ties_break_as_sklearn_brute(p: int, weights: str, k: int) -> None:
    train, labels, queries = _tie_data()
    est = KNeighborsClassifier(k, weights=weights, p=p, algorithm="brute").fit(train, labels)
    # the data must exercise tie-breaking: sklearn's neighbours differ from "lowest index first"
    diff = queries[:, None] - train[None]
    dist = np.abs(diff).sum(-1) if p == 1 else np.sqrt((diff**2).sum(-1))
    naive = np.sort(np.argsort(dist, axis=1, kind="stable")[:, :k], axis=1)
    assert (np.sort(est.kneighbors(queries, return_distance=False), axis=1) != naive).any()
    model = load_model(*dump_model(est))
    np.testing.assert_allclose(model.predict_proba(queries), est.predict_proba(queries), rtol=0, atol=1e-12)


def test_npz_with_object_array_is_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str, str]]:
            return open, (str(marker), "w")

    spec, arrays = dump_model(LogisticRegression().fit(X_TRAIN, Y_TRAIN))
    prefix = tmp_path / "evil"
    (tmp_path / "evil.json").write_text(json.dumps(spec))
    payload = np.empty(1, dtype=object)
    payload[0] = Payload()
    np.savez(tmp_path / "evil.npz", **arrays, coef_extra=payload)  # np.savez pickles object arrays
    with pytest.raises(BundleError, match="pickled"):
        load_model_files(prefix)
    assert not marker.exists()
    # control: the payload is live, so the refusal above is what kept it from running
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as npz:
        npz["coef_extra"][0].close()
    assert marker.exists()


def test_object_array_given_directly_is_refused() -> None:
    spec, arrays = dump_model(LogisticRegression().fit(X_TRAIN, Y_TRAIN))
    arrays["coef"] = arrays["coef"].astype(object)
    with pytest.raises(BundleError, match="object"):
        load_model(spec, arrays)


def _lr_dump() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    return dump_model(LogisticRegression().fit(X_TRAIN, Y_TRAIN))


def _forest_dump() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    return dump_model(RandomForestClassifier(3, max_depth=3, random_state=0).fit(X_TRAIN, Y_TRAIN))


def _unknown_kind(spec: dict, arrays: dict) -> None:
    spec["kind"] = "pickled_sklearn_object"


def _missing_array(spec: dict, arrays: dict) -> None:
    del arrays["intercept"]


def _wrong_shape(spec: dict, arrays: dict) -> None:
    arrays["coef"] = arrays["coef"][:-1]


def _extra_array(spec: dict, arrays: dict) -> None:
    arrays["surprise"] = np.zeros(3)


def _future_version(spec: dict, arrays: dict) -> None:
    spec["format_version"] = 99


def _nan_coef(spec: dict, arrays: dict) -> None:
    arrays["coef"][0] = np.nan


def _tree_cycle(spec: dict, arrays: dict) -> None:
    internal = np.flatnonzero(arrays["children_left"] > 0)[1]
    arrays["children_left"][internal] = 0  # points back to the root: would loop forever


@pytest.mark.parametrize(
    ("make", "damage", "message"),
    [
        (_lr_dump, _unknown_kind, "Unknown model kind 'pickled_sklearn_object'"),
        (_lr_dump, _missing_array, "lacks the array 'intercept'"),
        (_lr_dump, _wrong_shape, "has shape"),
        (_lr_dump, _extra_array, "unexpected arrays"),
        (_lr_dump, _future_version, "format_version 99"),
        (_lr_dump, _nan_coef, "NaN"),
        (_forest_dump, _tree_cycle, "tree structure"),
    ],
)
def test_damaged_specs_are_refused(make: Callable, damage: Callable, message: str) -> None:
    spec, arrays = make()
    arrays = {k: v.copy() for k, v in arrays.items()}
    damage(spec, arrays)
    with pytest.raises(BundleError, match=message):
        load_model(spec, arrays)


def test_damaged_files_are_refused(tmp_path: Path) -> None:
    json_path, npz_path = save_model(tmp_path / "m", LogisticRegression().fit(X_TRAIN, Y_TRAIN))
    npz_path.write_bytes(npz_path.read_bytes()[:40])
    with pytest.raises(BundleError):
        load_model_files(tmp_path / "m")
    with pytest.raises(BundleError, match="Cannot read"):
        read_npz(tmp_path / "absent.npz")
    json_path.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_model_files(tmp_path / "m")


@pytest.mark.parametrize(
    ("est", "name"),
    [
        (GaussianNB(), "GaussianNB"),
        (LinearSVC(), "LinearSVC"),
        (SVC(kernel="poly", probability=True), "poly"),
        (SVC(), "probability=True"),
        (KNeighborsClassifier(metric="chebyshev"), "chebyshev"),
    ],
)
def test_unsupported_estimators_are_refused(est: Any, name: str) -> None:
    est.fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ConfigError, match=name):
        dump_model(est)


def test_multiclass_and_unfitted_are_refused() -> None:
    with pytest.raises(ConfigError, match="3 classes"):
        dump_model(LogisticRegression().fit(X_TRAIN, Y_TRAIN + (X_TRAIN[:, 0] > 1)))
    with pytest.raises(ConfigError, match="not fitted"):
        dump_model(LogisticRegression())


def test_spec_is_strict_json_and_arrays_plain_numbers() -> None:
    est = make_pipeline(StandardScaler(), XGBClassifier(n_estimators=5, max_depth=2)).fit(X_TRAIN, Y_TRAIN)
    spec, arrays = dump_model(est)
    json.dumps(spec, allow_nan=False)
    assert spec["kind"] == "pipeline" and spec["steps"][1]["kind"] == "xgboost"
    assert all(a.dtype.kind in "fiu" for a in arrays.values())


def _wrong_width() -> np.ndarray:
    return X_TEST[:, :-1]


def _with_nan() -> np.ndarray:
    x = X_TEST.copy()
    x[3, 2] = np.nan
    return x


def _one_dimensional() -> np.ndarray:
    return X_TEST[0]


@pytest.mark.parametrize(
    ("make_x", "message"),
    [(_wrong_width, "expects 6 feature columns"), (_with_nan, "row 3, column 2"), (_one_dimensional, "2-D")],
)
@pytest.mark.parametrize("method", ["predict_proba", "decision_logit", "contributions"])
def test_bad_inputs_raise_input_error(make_x: Callable[[], np.ndarray], message: str, method: str) -> None:
    model = load_model(*dump_model(RandomForestClassifier(5, random_state=0).fit(X_TRAIN, Y_TRAIN)))
    with pytest.raises(InputError, match=message):
        getattr(model, method)(make_x())


def test_feature_names_are_checked_on_tables(tmp_path: Path) -> None:
    names = [f"f{i}" for i in range(X_TRAIN.shape[1])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        est = LogisticRegression().fit(pd.DataFrame(X_TRAIN, columns=names), Y_TRAIN)
    save_model(tmp_path / "named", est)
    model = load_model_files(tmp_path / "named")
    assert model.feature_names == tuple(names)
    table = pd.DataFrame(X_TEST, columns=names)
    np.testing.assert_allclose(model.predict_proba(table), est.predict_proba(table), rtol=0, atol=1e-12)
    with pytest.raises(InputError, match="wrong order"):
        model.predict_proba(table[names[::-1]])
    with pytest.raises(InputError, match="missing"):
        model.predict_proba(table.rename(columns={"f0": "age"}))


@pytest.mark.parametrize("objective", ["binary", "regression"])
def test_lightgbm_objective_is_read_from_the_model_text(objective: str) -> None:
    import lightgbm

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 2, 60)
    booster = lightgbm.train({"objective": objective, "verbose": -1}, lightgbm.Dataset(X, y), 3)
    text = booster.model_to_string()
    assert lightgbm_objective(text) == objective
    assert lightgbm_objective("tree\nversion=v4\nTree=0\nobjective=binary\n") == ""
