"""Fitted estimator -> JSON spec plus plain numeric arrays (:func:`dump_model`, :func:`save_model`).

Supported: StandardScaler, PCA, Pipeline (scaler / PCA steps, optional final classifier),
LogisticRegression(CV), SVC (linear / RBF), RandomForest / ExtraTrees / DecisionTree classifiers,
KNeighborsClassifier, CalibratedClassifierCV (sigmoid / isotonic), XGBClassifier, LGBMClassifier;
all binary. Anything else is refused with :class:`~DLRPredictorLib.base.errors.ConfigError`.
sklearn, xgboost and lightgbm are imported only to recognise the estimator's exact class; each
supported class has one ``_dump_*`` function that fills the spec and the arrays.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ...base.errors import ConfigError
from ...base.json_values import to_json_value
from .protocols import FORMAT, FORMAT_VERSION, model_file_paths

_TRANSFORMER_KINDS = ("standard_scaler", "pca")  # the kinds a pipeline step may have before its last


def _hyperparameters(est: Any) -> dict[str, Any]:
    try:
        params = est.get_params(deep=False)
    except (AttributeError, TypeError):
        return {}
    out = {}
    for key, value in sorted(params.items()):
        try:
            # Non-finite floats as text ("nan", "inf"): the spec is written with allow_nan=False.
            out[key] = to_json_value(value, non_finite="string", basic_types_only=True)
        except TypeError:
            continue  # objects and callables have no JSON form: left out
    return out


def _class_path(est: Any) -> str:
    return f"{type(est).__module__}.{type(est).__qualname__}"


def _binary_classes(est: Any) -> list[Any]:
    classes = getattr(est, "classes_", None)
    if classes is None:
        raise ConfigError(f"{type(est).__name__} is not fitted; fit it before saving it in a bundle.")
    classes = np.asarray(classes).tolist()
    if len(classes) != 2:
        raise ConfigError(
            f"{type(est).__name__} was fitted on {len(classes)} classes; bundles hold binary models only."
        )
    for c in classes:
        if not isinstance(c, (bool, int, float, str)):
            raise ConfigError(f"{type(est).__name__} has class labels of type {type(c).__name__}; use 0/1.")
    return classes


def _f64(a: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


class _Dump:
    """Collects arrays (with component prefixes) and library versions while dumping."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.libraries: set[str] = {"numpy"}

    def component(self, est: Any, prefix: str, *, need_proba: bool = True) -> dict[str, Any]:
        module = type(est).__module__.split(".")[0]
        self.libraries.add(module)
        dumper = _dumpers(module).get(type(est))
        if dumper is None:
            raise ConfigError(
                f"Cannot save a {_class_path(est)} in a model bundle: only StandardScaler, PCA, "
                "Pipeline, LogisticRegression, SVC, RandomForest/ExtraTrees/DecisionTree classifiers, "
                "KNeighborsClassifier, CalibratedClassifierCV, XGBClassifier and LGBMClassifier can be "
                "stored without pickle."
            )
        if not hasattr(est, "n_features_in_"):
            raise ConfigError(f"{type(est).__name__} is not fitted; fit it before saving it in a bundle.")
        spec: dict[str, Any] = {
            "kind": "",
            "estimator": _class_path(est),
            "n_features_in": int(est.n_features_in_),
            "hyperparameters": _hyperparameters(est),
            "params": {},
        }
        dumper(self, est, prefix, spec, need_proba)
        return spec

    def put(self, prefix: str, name: str, array: np.ndarray) -> None:
        self.arrays[prefix + name] = array


