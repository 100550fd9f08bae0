"""JSON spec plus numeric arrays -> a safe model (:func:`load_model`, :func:`load_model_files`).

Every spec value and array is checked (type, dtype, shape, finiteness, structure) before a model
is built; any problem is a :class:`~DLRPredictorLib.base.errors.BundleError`. No stored code runs:
.npz files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ...base.compat import zip_strict
from ...base.errors import BundleError
from .boosting import SafeLightGBM, SafeXGBoost, lightgbm_objective
from .calibration import IsotonicCalibrator, SafeCalibrated, SigmoidCalibrator
from .forest import SafeForest
from .knn import SafeKNN
from .linear import SafeLogisticRegression
from .pipeline import SafePipeline
from .protocols import (
    FORMAT,
    FORMAT_VERSION,
    ClassifierBase,
    SafeModel,
    SafeTransformer,
    TransformerBase,
    model_file_paths,
)
from .svm import SafeSVC
from .transformers import SafePCA, SafeStandardScaler, SafeTransformChain


class _Reader:
    """Typed access to spec values and arrays; every problem becomes a BundleError."""

    def __init__(self, arrays: Mapping[str, Any]) -> None:
        if not isinstance(arrays, Mapping):
            raise BundleError("The model arrays must be a mapping of names to numpy arrays.")
        self.arrays = arrays
        self.used: set[str] = set()

    def array(self, name: str, kind: str, shape: tuple[int | None, ...]) -> np.ndarray:
        if name not in self.arrays:
            raise BundleError(
                f"The model file lacks the array '{name}'; the bundle is incomplete or damaged."
            )
        value = self.arrays[name]
        if not isinstance(value, np.ndarray):
            raise BundleError(f"Model array '{name}' is a {type(value).__name__}, not a numpy array.")
        if value.dtype.kind not in "fiu":
            raise BundleError(
                f"Model array '{name}' has dtype {value.dtype}; model arrays must hold plain numbers "
                "(object arrays are refused because loading them could run code)."
            )
        expected_kinds = {"float": "f", "int": "iu", "uint8": "u"}[kind]
        if value.dtype.kind not in expected_kinds or (kind == "uint8" and value.dtype != np.uint8):
            raise BundleError(f"Model array '{name}' has dtype {value.dtype}, expected {kind}.")
        if value.ndim != len(shape) or any(
            e is not None and e != s for e, s in zip_strict(shape, value.shape)
        ):
            want = tuple("any" if e is None else e for e in shape)
            raise BundleError(f"Model array '{name}' has shape {value.shape}, expected {want}.")
        self.used.add(name)
        if kind == "float":
            out = np.array(value, dtype=np.float64)
            if not np.isfinite(out).all():
                raise BundleError(f"Model array '{name}' contains NaN or infinite values.")
            return out
        if kind == "int":
            return np.array(value, dtype=np.int64)
        return np.array(value)


def _get(spec: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    value = spec.get(key) if isinstance(spec, Mapping) else None
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise BundleError(f"The model spec of {where} has a missing or invalid '{key}' ({value!r}).")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _positive_int(spec: Mapping[str, Any], key: str, where: str) -> int:
    value = _get(spec, key, int, where)
    if value < 1:
        raise BundleError(f"The model spec of {where} has '{key}' = {value}; it must be at least 1.")
    return value


def _classes(spec: Mapping[str, Any], where: str) -> tuple[Any, ...]:
    classes = spec.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) != 2
        or not all(isinstance(c, (bool, int, float, str)) for c in classes)
        or classes[0] == classes[1]
    ):
        raise BundleError(f"The model spec of {where} must list two distinct class labels, got {classes!r}.")
    return tuple(classes)


class _Site(NamedTuple):
    """Where a component is loaded: its spec, params, the array reader, array prefix, width, name."""

    spec: Mapping[str, Any]
    params: Mapping[str, Any]
    reader: _Reader
    prefix: str
    n_features_in: int
    where: str


def _load_component(spec: Any, reader: _Reader, prefix: str, n_features: int | None) -> Any:
    if not isinstance(spec, Mapping):
        raise BundleError(f"A model spec must be a JSON object, got {type(spec).__name__}.")
    kind = spec.get("kind")
    loader = _LOADERS.get(kind) if isinstance(kind, str) else None
    if loader is None:
        raise BundleError(
            f"Unknown model kind {kind!r} in the bundle; this DLRPredictor reads {sorted(_LOADERS)}. "
            "The bundle may come from a newer version: update DLRPredictor."
        )
    where = f"'{prefix or 'model'}' ({kind})"
    n_in = _positive_int(spec, "n_features_in", where)
    if n_features is not None and n_in != n_features:
        raise BundleError(
            f"The model spec of {where} expects {n_in} inputs but its input step gives {n_features}."
        )
    params = spec.get("params", {})
    if not isinstance(params, Mapping):
        raise BundleError(f"The model spec of {where} has invalid 'params'.")
    obj = loader(_Site(spec, params, reader, prefix, n_in, where))
    if obj.n_features_in != n_in:
        raise BundleError(f"The model of {where} has {obj.n_features_in} inputs, its spec says {n_in}.")
    return obj


def _load_scaler(site: _Site) -> Any:
    _spec, params, r, prefix, n, where = site
    mean = r.array(prefix + "mean", "float", (n,)) if _get(params, "with_mean", bool, where) else None
    scale = r.array(prefix + "scale", "float", (n,)) if _get(params, "with_std", bool, where) else None
    if scale is not None and (scale <= 0).any():
        raise BundleError(f"The scaler of {where} has non-positive scales.")
    return SafeStandardScaler(mean, scale, n)


def _load_pca(site: _Site) -> Any:
    _spec, params, r, prefix, n, where = site
    c = _positive_int(params, "n_components", where)
    variance = r.array(prefix + "explained_variance", "float", (c,))
    if (variance < 0).any():
        raise BundleError(f"The PCA of {where} has negative variances.")
    return SafePCA(
        r.array(prefix + "mean", "float", (n,)),
        r.array(prefix + "components", "float", (c, n)),
        variance,
        _get(params, "whiten", bool, where),
    )


def _load_pipeline(site: _Site) -> Any:
    spec, _params, r, prefix, n, where = site
    steps = _get(spec, "steps", list, where)
    if not steps:
        raise BundleError(f"The pipeline {where} has no steps.")
    loaded, width = [], n
    for i, step in enumerate(steps):
        obj = _load_component(step, r, f"{prefix}steps{i}.", width)
        is_last = i == len(steps) - 1
        if not isinstance(obj, TransformerBase) and not is_last:
            raise BundleError(f"Step {i} of the pipeline {where} must be a scaler or PCA.")
        loaded.append(obj)
        width = obj.n_features_out if isinstance(obj, TransformerBase) else width
    if isinstance(loaded[-1], TransformerBase):
        return SafeTransformChain(loaded, n)
    return SafePipeline(SafeTransformChain(loaded[:-1], n), loaded[-1])


def _load_logistic(site: _Site) -> Any:
    spec, _params, r, prefix, n, where = site
    coef = r.array(prefix + "coef", "float", (n,))
    intercept = r.array(prefix + "intercept", "float", (1,))
    return SafeLogisticRegression(coef, float(intercept[0]), _classes(spec, where))


def _load_svc(site: _Site) -> Any:
    spec, params, r, prefix, n, where = site
    kernel = _get(params, "kernel", str, where)
    if kernel not in ("linear", "rbf"):
        raise BundleError(f"The SVC of {where} has unsupported kernel {kernel!r}.")
    gamma = float(_get(params, "gamma", (int, float), where))
    if not math.isfinite(gamma) or gamma <= 0:
        raise BundleError(f"The SVC of {where} has invalid gamma {gamma!r}.")
    n_sv = _positive_int(params, "n_support_vectors", where)
    platt = None
    if _get(params, "probability", bool, where):
        platt = (
            float(r.array(prefix + "prob_a", "float", (1,))[0]),
            float(r.array(prefix + "prob_b", "float", (1,))[0]),
        )
    return SafeSVC(
        kernel=kernel,
        gamma=gamma,
        support_vectors=r.array(prefix + "support_vectors", "float", (n_sv, n)),
        dual_coef=r.array(prefix + "dual_coef", "float", (n_sv,)),
        intercept=float(r.array(prefix + "intercept", "float", (1,))[0]),
        platt=platt,
        classes=_classes(spec, where),
    )


def _load_forest(site: _Site) -> Any:
    spec, params, r, prefix, n, where = site
    n_trees = _positive_int(params, "n_trees", where)
    counts = r.array(prefix + "tree_node_counts", "int", (n_trees,))
    if (counts < 1).any():
        raise BundleError(f"The trees of {where} have empty node lists.")
    total = int(counts.sum())
    left = r.array(prefix + "children_left", "int", (total,))
    right = r.array(prefix + "children_right", "int", (total,))
    feature = r.array(prefix + "feature", "int", (total,))
    threshold = r.array(prefix + "threshold", "float", (total,))
    value = r.array(prefix + "value", "float", (total, 2))
    local = np.arange(total) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    size = np.repeat(counts, counts)
    leaf = left == -1
    internal = ~leaf
    # children must come after their parent: this rules out cycles, so traversal always ends
    ok = (
        (right[leaf] == -1).all()
        and ((left[internal] > local[internal]) & (left[internal] < size[internal])).all()
        and ((right[internal] > local[internal]) & (right[internal] < size[internal])).all()
        and ((feature[internal] >= 0) & (feature[internal] < n)).all()
    )
    if not ok:
        raise BundleError(
            f"The tree structure of {where} is invalid (children or feature indices out of range)."
        )
    if (value < 0).any() or (value.sum(axis=1) <= 0).any():
        raise BundleError(f"The tree node values of {where} must be non-negative class weights.")
    return SafeForest(
        kind=spec["kind"],
        node_counts=counts,
        children_left=left,
        children_right=right,
        feature=feature,
        threshold=threshold,
        value=value,
        n_features_in=n,
        classes=_classes(spec, where),
    )


def _load_knn(site: _Site) -> Any:
    spec, params, r, prefix, n, where = site
    k = _positive_int(params, "n_neighbors", where)
    n_fit = _positive_int(params, "n_samples_fit", where)
    weights = _get(params, "weights", str, where)
    metric = _get(params, "metric", str, where)
    if weights not in ("uniform", "distance") or metric not in ("euclidean", "manhattan"):
        raise BundleError(f"The KNN of {where} has unsupported weights {weights!r} or metric {metric!r}.")
    if k > n_fit:
        raise BundleError(f"The KNN of {where} asks for {k} neighbours but stores {n_fit} training rows.")
    fit_y = r.array(prefix + "fit_y", "int", (n_fit,))
    if not np.isin(fit_y, (0, 1)).all():
        raise BundleError(f"The KNN of {where} has training labels other than 0 and 1.")
    fit_X = r.array(prefix + "fit_X", "float", (n_fit, n))
    return SafeKNN(
        fit_X=fit_X,
        fit_y=fit_y.astype(np.intp),
        n_neighbors=k,
        weights=weights,
        metric=metric,
        classes=_classes(spec, where),
    )


def _load_calibrated(site: _Site) -> Any:
    spec, params, r, prefix, n, where = site
    method = _get(params, "method", str, where)
    if method not in ("sigmoid", "isotonic"):
        raise BundleError(f"The calibration of {where} has unsupported method {method!r}.")
    members_spec = _get(spec, "members", list, where)
    if not members_spec:
        raise BundleError(f"The calibrated model {where} has no members.")
    members: list[tuple[ClassifierBase, SigmoidCalibrator | IsotonicCalibrator]] = []
    for i, member in enumerate(members_spec):
        response = _get(member, "response", str, where)
        base = _load_component(member.get("base"), r, f"{prefix}member{i}.base.", n)
        if not isinstance(base, ClassifierBase) or response != base.response:
            raise BundleError(f"Member {i} of {where} does not provide the response '{response}'.")
        calibrator: SigmoidCalibrator | IsotonicCalibrator
        if method == "sigmoid":
            a, b = r.array(f"{prefix}member{i}.sigmoid_ab", "float", (2,))
            calibrator = SigmoidCalibrator(float(a), float(b))
        else:
            x = r.array(f"{prefix}member{i}.isotonic_x", "float", (None,))
            y = r.array(f"{prefix}member{i}.isotonic_y", "float", (x.size,))
            lo, hi = r.array(f"{prefix}member{i}.isotonic_range", "float", (2,))
            if x.size == 0 or (np.diff(x) < 0).any():
                raise BundleError(f"The isotonic calibrator {i} of {where} has unsorted or no thresholds.")
            calibrator = IsotonicCalibrator(x, y, (float(lo), float(hi)))
        members.append((base, calibrator))
    return SafeCalibrated(members, _classes(spec, where))


def _blob(r: _Reader, prefix: str) -> bytes:
    return r.array(prefix + "model", "uint8", (None,)).tobytes()


def _load_xgboost(site: _Site) -> Any:
    spec, params, r, prefix, _n, where = site
    import xgboost

    rng = _get(params, "iteration_range", list, where)
    missing = params.get("missing")
    if len(rng) != 2 or not all(isinstance(v, int) and v >= 0 for v in rng):
        raise BundleError(f"The XGBoost model {where} has an invalid iteration_range {rng!r}.")
    if missing is not None and not isinstance(missing, (int, float)):
        raise BundleError(f"The XGBoost model {where} has an invalid 'missing' value {missing!r}.")
    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(_blob(r, prefix)))
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    except (xgboost.core.XGBoostError, ValueError, KeyError) as exc:
        raise BundleError(f"The XGBoost model {where} cannot be read: {exc}") from exc
    if objective != "binary:logistic":
        raise BundleError(f"The XGBoost model {where} has objective {objective!r}, not binary:logistic.")
    missing_value = math.nan if missing is None else float(missing)
    return SafeXGBoost(booster, (rng[0], rng[1]), missing_value, _classes(spec, where))


def _load_lightgbm(site: _Site) -> Any:
    spec, _params, r, prefix, _n, where = site
    import lightgbm

    try:
        text = _blob(r, prefix).decode("utf-8")
        booster = lightgbm.Booster(model_str=text)
    except (lightgbm.basic.LightGBMError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"The LightGBM model {where} cannot be read: {exc}") from exc
    # Read from the model text itself: Booster.params has no "objective" before LightGBM 4.7
    # (the newest release for Python 3.9, i.e. Slicer 5.4-5.8, is 4.6).
    objective = lightgbm_objective(text)
    if objective != "binary":
        raise BundleError(f"The LightGBM model {where} has objective {objective!r}, not binary.")
    return SafeLightGBM(booster, _classes(spec, where))


_LOADERS = {
    "standard_scaler": _load_scaler,
    "pca": _load_pca,
    "pipeline": _load_pipeline,
    "logistic_regression": _load_logistic,
    "svc": _load_svc,
    "random_forest": _load_forest,
    "extra_trees": _load_forest,
    "decision_tree": _load_forest,
    "k_neighbors": _load_knn,
    "calibrated": _load_calibrated,
    "xgboost": _load_xgboost,
    "lightgbm": _load_lightgbm,
}


def load_model(spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> SafeModel | SafeTransformer:
    """Rebuild a model written by :func:`dump_model`, executing no stored code.

    Args:
        spec: the JSON spec.
        arrays: the named numeric arrays (numpy; object arrays are refused).

    Returns:
        A :class:`SafeModel` for classifiers, a :class:`SafeTransformer` for scaling / PCA chains.

    Raises:
        BundleError: unknown format or kind, missing, extra, mis-shaped or non-numeric arrays,
            or an inconsistent structure.
    """
    if not isinstance(spec, Mapping) or spec.get("format") != FORMAT:
        raise BundleError(f"This is not a DLRPredictor model spec (its 'format' is not '{FORMAT}').")
    version = spec.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise BundleError(
            f"The model spec has format_version {version!r}; this DLRPredictor reads up to "
            f"{FORMAT_VERSION}. Update DLRPredictor to open this bundle."
        )
    reader = _Reader(arrays)
    model = _load_component(spec, reader, "", None)
    final = model.final if isinstance(model, SafePipeline) else model
    if isinstance(final, SafeSVC) and final.platt is None:
        raise BundleError("The SVC in the bundle has no Platt parameters, so it cannot give probabilities.")
    extra = sorted(set(arrays) - reader.used)
    if extra:
        raise BundleError(f"The model file holds unexpected arrays {extra[:5]}; it does not match its spec.")
    names = spec.get("feature_names")
    if names is not None:
        if (
            not isinstance(names, list)
            or len(names) != model.n_features_in
            or not all(isinstance(x, str) for x in names)
            or len(set(names)) != len(names)
        ):
            raise BundleError(
                f"The model spec's feature_names must be {model.n_features_in} distinct strings."
            )
        model.feature_names = tuple(names)
    return model


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read every array of an .npz with ``allow_pickle=False``.

    Args:
        path: the .npz file.

    Returns:
        The arrays by name.

    Raises:
        BundleError: missing or damaged file, or an array of Python objects (refused unread).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise BundleError(f"{path} is not an .npz archive of model arrays.")
            return {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise BundleError(
                f"{path} contains pickled Python objects; DLRPredictor refuses to load them because "
                "that could run code. Use a bundle written by DLRPredictor."
            ) from exc
        raise BundleError(f"{path} is damaged: {exc}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(f"Cannot read the model arrays {path}: {exc}") from exc
    except TypeError as exc:  # a plain .npy file returns an ndarray, which has no context manager
        raise BundleError(f"{path} is not an .npz archive of model arrays.") from exc


def load_model_files(path_prefix: str | Path) -> SafeModel | SafeTransformer:
    """Load a model written by :func:`save_model`.

    Args:
        path_prefix: the same prefix given to :func:`save_model`.

    Returns:
        The loaded :class:`SafeModel` or :class:`SafeTransformer`.

    Raises:
        BundleError: missing, damaged, pickled or inconsistent files.
    """
    json_path, npz_path = model_file_paths(path_prefix)
    try:
        spec = json.loads(json_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BundleError(f"Cannot read the model spec {json_path}: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"The model spec {json_path} is not valid JSON: {exc}") from exc
    return load_model(spec, read_npz(npz_path))