def _dump_scaler(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "standard_scaler"
    spec["params"] = {"with_mean": est.mean_ is not None, "with_std": est.scale_ is not None}
    if est.mean_ is not None:
        d.put(prefix, "mean", _f64(est.mean_))
    if est.scale_ is not None:
        d.put(prefix, "scale", _f64(est.scale_))


def _dump_pca(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "pca"
    spec["params"] = {"n_components": int(est.components_.shape[0]), "whiten": bool(est.whiten)}
    d.put(prefix, "mean", _f64(est.mean_))
    d.put(prefix, "components", _f64(est.components_))
    d.put(prefix, "explained_variance", _f64(est.explained_variance_))


def _dump_pipeline(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], need_proba: bool) -> None:
    steps = [(name, step) for name, step in est.steps if step is not None and step != "passthrough"]
    spec["kind"] = "pipeline"
    spec["step_names"] = [name for name, _ in steps]
    spec["steps"] = []
    for i, (name, step) in enumerate(steps):
        is_last = i == len(steps) - 1
        if not is_last and not hasattr(step, "transform"):
            raise ConfigError(f"Pipeline step '{name}' ({type(step).__name__}) must be a transformer.")
        sub = d.component(step, f"{prefix}steps{i}.", need_proba=need_proba)
        if not is_last and sub["kind"] not in _TRANSFORMER_KINDS:
            raise ConfigError(
                f"Pipeline step '{name}' ({type(step).__name__}) must be StandardScaler or PCA."
            )
        spec["steps"].append(sub)
    if spec["steps"] and spec["steps"][-1]["kind"] not in _TRANSFORMER_KINDS:
        spec["classes"] = spec["steps"][-1]["classes"]


def _dump_logistic(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "logistic_regression"
    spec["classes"] = _binary_classes(est)
    d.put(prefix, "coef", _f64(est.coef_).reshape(-1))
    d.put(prefix, "intercept", _f64(est.intercept_).reshape(1))


def _dump_svc(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], need_proba: bool) -> None:
    spec["kind"] = "svc"
    spec["classes"] = _binary_classes(est)
    if est.kernel not in ("linear", "rbf"):
        raise ConfigError(f"SVC with kernel '{est.kernel}' cannot be stored; use kernel 'linear' or 'rbf'.")
    if getattr(est, "_sparse", False):
        raise ConfigError("SVC fitted on a sparse matrix cannot be stored; fit it on a dense array.")
    # the private names avoid sklearn 1.9's deprecation warning on probA_ / probB_
    prob_a = np.asarray(getattr(est, "_probA", np.empty(0)), dtype=np.float64).reshape(-1)
    prob_b = np.asarray(getattr(est, "_probB", np.empty(0)), dtype=np.float64).reshape(-1)
    has_proba = prob_a.size == 1 and prob_b.size == 1
    if need_proba and not has_proba:
        raise ConfigError(
            "SVC was fitted without probability=True and cannot give probabilities; fit it with "
            "probability=True or wrap it in CalibratedClassifierCV."
        )
    sv = _f64(est.support_vectors_)
    spec["params"] = {
        "kernel": est.kernel,
        "gamma": float(est._gamma),
        "n_support_vectors": int(sv.shape[0]),
        "probability": has_proba,
    }
    d.put(prefix, "support_vectors", sv)
    d.put(prefix, "dual_coef", _f64(est.dual_coef_).reshape(-1))
    d.put(prefix, "intercept", _f64(est.intercept_).reshape(1))
    if has_proba:
        d.put(prefix, "prob_a", prob_a)
        d.put(prefix, "prob_b", prob_b)


_FOREST_KINDS = {
    "RandomForestClassifier": "random_forest",
    "ExtraTreesClassifier": "extra_trees",
    "DecisionTreeClassifier": "decision_tree",
}


def _dump_forest(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = _FOREST_KINDS[type(est).__name__]
    spec["classes"] = _binary_classes(est)
    trees = [est] if spec["kind"] == "decision_tree" else list(est.estimators_)
    if getattr(est, "n_outputs_", 1) != 1:
        raise ConfigError(f"{type(est).__name__} with several outputs cannot be stored; fit one label.")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("left", "right", "feature", "threshold", "value")}
    for tree in trees:
        t = tree.tree_
        parts["left"].append(np.asarray(t.children_left, dtype=np.int64))
        parts["right"].append(np.asarray(t.children_right, dtype=np.int64))
        parts["feature"].append(np.asarray(t.feature, dtype=np.int64))
        parts["threshold"].append(np.asarray(t.threshold, dtype=np.float64))
        value = np.asarray(t.value[:, 0, :], dtype=np.float64)
        parts["value"].append(value / value.sum(axis=1, keepdims=True))
    spec["params"] = {"n_trees": len(trees)}
    d.put(prefix, "tree_node_counts", np.array([len(p) for p in parts["left"]], dtype=np.int64))
    d.put(prefix, "children_left", np.concatenate(parts["left"]))
    d.put(prefix, "children_right", np.concatenate(parts["right"]))
    d.put(prefix, "feature", np.concatenate(parts["feature"]))
    d.put(prefix, "threshold", np.concatenate(parts["threshold"]))
    d.put(prefix, "value", np.concatenate(parts["value"]))


def _dump_knn(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "k_neighbors"
    spec["classes"] = _binary_classes(est)
    if est.weights not in ("uniform", "distance"):
        raise ConfigError("KNeighborsClassifier with a custom weights function cannot be stored.")
    metric = est.effective_metric_
    if metric not in ("euclidean", "manhattan") or est.effective_metric_params_.get("w") is not None:
        raise ConfigError(
            f"KNeighborsClassifier with metric '{est.metric}' (p={est.p}) cannot be stored; use "
            "metric='minkowski' with p=1 or p=2."
        )
    if getattr(est, "outputs_2d_", False) or not isinstance(est._fit_X, np.ndarray):
        raise ConfigError("KNeighborsClassifier must be fitted on a dense array with one label column.")
    spec["params"] = {
        "n_neighbors": int(est.n_neighbors),
        "weights": est.weights,
        "metric": metric,
        "n_samples_fit": int(est.n_samples_fit_),
        "fit_method": est._fit_method,
    }
    d.put(prefix, "fit_X", _f64(est._fit_X))
    d.put(prefix, "fit_y", np.asarray(est._y, dtype=np.int64).reshape(-1))


def _dump_calibrated(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "calibrated"
    spec["classes"] = _binary_classes(est)
    if est.method not in ("sigmoid", "isotonic"):
        raise ConfigError(
            f"CalibratedClassifierCV with method '{est.method}' cannot be stored; "
            "use 'sigmoid' or 'isotonic'."
        )
    spec["params"] = {"method": est.method, "n_members": len(est.calibrated_classifiers_)}
    spec["members"] = []
    for i, member in enumerate(est.calibrated_classifiers_):
        base = member.estimator
        response = "decision_function" if hasattr(base, "decision_function") else "predict_proba"
        base_spec = d.component(base, f"{prefix}member{i}.base.", need_proba=response == "predict_proba")
        spec["members"].append({"response": response, "base": base_spec})
        calibrator = member.calibrators[0]
        if est.method == "sigmoid":
            d.put(prefix, f"member{i}.sigmoid_ab", np.array([calibrator.a_, calibrator.b_], dtype=np.float64))
        else:
            d.put(prefix, f"member{i}.isotonic_x", _f64(calibrator.X_thresholds_))
            d.put(prefix, f"member{i}.isotonic_y", _f64(calibrator.y_thresholds_))
            d.put(prefix, f"member{i}.isotonic_range", np.array([calibrator.X_min_, calibrator.X_max_]))


def _dump_xgboost(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "xgboost"
    spec["classes"] = _binary_classes(est)
    booster = est.get_booster()
    if "c" in (booster.feature_types or []):
        raise ConfigError("XGBClassifier with categorical features cannot be stored; encode them as numbers.")
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective != "binary:logistic":
        raise ConfigError(
            f"XGBClassifier with objective '{objective}' cannot be stored; use 'binary:logistic'."
        )
    try:  # the sklearn wrapper predicts with the best iteration when early stopping was used
        iteration_range = [0, int(est.best_iteration) + 1]
    except AttributeError:
        iteration_range = [0, 0]
    missing = float(est.missing) if est.missing is not None else math.nan
    spec["params"] = {"iteration_range": iteration_range, "missing": None if math.isnan(missing) else missing}
    d.put(prefix, "model", np.frombuffer(bytes(booster.save_raw("json")), dtype=np.uint8).copy())


def _dump_lightgbm(d: _Dump, est: Any, prefix: str, spec: dict[str, Any], _: bool) -> None:
    spec["kind"] = "lightgbm"
    spec["classes"] = _binary_classes(est)
    if est.objective_ != "binary":
        raise ConfigError(f"LGBMClassifier with objective '{est.objective_}' cannot be stored; use 'binary'.")
    if est.booster_.pandas_categorical is not None:
        raise ConfigError("LGBMClassifier fitted with pandas categorical columns cannot be stored.")
    # num_iteration=None keeps the best iteration, as the sklearn wrapper predicts with it
    text = est.booster_.model_to_string(num_iteration=None)
    d.put(prefix, "model", np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy())


def _dumpers(module: str) -> dict[type, Any]:
    """Dump functions by exact class (subclasses may change behaviour, so they are refused)."""
    if module == "sklearn":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.decomposition import PCA
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC
        from sklearn.tree import DecisionTreeClassifier

        return {
            StandardScaler: _dump_scaler,
            PCA: _dump_pca,
            Pipeline: _dump_pipeline,
            LogisticRegression: _dump_logistic,
            LogisticRegressionCV: _dump_logistic,
            SVC: _dump_svc,
            RandomForestClassifier: _dump_forest,
            ExtraTreesClassifier: _dump_forest,
            DecisionTreeClassifier: _dump_forest,
            KNeighborsClassifier: _dump_knn,
            CalibratedClassifierCV: _dump_calibrated,
        }
    if module == "xgboost":
        from xgboost import XGBClassifier

        return {XGBClassifier: _dump_xgboost}
    if module == "lightgbm":
        from lightgbm import LGBMClassifier

        return {LGBMClassifier: _dump_lightgbm}
    return {}


def _feature_names(est: Any) -> list[str] | None:
    try:
        names = est.feature_names_in_
    except AttributeError:  # LightGBM raises when fitted without names
        return None
    return None if names is None else [str(n) for n in names]


def dump_model(estimator: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Describe a fitted estimator as JSON plus plain numeric arrays (no pickle).

    Args:
        estimator: a fitted, supported estimator (see the module doc); binary classifiers only.

    Returns:
        ``(spec, arrays)``: a JSON-serialisable dict with ``format``, ``kind``, ``n_features_in``,
        ``feature_names``, ``classes`` (classifiers), ``hyperparameters`` and structure, and a dict
        of named float64 / int64 / uint8 arrays.

    Raises:
        ConfigError: the estimator (or a step inside it) is unsupported, unfitted or not binary.
    """
    dump = _Dump()
    spec = dump.component(estimator, "")
    versions = {}
    for lib in sorted(dump.libraries):
        module = sys.modules.get(lib)
        name = {"sklearn": "scikit-learn"}.get(lib, lib)
        versions[name] = str(getattr(module, "__version__", "unknown"))
    root = {"format": FORMAT, "format_version": FORMAT_VERSION, **spec}
    root["feature_names"] = _feature_names(estimator)
    root["library_versions"] = versions
    return root, dump.arrays


def save_model(path_prefix: str | Path, estimator: Any) -> tuple[Path, Path]:
    """Write ``<prefix>.json`` and ``<prefix>.npz`` (plain numeric arrays, no pickle).

    Args:
        path_prefix: path without extension; its folder must exist.
        estimator: a fitted, supported estimator.

    Returns:
        The JSON and npz paths written.

    Raises:
        ConfigError: the estimator cannot be stored (see :func:`dump_model`).
    """
    spec, arrays = dump_model(estimator)
    json_path, npz_path = model_file_paths(path_prefix)
    json_path.write_text(json.dumps(spec, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    with open(npz_path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # stubs: a key could be allow_pickle
    return json_path, npz_path
